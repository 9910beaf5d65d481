"""The demo's ground truth as plain text: frames.tsv, videos.tsv, planted.json.

Everything is formatted with fixed rules (fixed decimals per column, ``repr`` for the
trait values, keys in a fixed order), so the same seed gives byte-identical files.

frames.tsv (one row per frame): video_id, frame_index, timestamp_s, the 20 py-feat AU
  intensities in the model's column order (only the planted ones are non-zero),
  face_x0, face_y0, face_x1, face_y1 (bounding box of the 478 true landmarks, frame
  pixels, the span mediapipe's mesh covers), the same box for each region whose pixels
  the planted AUs move (eyebrows_x0 ... eyes_... mouth_y1: the truth a class
  activation map should point at), head_dx_px, head_dy_px, head_roll_deg,
  head_scale, light_gain, light_gamma, light_side, bg_mix (nuisance, no signal).
videos.tsv (one row per video): video_id, user_id, clip, identity, split, identity
  make-up, face placement, realised planted-AU means, voice parameters, background,
  each trait before noise (``<trait>_raw``) and the label (``<trait>``, as in the pickles).
planted.json: what was planted and how the labels were made (see :func:`planted_json`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

import numpy as np

from traitlens.demo import au_mesh, regions, signal
from traitlens.demo.plan import SPLITS, DemoConfig

NUISANCE_COLUMNS = (
    "head_dx_px",
    "head_dy_px",
    "head_roll_deg",
    "head_scale",
    "light_gain",
    "light_gamma",
    "light_side",
    "bg_mix",
)
# the regions whose pixels the planted AUs move, in the order of their box columns
SIGNAL_REGIONS = tuple(dict.fromkeys(spec.region for spec in signal.PLANTED_AUS.values()))
BOX_COLUMNS = tuple(
    f"{region}_{c}" for region in ("face", *SIGNAL_REGIONS) for c in ("x0", "y0", "x1", "y1")
)


def frames_header(au_columns: Sequence[str]) -> list[str]:
    return ["video_id", "frame_index", "timestamp_s", *au_columns, *BOX_COLUMNS, *NUISANCE_COLUMNS]


def frame_rows(
    sig: signal.VideoSignal,
    au_columns: Sequence[str],
    boxes: np.ndarray,
    face_width_px: float,
    fps: float,
) -> list[str]:
    """TSV lines (no newline) for one video's frames."""
    nu = sig.nuisance
    lines = []
    for t in range(len(boxes)):
        au = [f"{sig.au[a][t]:.4f}" if a in sig.au else "0" for a in au_columns]
        nuis = (
            f"{nu.dx[t] * face_width_px:.3f}",
            f"{nu.dy[t] * face_width_px:.3f}",
            f"{nu.roll_deg[t]:.3f}",
            f"{nu.scale[t]:.4f}",
            f"{nu.gain[t]:.4f}",
            f"{nu.gamma[t]:.4f}",
            f"{nu.side[t]:.4f}",
            f"{nu.bg_mix[t]:.4f}",
        )
        box = (f"{v:.2f}" for v in boxes[t])
        lines.append("\t".join([sig.video.video_id, str(t), f"{t / fps:.4f}", *au, *box, *nuis]))
    return lines


def videos_header() -> list[str]:
    return [
        "video_id",
        "user_id",
        "clip",
        "identity",
        "split",
        "primary_photo",
        "secondary_photo",
        "morph",
        "mirror",
        "face_height",
        "center_x",
        "center_y",
        *(f"{a}_mean" for a in signal.PLANTED_AUS),
        *signal.AUDIO_DRIVERS,
        *signal.AUDIO_NUISANCE,
        "bg_hue",
        "bg_sat",
        "bg_val",
        *(f"{t}_raw" for t in signal.TRAITS),
        *signal.TRAITS,
    ]


def video_row(sig: signal.VideoSignal, identity: Mapping, background: Mapping) -> str:
    v, nu = sig.video, sig.nuisance
    cells = [
        v.video_id,
        v.user_id,
        str(v.clip),
        str(v.identity),
        v.split,
        identity["primary"],
        identity["secondary"],
        f"{identity['morph']:.4f}",
        str(identity["mirror"]).lower(),
        f"{nu.face_height:.4f}",
        f"{nu.center[0]:.4f}",
        f"{nu.center[1]:.4f}",
        *(f"{sig.au_mean[a]:.6f}" for a in signal.PLANTED_AUS),
        *(f"{sig.audio[k]:.4f}" for k in signal.AUDIO_DRIVERS),
        *(f"{sig.audio[k]:.4f}" for k in signal.AUDIO_NUISANCE),
        f"{background['bg_hue']:.2f}",
        f"{background['bg_sat']:.4f}",
        f"{background['bg_val']:.4f}",
        *(repr(float(sig.traits_raw[t])) for t in signal.TRAITS),
        *(repr(float(sig.traits[t])) for t in signal.TRAITS),
    ]
    return "\t".join(cells)


