"""The ``detector`` AU backend: py-feat's own AU network on our face boxes.

py-feat's Detectorv2 is RetinaFace + its multitask network (AUs, emotion, pose, mesh)
+ an identity network. Only the multitask network predicts AUs, and the face stage has
already found the face, so this backend runs that network alone: each face is cropped
from the stored frame exactly as Detectorv2 crops a RetinaFace box (py-feat's
``extract_face_square_pad_torch``: the box x1.2, squared, 256 px, reflect-padded),
with the box of our mediapipe landmarks instead of RetinaFace's. One weight file is
then needed instead of three.

py-feat downloads its weights from the Hugging Face hub at run time, which cannot
happen offline, so the file must be placed in ``aus.detector_weights_dir`` beforehand
(:data:`WEIGHT_FILES` says which and from where). ``feat`` and torch are imported only
when this backend runs (``import feat`` costs ~12 s).

The network outputs one probability in [0, 1] per AU and names its AUs
(``au_names``); :func:`adapt_au_output` maps them onto our columns by name.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from traitlens.aus.estimate_aus import AU_COLUMNS, PYFEAT_AUS, AuConfig, derive_au45
from traitlens.core.errors import UserError
from traitlens.extract.frames_file import open_indexed_pixels
from traitlens.faces.faces_file import FaceRows

log = logging.getLogger("traitlens.aus.estimate_aus")

# file name -> Hugging Face repository it comes from (py-feat 2.1.5:
# feat.multitask.inference.HF_REPO / HF_WEIGHTS_FILE)
WEIGHT_FILES = {"face_multitask_v28.safetensors": "py-feat/face_multitask_v2"}
CHIP_SIZE = 256  # py-feat's chip geometry (feat.multitask.inference)
EXPAND_BBOX = 1.2


def weight_paths(weights_dir: str | Path | None) -> dict[str, Path]:
    """{file name: path} of the weights in ``weights_dir``; UserError when any is missing."""
    if not weights_dir:
        raise UserError(
            "config aus.detector_weights_dir is not set: the detector backend needs py-feat's "
            f"model file(s) {sorted(WEIGHT_FILES)} in a local folder. " + _how_to_get(None)
        )
    folder = Path(weights_dir)
    paths = {name: folder / name for name in WEIGHT_FILES}
    missing = [name for name, p in paths.items() if not p.is_file()]
    if missing:
        raise UserError(
            f"{folder}: py-feat weight file(s) missing: {', '.join(missing)}. "
            + _how_to_get(folder)
        )
    return paths


def _how_to_get(folder: Path | None) -> str:
    where = str(folder) if folder else "<dir>"
    steps = "; ".join(
        f"https://huggingface.co/{repo}/resolve/main/{name} "
        f"(or: huggingface-cli download {repo} {name} --local-dir {where})"
        for name, repo in WEIGHT_FILES.items()
    )
    return (
        f"Download on a machine with internet access: {steps}; put the file(s) in {where} "
        "and set aus.detector_weights_dir to that folder (or use aus.backend: mesh, "
        "which needs no download)."
    )


def adapt_au_output(au: np.ndarray, au_names: Sequence[str]) -> np.ndarray:
    """Network output (n, m) with names ``au_names`` -> (n, 21) in AU_COLUMNS order.

    Matched by name ('AU1', 'AU01' and 'au01' all mean AU01). An AU of ours the
    network lacks is NaN (logged); extra ones (AU16, AU18, AU27 of the 24-AU
    checkpoints) are dropped. AU45 is the network's own when it has one, else AU43's.
    """
    au = np.atleast_2d(np.asarray(au, dtype=np.float64))
    if au.shape[1] != len(au_names):
        raise ValueError(f"{au.shape[1]} AU outputs but {len(au_names)} AU names")
    index = {_canonical(name): j for j, name in enumerate(au_names)}
    out = np.full((len(au), len(AU_COLUMNS)), np.nan)
    missing = []
    for i, name in enumerate(AU_COLUMNS):
        j = index.get(name)
        if j is not None:
            out[:, i] = au[:, j]
        elif name != "AU45":
            missing.append(name)
    if "AU45" not in index:
        out[:, AU_COLUMNS.index("AU45")] = derive_au45(out[:, PYFEAT_AUS.index("AU43")])
    if missing:
        log.warning("the AU network has no %s: those columns stay empty", ", ".join(missing))
    return out


def _canonical(name: str) -> str:
    digits = "".join(ch for ch in str(name) if ch.isdigit())
    return f"AU{int(digits):02d}" if digits else str(name)


def face_boxes(landmarks: np.ndarray) -> np.ndarray:
    """x0, y0, x1, y1 of each face's landmark bounding box (n, 4): the face-detector box
    the network's crop expects (forehead to chin, cheek to cheek)."""
    pts = np.asarray(landmarks)[:, :, :2]
    return np.concatenate([pts.min(axis=1), pts.max(axis=1)], axis=1)


def _open_frames(frames_path: str | Path, rows: FaceRows):
    """The shard's frames (dataset left on disk), checked to hold the faces file's rows
    in the same order; close with ``frames.file.close()``."""
    path = Path(frames_path)
    frames, frame_index = open_indexed_pixels(path)
    if not np.array_equal(frame_index, rows.frame_index):
        frames.file.close()
        raise UserError(
            f"{path}: its frames do not match the faces file row for row; rerun "
            "snakemake so that the detect_faces rule rebuilds the faces file"
        )
    return frames


def load_model(weights_file: Path, device: str):
    """py-feat's MultitaskModel from ``weights_file``; UserError naming the file when it
    is not a checkpoint the network loads (cut short, another file under this name, a
    checkpoint of another architecture)."""
    from feat.multitask.inference import MultitaskModel
    from safetensors import SafetensorError

    try:
        return MultitaskModel(device=device, weights_path=str(weights_file))
    except (SafetensorError, OSError, RuntimeError, ValueError, KeyError, TypeError) as err:
        raise UserError(
            f"{weights_file}: not a py-feat multitask weights file this backend can load "
            f"({type(err).__name__}: {err}); download it again. " + _how_to_get(weights_file.parent)
        ) from None


def estimate_with_detector(rows: FaceRows, frames_path: str | Path, cfg: AuConfig) -> np.ndarray:
    """(n, 21) AU probabilities per faces-file row (NaN where no face)."""
    weights = weight_paths(cfg.detector_weights_dir)
    import torch
    from feat.utils.image_operations import extract_face_square_pad_torch

    out = np.full((len(rows.success), len(AU_COLUMNS)), np.nan)
    wanted = np.flatnonzero(rows.success)  # increasing, as h5py indexing needs
    if len(wanted) == 0:
        return out
    model = load_model(weights["face_multitask_v28.safetensors"], cfg.detector_device)
    boxes = face_boxes(rows.landmarks[wanted])
    frames = _open_frames(frames_path, rows)
    with frames.file:
        for start in range(0, len(wanted), cfg.detector_batch):
            part = wanted[start : start + cfg.detector_batch]
            x = torch.from_numpy(frames[part]).permute(0, 3, 1, 2).float() / 255.0
            box = torch.from_numpy(boxes[start : start + len(part)]).float()
            chips, _ = extract_face_square_pad_torch(
                x, box, CHIP_SIZE, EXPAND_BBOX, frame_idx=torch.arange(len(part))
            )
            res = model(chips)
            out[part] = adapt_au_output(res.au, res.au_names)
    return out
