"""Emergence of AU detectors among a model's units (docs/method.md §5): the table and nulls.

The statistic (I_max and its p-value in log space) is
:mod:`traitlens.interpret.emergence_stats`. A permutation null (AU values shuffled over
frames) gives the empirical false-positive rate next to the analytic p. The verdict is
the cluster-aware p of the same module (whole videos' AU tracks moved within their
person), Benjamini-Hochberg corrected over the AUs, with a decoy row per AU (its tracks
given to other videos) as the negative control: the paper's p treats frames as
independent, which they are not.

The rule-level part (:func:`au_unit_frames`, :func:`emergence_table`, :func:`null_table`;
the figure: :mod:`traitlens.interpret.au_emergence_figure`) joins the face model's
activation dumps with the AU tables and searches all units of all dumped layers at once:
U is their total, since the correction is over every unit searched. Ties at the N-th
value are broken at random (seeded): frames that tie (an AU at 0 in most frames, a unit
silent in most) would otherwise be taken in frame order, and an AU's and a unit's tied
blocks would then share the same first frames
and overlap by construction.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from traitlens.core.errors import UserError
from traitlens.interpret.emergence_stats import (
    benjamini_hochberg,
    cluster_permutation_p,
    decoy_with,
    log_corrected_p,
    log_tail,
    significance_threshold,
    top_n_mask,
    video_track_permutation,
)

log = logging.getLogger("traitlens.interpret.au_emergence")

TABLE_COLUMNS = (
    "au", "unit", "layer", "i_max", "n", "f", "u", "p", "log10_p", "expected_overlap", "note",
    "p_perm", "q_bh", "significant", "n_perm", "n_movable_videos", "permutation",
)  # fmt: skip
DECOY_SUFFIX = "_decoy"  # the decoy row of AU01 is AU01_decoy
NULL_COLUMNS = ("au", "n_permutations", "false_positive_rate")
KEY_COLUMNS = ["video_id", "frame_index"]


# --- the rule: dumps + AU tables -> table, null, figure --------------------------------


def _success_flags(column: pd.Series) -> np.ndarray:
    """The AU tables' success column as bool (text "true"/"false" or already bool)."""
    if column.dtype == bool:
        return column.to_numpy()
    return column.astype(str).str.strip().str.lower().eq("true").to_numpy()


def join_frames(
    keys: pd.DataFrame, au_tables: pd.DataFrame, aus: Sequence[str], source: str = "the dumps"
) -> tuple[np.ndarray, np.ndarray]:
    """(rows of the dump kept (F,) in dump order, their AU values (F, A)): the dump's
    frames (``keys``: video_id, frame_index) that have a successful AU row with every
    AU in ``aus`` set (inner join). Logs how many frames each side lost, and why."""
    aus = list(aus)
    missing = [c for c in [*KEY_COLUMNS, "success", *aus] if c not in au_tables]
    if missing:
        raise UserError(
            f"AU tables (aus/<shard>.tsv): missing column(s) {missing}; check config "
            "analysis.au_emergence.aus against the AU columns, or rerun estimate_aus"
        )
    table = au_tables[[*KEY_COLUMNS, *aus]].copy()
    table["video_id"] = table["video_id"].astype(str)
    table["frame_index"] = table["frame_index"].astype(np.int64)
    table["_success"] = _success_flags(au_tables["success"])
    if table.duplicated(KEY_COLUMNS).any():
        dup = table[table.duplicated(KEY_COLUMNS, keep=False)].iloc[0]
        raise UserError(
            f"AU tables: frame ({dup['video_id']}, {dup['frame_index']}) appears more than "
            "once; the rule's aus input lists a shard twice or two data sets are mixed"
        )
    left = pd.DataFrame(
        {
            "video_id": keys["video_id"].astype(str).to_numpy(),
            "frame_index": keys["frame_index"].astype(np.int64).to_numpy(),
            "_row": np.arange(len(keys)),
        }
    )
    if left.duplicated(KEY_COLUMNS).any():
        raise UserError(
            f"{source}: a frame appears twice in the dump's keys; delete it and rerun "
            "snakemake so that dump_activations rebuilds it"
        )
    joined = left.merge(table, on=KEY_COLUMNS, how="left", indicator=True)
    no_row = (joined["_merge"] == "left_only").to_numpy()
    failed = ~no_row & ~joined["_success"].eq(True).to_numpy()
    values = joined[aus].to_numpy(dtype=np.float64)
    no_value = ~no_row & ~failed & ~np.isfinite(values).all(axis=1)
    keep = ~(no_row | failed | no_value)
    dumped = set(zip(left["video_id"], left["frame_index"], strict=True))
    success_rows = table[table["_success"]]
    unused = sum(
        (v, f) not in dumped
        for v, f in zip(success_rows["video_id"], success_rows["frame_index"], strict=True)
    )
    log.info(
        "AU x unit frames: %d of %d dumped frames kept; dropped %d with no AU row, %d whose "
        "AU row failed (no face), %d with an empty AU value; %d successful AU rows are not "
        "in the dump (frames of splits or videos it does not cover)",
        int(keep.sum()), len(keep), int(no_row.sum()), int(failed.sum()),
        int(no_value.sum()), unused,
    )  # fmt: skip
    if not keep.any():
        raise UserError(
            f"{source}: no dumped frame has a successful AU row; are the dumps and the AU "
            "tables from the same data set?"
        )
    return joined["_row"].to_numpy()[keep], values[keep]


