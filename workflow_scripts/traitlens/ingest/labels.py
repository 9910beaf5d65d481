"""First Impressions annotation pickles, read safely.

The label files are pickles, and a pickle can run code when loaded. The unpickler here
admits only what label files hold: dicts, strings, numbers and numpy float scalars (the
real files are Python 2 pickles of numpy.float64 values, read with encoding='latin1').
Anything else is refused before it can be built.
"""

from __future__ import annotations

import math
import pickle
from pathlib import Path

import numpy as np

from traitlens.core.errors import UserError

BIG_FIVE = (
    "openness",
    "conscientiousness",
    "extraversion",
    "agreeableness",
    "neuroticism",
)
OPTIONAL_TRAITS = ("interview",)

# numpy scalar reconstruction only: numpy pickles a float64 as scalar(dtype('f8'), bytes).
# numpy 1.x names the module numpy.core.multiarray, numpy 2.x numpy._core.multiarray; the
# Python 3 protocol-2 form of the bytes argument goes through _codecs.encode.
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
}


def _resolve_allowed(module: str, name: str):
    if (module, name) == ("numpy", "dtype"):
        return np.dtype
    if name == "scalar":
        try:
            from numpy._core.multiarray import scalar  # numpy >= 2
        except ImportError:  # numpy 1.x
            from numpy.core.multiarray import scalar
        return scalar
    import codecs

    return codecs.encode


class _LabelUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) in _ALLOWED_GLOBALS:
            return _resolve_allowed(module, name)
        raise pickle.UnpicklingError(
            f"it references '{module}.{name}', which label files never hold"
        )


def load_label_pickle(path: str | Path) -> object:
    """Unpickle ``path`` admitting only label-file content; UserError for anything else."""
    path = Path(path)
    try:
        with path.open("rb") as fh:
            return _LabelUnpickler(fh, encoding="latin1").load()
    except FileNotFoundError as err:
        raise UserError(f"{path}: annotation file not found; check dataset.annotations") from err
    except (
        pickle.UnpicklingError,
        EOFError,
        ValueError,
        TypeError,
        AttributeError,
    ) as err:
        raise UserError(
            f"{path}: refused to load as an annotation pickle ({err}). Label files hold "
            "only {trait: {video: float}}; this file is corrupt or not a label file, and "
            "was not executed."
        ) from err


def _as_label(value: object) -> float | None:
    """A finite float in [0, 1], or None when ``value`` is not one."""
    if isinstance(value, (bool, np.bool_)):
        return None
    if isinstance(value, (int, float, np.integer, np.floating)):
        number = float(value)
        if math.isfinite(number) and 0.0 <= number <= 1.0:
            return number
    return None


def parse_annotations(obj: object, path: str | Path) -> dict[str, dict[str, float]]:
    """Check an unpickled label file; return {video_id: {trait: value}}.

    Video ids drop the ``.mp4`` suffix the files use as keys. Every problem found is
    listed (up to 10) in one UserError naming the file, the trait and the video.
    """
    if not isinstance(obj, dict):
        raise UserError(f"{path}: expected a dict of traits, found {type(obj).__name__}")
    missing = [t for t in BIG_FIVE if t not in obj]
    if missing:
        raise UserError(
            f"{path}: trait key(s) missing: {', '.join(missing)} (found: "
            f"{', '.join(map(str, obj))}); an annotation file holds all five traits "
            f"({', '.join(BIG_FIVE)}): point dataset.annotations at the complete file"
        )
    traits = [t for t in (*BIG_FIVE, *OPTIONAL_TRAITS) if t in obj]
    problems: list[str] = []
    invalid: set[tuple[str, str]] = set()
    per_video: dict[str, dict[str, float]] = {}
    for trait in traits:
        values = obj[trait]
        if not isinstance(values, dict):
            raise UserError(f"{path}: trait '{trait}' should map videos to values")
        for key, value in values.items():
            video_id = _video_id_from_key(key)
            label = _as_label(value)
            if label is None:
                problems.append(
                    f"{trait} of {key!r} is {value!r}: labels must be numbers in [0, 1]"
                )
                invalid.add((video_id, trait))
                continue
            per_video.setdefault(video_id, {})[trait] = label
    for video_id, labels in per_video.items():
        absent = [t for t in traits if t not in labels and (video_id, t) not in invalid]
        if absent:
            problems.append(f"{video_id!r} has no value for {', '.join(absent)}")
    if problems:
        shown = "\n  ".join(problems[:10])
        more = f"\n  ... and {len(problems) - 10} more" if len(problems) > 10 else ""
        raise UserError(f"{path}: {len(problems)} bad label(s):\n  {shown}{more}")
    return per_video


def _video_id_from_key(key: object) -> str:
    name = str(key)
    return name[:-4] if name.lower().endswith(".mp4") else name


def read_annotations(path: str | Path) -> dict[str, dict[str, float]]:
    """Load and check one annotation pickle: {video_id: {trait: value}}."""
    return parse_annotations(load_label_pickle(path), path)