def tsv(header: Sequence[str], lines: Sequence[str]) -> str:
    return "\t".join(header) + "\n" + "".join(line + "\n" for line in lines)


def labels_by_split(signals: Sequence[signal.VideoSignal]) -> dict[str, dict]:
    """{split: {trait: {"<id>.mp4": numpy.float64}}}, videos in id order."""
    out = {}
    for split in SPLITS:
        chosen = sorted(
            (s for s in signals if s.video.split == split), key=lambda s: s.video.video_id
        )
        out[split] = {
            t: {s.video.filename: np.float64(s.traits[t]) for s in chosen} for t in signal.TRAITS
        }
    return out


BACKGROUND_TEXT = {
    "per_user": "one textured wall per person (their clips share the room, as in First "
    "Impressions), each clip drifting between its two textures",
    "per_clip": "textured wall colour per clip, drifting between two textures",
}


def planted_json(
    cfg: DemoConfig,
    demo_cfg: Mapping,
    identities: Sequence[Mapping],
    base_photos: Sequence[str],
) -> str:
    """The ground-truth description of what the generator planted (JSON text)."""
    model = au_mesh.load_model()
    rl = regions.region_landmarks()
    planted_regions = {spec.region for spec in signal.PLANTED_AUS.values()}
    doc = {
        "description": (
            "Planted-signal demo data set in First Impressions format. Frames are real face "
            "photos animated by planted Action Units through py-feat's AU->mesh model "
            "(au_to_mesh_pls_v4) and a piecewise-affine warp; head motion, lighting and "
            "background change without carrying signal. Traits are the formulas below of "
            "the per-video planted-AU means and two voice parameters, plus noise."
        ),
        "seed": cfg.seed,
        "config": {k: demo_cfg[k] for k in sorted(demo_cfg)},
        "n_frames_per_video": cfg.n_frames,
        "split_by": cfg.split_by,
        "au_model": "py-feat au_to_mesh_pls_v4 (AU intensities 0..1; pose held at 0)",
        "au_columns": list(model.au_columns),
        "planted_aus": {
            name: {
                "region": spec.region,
                "video_mean_range": [
                    round(spec.centre - spec.half_range, 6),
                    round(spec.centre + spec.half_range, 6),
                ],
                "driver": f"z = (video mean - {spec.centre}) / {spec.half_range}",
                "events_per_s": spec.event_rate,
                "event_duration_s": list(spec.event_s),
                "event_amplitude": list(spec.event_amp),
                "max_intensity": spec.cap,
            }
            for name, spec in signal.PLANTED_AUS.items()
        },
        "unplanted_aus": [a for a in model.au_columns if a not in signal.PLANTED_AUS],
        "regions": {
            name: {
                "carries_signal": name in planted_regions,
                "planted_aus": [a for a, s in signal.PLANTED_AUS.items() if s.region == name],
                "mediapipe_landmarks": list(rl[name]),
            }
            for name in regions.REGIONS
        },
        "traits": {
            "formulas": signal.trait_formula_text(),
            "coefficients": signal.TRAIT_FORMULAS,
            "interview_weights": signal.INTERVIEW_WEIGHTS,
            "interview_gain": signal.INTERVIEW_GAIN,
            "drivers": {
                **{
                    a: {"centre": s.centre, "half_range": s.half_range, "value": "video mean of AU"}
                    for a, s in signal.PLANTED_AUS.items()
                },
                **{
                    k: {"centre": c, "half_range": h, "value": signal.AUDIO_MEANING[k]}
                    for k, (c, h) in signal.AUDIO_DRIVERS.items()
                },
            },
            "noise_sd": cfg.noise_sd,
            "labels": "clip(raw + N(0, noise_sd), 0, 1); raw values in videos.tsv *_raw",
        },
        "audio": {
            "sample_rate_hz": 16000,
            "parameters": signal.AUDIO_MEANING,
            "nuisance_ranges": {k: list(v) for k, v in signal.AUDIO_NUISANCE.items()},
        },
        "nuisance": {
            "head_motion": "smooth translation (~5%/3% of face width), roll (~4 deg), scale (~3%)",
            "lighting": "global gain and gamma drift, left-right light gradient on the person",
            "background": BACKGROUND_TEXT[cfg.background],
            "identity": "base photo, morph, mirror, tone, face shape, face size and position",
        },
        "rest_shape": "py-feat mean_aligned_mesh with the lips closed, scaled per identity",
        "face_box": "bounding box of the 478 true landmarks in frame pixels (frames.tsv)",
        "base_photos": list(base_photos),
        "identities": list(identities),
    }
    return json.dumps(doc, indent=2) + "\n"