def au_unit_frames(
    dump_paths: Sequence[str | Path], au_tables: pd.DataFrame, aus: Sequence[str]
) -> tuple[np.ndarray, np.ndarray, list[tuple[str, int]], np.ndarray, np.ndarray]:
    """(au_values (F, A), unit_max (F, U_total), unit_labels [(layer, unit)], video_id
    (F,), frame_index (F,)): the frames the dumps and the successful AU rows share; a
    unit's value per frame is the dump's ``max`` reduction, the layers' units side by
    side in ``dump_paths`` order."""
    from traitlens.interpret.dump_file import dump_info, read_keys, read_reduction

    if not dump_paths:
        raise UserError("find_au_detectors: no activation dump given (config activations.layers)")
    first_keys: pd.DataFrame | None = None
    blocks, labels = [], []
    for path in dump_paths:
        keys = read_keys(path)
        if first_keys is None:
            first_keys = keys
        elif len(keys) != len(first_keys) or not (
            np.array_equal(keys["video_id"].astype(str), first_keys["video_id"].astype(str))
            and np.array_equal(keys["frame_index"], first_keys["frame_index"])
        ):
            raise UserError(
                f"{path}: its frames are not those of {dump_paths[0]} in the same order; "
                "every layer of one model must come from the same dump_activations run: "
                "delete the model's activation dumps and rerun snakemake"
            )
        values = np.asarray(read_reduction(path, "max"), dtype=np.float32)
        if values.ndim != 2 or len(values) != len(keys):
            raise UserError(
                f"{path}: dataset max has shape {values.shape}, expected ({len(keys)}, units); "
                "delete it and rerun snakemake so that dump_activations rebuilds it"
            )
        layer = str(dump_info(path).get("layer") or Path(path).stem)
        labels += [(layer, u) for u in range(values.shape[1])]
        blocks.append(values)
    rows, au_values = join_frames(first_keys, au_tables, aus, str(dump_paths[0]))
    videos = first_keys["video_id"].astype(str).to_numpy()[rows]
    frame_index = first_keys["frame_index"].to_numpy().astype(np.int64)[rows]
    return au_values, np.concatenate(blocks, axis=1)[rows], labels, videos, frame_index


def video_groups(manifest: str | Path, videos: np.ndarray) -> np.ndarray | None:
    """Each frame's group (the person: the manifest's group column) for the frames'
    ``videos`` (F,); None, with a warning, when the manifest has no group column (one
    from before it: then the cluster-aware p moves videos over the whole data set)."""
    from traitlens.core.tables import read_table
    from traitlens.ingest.manifest import GROUP_COLUMN, read_groups

    header = read_table(manifest, "manifest", "build_manifest", ["video_id"], dtype=str)
    if GROUP_COLUMN not in header:
        log.warning(
            "%s has no %s column (rerun build_manifest): the cluster-aware p moves whole "
            "videos over the whole data set, not within each person",
            manifest, GROUP_COLUMN,
        )  # fmt: skip
        return None
    group = read_groups(manifest)
    unknown = sorted(set(videos) - set(group))
    if unknown:
        raise UserError(
            f"{manifest}: {len(unknown)} video(s) of the activation dumps are not in the "
            f"manifest (e.g. {unknown[:3]}); the dumps are from another data set or older "
            "than the manifest: rerun snakemake so that dump_activations rebuilds them"
        )
    return np.array([group[v] for v in videos], dtype=object)


def _clamped_n(n_top: int, f: int) -> int:
    if n_top < 1:
        raise UserError(f"config analysis.au_emergence.n_top must be >= 1, got {n_top}")
    if f < 1:
        raise UserError("AU emergence: no frame to analyse")
    if n_top > f:
        log.warning("n_top %d is larger than the %d frames: using N = %d", n_top, f, f)
    return min(int(n_top), f)


def _check_shapes(au_values: np.ndarray, unit_max: np.ndarray, aus: Sequence[str]) -> None:
    if au_values.ndim != 2 or unit_max.ndim != 2 or len(au_values) != len(unit_max):
        raise ValueError(f"AU values {au_values.shape} and units {unit_max.shape} do not match")
    if au_values.shape[1] != len(aus):
        raise ValueError(f"{au_values.shape[1]} AU columns but {len(aus)} AU names")


def top_n_masks(
    au_values: np.ndarray, unit_max: np.ndarray, n_top: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """(AU top-N masks (F, A), unit top-N masks (F, U)), N = ``n_top`` clamped to the
    frames: what :func:`emergence_table` and :func:`null_table` start from. Computing them
    once for the table and both nulls saves ~7 s each at 100,000 frames x 512 units."""
    au_values = np.asarray(au_values, dtype=np.float64)
    return _masks(au_values, np.asarray(unit_max), _clamped_n(n_top, len(au_values)), seed)


def _given_or_new(masks, au_values, unit_max, n: int, seed: int):
    """``masks`` after checking they are top-N masks of these arrays, else new ones."""
    if masks is None:
        return _masks(au_values, unit_max, n, seed)
    au_mask, unit_mask = masks
    if au_mask.shape != au_values.shape or unit_mask.shape != unit_max.shape:
        raise ValueError(f"masks {au_mask.shape}, {unit_mask.shape} do not fit the arrays")
    if not ((au_mask.sum(axis=0) == n).all() and (unit_mask.sum(axis=0) == n).all()):
        raise ValueError(f"masks do not mark N = {n} frames per column")
    return au_mask, unit_mask


def _masks(
    au_values: np.ndarray, unit_max: np.ndarray, n: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """(AU top-N masks (F, A), unit top-N masks (F, U)), ties broken by two independent
    seeded frame orders (one shared order would line the tied blocks up)."""
    rng = np.random.default_rng(seed)
    f = len(au_values)
    au_order, unit_order = rng.permutation(f), rng.permutation(f)
    return top_n_mask(au_values, n, au_order), top_n_mask(unit_max, n, unit_order)


def _constant(column: np.ndarray) -> bool:
    return bool(np.ptp(column) == 0)


def _paper_row(
    name: str,
    column: np.ndarray,
    au_mask: np.ndarray,
    unit_mask: np.ndarray,
    unit_labels: Sequence[tuple[str, int]],
    n: int,
    constant: bool,
) -> dict:
    """The paper's columns for one AU track (``column`` (F,), its top-N ``au_mask``)."""
    f, u = unit_mask.shape
    base = {"au": name, "n": n, "f": f, "u": u, "expected_overlap": n * n / f}
    if constant:
        finite = column[np.isfinite(column)]
        value = f"{finite[0]:g}" if len(finite) else "no value"
        note = f"constant ({value}) over all {len(finite)} frames: no best unit"
        return {**base, "unit": -1, "layer": "", "i_max": 0, "p": 1.0, "log10_p": 0.0,
                "note": note}  # fmt: skip
    overlap = unit_mask[au_mask].sum(axis=0)  # (U,): |F_AU & F_unit| per unit
    best = int(np.argmax(overlap))
    k = int(overlap[best])
    log_p = log_corrected_p(log_tail(k, f, n), u)
    notes = []
    cut = np.sort(column)[::-1][n - 1]  # the N-th largest value
    tied = int((column == cut).sum())
    if n < f and tied > 1 and int((column >= cut).sum()) > n:
        notes.append(f"{tied} frames tie at the N-th value {cut:g}: taken at random")
    others = int((overlap == k).sum()) - 1
    if others:
        notes.append(f"{others} other unit(s) reach the same I_max")
    layer, unit = unit_labels[best]
    return {**base, "unit": int(unit), "layer": str(layer), "i_max": k,
            "p": float(np.exp(log_p)), "log10_p": float(log_p / np.log(10)),
            "note": "; ".join(notes)}  # fmt: skip


def _add_note(row: dict, text: str) -> None:
    row["note"] = "; ".join(t for t in (row["note"], text) if t)


def emergence_table(
    au_values: np.ndarray,
    unit_max: np.ndarray,
    unit_labels: Sequence[tuple[str, int]],
    aus: Sequence[str],
    n_top: int,
    seed: int = 0,
    masks: tuple[np.ndarray, np.ndarray] | None = None,
    *,
    videos: np.ndarray | None = None,
    groups: np.ndarray | None = None,
    frame_order: np.ndarray | None = None,
    n_perm: int = 2000,
    alpha: float = 0.01,
    progress: bool = False,
) -> pd.DataFrame:
    """One row per AU: its best unit over all units (``unit_labels`` name them), I_max,
    N, F, U and the paper's corrected p (:data:`TABLE_COLUMNS`). An AU constant over all
    frames gets p = 1, unit -1 and a note instead of an arbitrary best unit. ``masks``:
    :func:`top_n_masks` of the same arguments, when the caller already has them.

    With ``videos`` (F,) (each frame's video; ``groups`` (F,) its person, ``frame_order``
    (F,) its place in the video) the verdict columns are filled: ``p_perm``, the
    cluster-aware p (whole videos' AU tracks moved within their group, ``n_perm`` times;
    :func:`~traitlens.interpret.emergence_stats.cluster_permutation_p`), ``q_bh``
    (Benjamini-Hochberg over the tested AUs) and ``significant`` (q_bh < ``alpha``), and a
    row ``<AU>_decoy`` per AU follows: the AU's tracks given to other videos of the same
    group (a negative control, tested the same way, its own BH family). Without videos
    those columns are empty and there are no decoy rows."""
    au_values = np.asarray(au_values, dtype=np.float64)
    unit_max = np.asarray(unit_max)
    _check_shapes(au_values, unit_max, aus)
    f, u = unit_max.shape
    if len(unit_labels) != u:
        raise ValueError(f"{len(unit_labels)} unit labels for {u} units")
    n = _clamped_n(n_top, f)
    au_mask, unit_mask = _given_or_new(masks, au_values, unit_max, n, seed)
    constant = [_constant(au_values[:, a]) for a in range(len(aus))]
    rows = [
        _paper_row(au, au_values[:, a], au_mask[:, a], unit_mask, unit_labels, n, constant[a])
        for a, au in enumerate(aus)
    ]
    if videos is None:
        for row in rows:
            row.update(p_perm=np.nan, q_bh=np.nan, significant=False, n_perm=0,
                       n_movable_videos=np.nan, permutation="")  # fmt: skip
            _add_note(row, "no videos given: no cluster-aware p")
        return pd.DataFrame(rows, columns=list(TABLE_COLUMNS))
    if n_perm < 1:
        raise UserError(
            f"config analysis.au_emergence.cluster_permutations must be >= 1, got {n_perm}"
        )
    if not 0 < alpha < 1:
        raise UserError(f"config analysis.au_emergence.alpha must be in (0, 1), got {alpha}")
    permutation = video_track_permutation(videos, groups, frame_order)
    scheme = "whole videos within group" if groups is not None else "whole videos (no groups)"
    log.info(
        "cluster-aware p: %s; %d of %d videos can move (the others are alone in their "
        "group with their number of frames)",
        scheme, permutation.n_movable_videos, permutation.n_videos,
    )  # fmt: skip
    if permutation.n_movable_videos == 0:
        log.warning("no video can move: the cluster-aware p is 1 for every AU")
    # the decoys: every AU's tracks moved once to other videos of the group; frames of
    # videos with no partner can never enter a decoy's top N
    decoy, kept = decoy_with(au_values, permutation, np.random.default_rng([seed, 2]))
    decoy_filled = np.where(kept[:, None], decoy, -np.inf)
    decoy_mask = top_n_mask(decoy_filled, n, np.random.default_rng([seed, 3]).permutation(f))
    decoy_constant = [
        not kept.any() or _constant(decoy[kept, a]) for a in range(len(aus))
    ]  # fmt: skip
    for a, au in enumerate(aus):
        row = _paper_row(f"{au}{DECOY_SUFFIX}", decoy_filled[:, a], decoy_mask[:, a],
                         unit_mask, unit_labels, n, decoy_constant[a])  # fmt: skip
        _add_note(
            row,
            f"decoy: tracks of {permutation.n_movable_videos} videos given to another video "
            f"of their group; {int((~kept).sum())} frames of videos with no partner left out",
        )
        rows.append(row)
    masks_all = np.concatenate([au_mask, decoy_mask], axis=1)
    tested = np.flatnonzero(~np.array(constant + decoy_constant))
    p_perm = np.full(len(rows), np.nan)
    if len(tested):
        p_perm[tested], _ = cluster_permutation_p(
            masks_all[:, tested], unit_mask, permutation, n_perm,
            np.random.default_rng([seed, 4]), progress=progress,
        )  # fmt: skip
    real = np.arange(len(rows)) < len(aus)
    q = np.full(len(rows), np.nan)
    q[real], q[~real] = benjamini_hochberg(p_perm[real]), benjamini_hochberg(p_perm[~real])
    for i, row in enumerate(rows):
        row.update(
            p_perm=p_perm[i], q_bh=q[i], significant=bool(q[i] < alpha),
            n_perm=n_perm if np.isfinite(p_perm[i]) else 0,
            n_movable_videos=permutation.n_movable_videos, permutation=scheme,
        )  # fmt: skip
    return pd.DataFrame(rows, columns=list(TABLE_COLUMNS))


def null_table(
    au_values: np.ndarray,
    unit_max: np.ndarray,
    aus: Sequence[str],
    n_top: int,
    alpha: float,
    n_permutations: int,
    seed: int,
    progress: bool = True,
    groups: np.ndarray | None = None,
    masks: tuple[np.ndarray, np.ndarray] | None = None,
) -> pd.DataFrame:
    """Per AU, the share of ``n_permutations`` permutations of the frames (all AUs
    shuffled together, the units kept) whose best unit reaches p < alpha; row 'all' is
    that share over every permutation and non-constant AU pooled (the per-AU rate to set
    against alpha). A constant AU is not tested (rate NaN, 0 permutations).

    ``groups`` (F,) (e.g. each frame's video): frames are shuffled only within their
    group, so whatever the group shares (a video's AU level, its person) stays with it.
    A high rate under this null says an AU's significance can come from which videos
    (or people) its frames belong to rather than from frame-level co-activation.

    The top-N masks are computed once (or given: ``masks``, as for
    :func:`emergence_table`); a permutation moves the AUs' N marked frames, so
    the (A x F) @ (F x U) overlap product is a sum of N unit-mask rows per AU, and
    'p < alpha' is 'I_max >= k*' with k* from :func:`significance_threshold`.
    """
    au_values = np.asarray(au_values, dtype=np.float64)
    unit_max = np.asarray(unit_max)
    _check_shapes(au_values, unit_max, aus)
    if n_permutations < 1:
        raise UserError(
            f"config analysis.au_emergence.n_permutations must be >= 1, got {n_permutations}"
        )
    if not 0 < alpha < 1:
        raise UserError(f"config analysis.au_emergence.alpha must be in (0, 1), got {alpha}")
    f, u = unit_max.shape
    n = _clamped_n(n_top, f)
    au_mask, unit_mask = _given_or_new(masks, au_values, unit_max, n, seed)
    tested = [a for a in range(len(aus)) if not _constant(au_values[:, a])]
    k_star = significance_threshold(f, n, u, alpha)
    hits = np.zeros(len(aus), dtype=np.int64)
    if tested:
        marked = np.stack([np.flatnonzero(au_mask[:, a]) for a in tested])  # (A', N)
        # a separate stream from the tie-breaking one: the null draws its own frames
        rng = np.random.default_rng([seed, 1])
        shuffle = _group_shuffler(groups, f) if groups is not None else rng.permutation
        bar = tqdm(range(n_permutations), desc="null", unit="perm", disable=not progress)
        for _ in bar:
            moved = (shuffle(f) if groups is None else shuffle(rng))[marked]
            i_max = unit_mask[moved].sum(axis=1).max(axis=1)  # (A',)
            hits[tested] += i_max >= k_star
    rows = [
        {
            "au": au,
            "n_permutations": n_permutations if a in tested else 0,
            "false_positive_rate": hits[a] / n_permutations if a in tested else float("nan"),
        }
        for a, au in enumerate(aus)
    ]
    pooled = hits[tested].sum() / (n_permutations * len(tested)) if tested else float("nan")
    rows.append(
        {"au": "all", "n_permutations": n_permutations * len(tested), "false_positive_rate": pooled}
    )
    return pd.DataFrame(rows, columns=list(NULL_COLUMNS))


def cluster_null_rates(
    au_values: np.ndarray,
    unit_max: np.ndarray,
    aus: Sequence[str],
    n_top: int,
    alpha: float,
    n_null: int,
    n_perm: int,
    seed: int,
    *,
    videos: np.ndarray,
    groups: np.ndarray | None,
    frame_order: np.ndarray | None = None,
    masks: tuple[np.ndarray, np.ndarray] | None = None,
    progress: bool = False,
) -> tuple[np.ndarray, float]:
    """(per AU rate (A,), pooled rate): the share of ``n_null`` null data sets in which
    the cluster-aware verdict (``p_perm`` < ``alpha``, ``n_perm`` permutations within
    group, as :func:`emergence_table`) fires. A null data set gives every video the AU
    track of a random video of the whole data set (whole tracks, across persons), so no
    association with the units survives; the rate calibrates the test's implementation
    (a permutation p is uniform under the null by construction), it is not evidence that
    the analysis finds anything. Constant AUs: NaN, not pooled."""
    au_values = np.asarray(au_values, dtype=np.float64)
    unit_max = np.asarray(unit_max)
    _check_shapes(au_values, unit_max, aus)
    if n_null < 1 or n_perm < 1:
        raise UserError(
            "config analysis.au_emergence.cluster_null_draws and n_permutations must be "
            f">= 1, got {n_null} and {n_perm}"
        )
    f = len(au_values)
    n = _clamped_n(n_top, f)
    au_mask, unit_mask = _given_or_new(masks, au_values, unit_max, n, seed)
    tested = np.array([a for a in range(len(aus)) if not _constant(au_values[:, a])], dtype=int)
    rates = np.full(len(aus), np.nan)
    if not len(tested):
        return rates, float("nan")
    anywhere = video_track_permutation(videos, None, frame_order)  # the null data sets
    within = video_track_permutation(videos, groups, frame_order)  # the test's permutations
    marked = np.stack([np.flatnonzero(au_mask[:, a]) for a in tested])  # (A', N)
    rng = np.random.default_rng([seed, 5])
    hits = np.zeros(len(tested), dtype=np.int64)
    columns = np.arange(len(tested))[:, None]
    for _ in tqdm(range(n_null), desc="cluster null", unit="draw", disable=not progress):
        moved = anywhere.frames_of(anywhere.video_maps(rng)[0], marked)  # (A', N)
        null_mask = np.zeros((f, len(tested)), dtype=bool)
        null_mask[moved, columns] = True
        p, _ = cluster_permutation_p(null_mask, unit_mask, within, n_perm, rng)
        hits += p < alpha
    rates[tested] = hits / n_null
    return rates, float(hits.sum() / (n_null * len(tested)))


def _group_shuffler(groups: np.ndarray, f: int):
    """A function rng -> permutation (F,) that moves every frame to a random frame of
    its own group."""
    groups = np.asarray(groups)
    if groups.shape != (f,):
        raise ValueError(f"groups {groups.shape} do not match {f} frames")
    codes = np.unique(groups, return_inverse=True)[1]
    by_group = np.argsort(codes, kind="stable")  # frames, group by group

    def shuffle(rng: np.random.Generator) -> np.ndarray:
        within = np.lexsort((rng.random(f), codes))  # group by group, random inside
        perm = np.empty(f, dtype=np.int64)
        perm[by_group] = within
        return perm

    return shuffle


def write_table(table: pd.DataFrame, path: str | Path) -> None:
    """TSV, atomically; p values keep their significant digits (%.6g: a fixed number of
    decimals would print every small p as 0), NaN as an empty cell."""
    from traitlens.core.atomic import write_tsv

    write_tsv(table, path, "%.6g")
