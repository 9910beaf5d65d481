"""The planted signal: per-video AU trajectories, voice parameters and the traits.

Planted AUs (chosen from py-feat's AU->mesh model: each moves its own region clearly,
in-plane, and the four are as little collinear as the model allows):

=====  ==========  ============================================================
AU     region      what the model moves (model units; the face is ~175 wide)
=====  ==========  ============================================================
AU01   eyebrows    inner brow raiser: brows up ~4 (inner brow points 4.2)
AU43   eyes        eyes closed: upper lids down ~12 at 1.0 (capped at 0.7, where
                   the lids nearly meet; beyond that mesh triangles fold)
AU12   mouth       lip corner puller: corners up and out ~6 (and the cheeks)
AU26   mouth       jaw drop: lower lip down ~17, chin ~14
=====  ==========  ============================================================

No nose AU is planted: the only one that moves the nose (AU09) mostly moves the face
contour (mean 12 vs 6 on the nose) and is collinear with AU12/AU15 (|cos| >= 0.8); the
nose is the control region (carries no signal). All other AUs stay 0.

Per video each planted AU has a level (its video mean, uniform over the AU's range:
this carries the trait signal) and events (onset-apex-offset bumps; blinks for AU43)
that make frames differ.

Traits are linear in standardised drivers ``z = (value - centre) / half_range`` (each
about uniform in [-1, 1]) of the REALISED per-video AU means and two voice parameters, plus
Gaussian noise (config ``noise_sd``), clipped to [0, 1]; see :data:`TRAIT_FORMULAS`.
Visual drivers carry ~86% of each trait's signal variance, voice ~14%.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from traitlens.demo.plan import DemoConfig, PlannedVideo

# FI pickle order of the traits
TRAITS = (
    "extraversion",
    "neuroticism",
    "agreeableness",
    "conscientiousness",
    "interview",
    "openness",
)
BIG_FIVE = ("openness", "conscientiousness", "extraversion", "agreeableness", "neuroticism")


@dataclass(frozen=True)
class AuSpec:
    region: str
    centre: float  # video-level mean: centre +- half_range * z
    half_range: float
    event_rate: float  # events per second
    event_s: tuple[float, float]  # event duration range
    event_amp: tuple[float, float]
    cap: float  # highest intensity ever planted


PLANTED_AUS: dict[str, AuSpec] = {
    "AU01": AuSpec("eyebrows", 0.45, 0.45, 0.5, (0.6, 1.4), (0.15, 0.35), 1.0),
    "AU43": AuSpec("eyes", 0.22, 0.20, 0.4, (0.15, 0.35), (0.30, 0.50), 0.7),
    "AU12": AuSpec("mouth", 0.45, 0.45, 0.4, (0.8, 2.0), (0.15, 0.30), 1.0),
    "AU26": AuSpec("mouth", 0.40, 0.40, 1.0, (0.2, 0.6), (0.15, 0.35), 1.0),
}

# Voice parameters: (centre, half_range); f0 and loudness carry signal, the rest do not.
AUDIO_DRIVERS = {"f0_hz": (160.0, 45.0), "loudness_dbfs": (-20.0, 5.0)}
AUDIO_NUISANCE = {"rate_hz": (2.5, 5.0), "formant_scale": (0.9, 1.1)}
AUDIO_MEANING = {
    "f0_hz": "mean fundamental frequency of the voice (Hz); carries trait signal",
    "loudness_dbfs": "RMS level of the voice over the clip (dBFS); carries trait signal",
    "rate_hz": "syllables per second (amplitude modulation); no trait signal",
    "formant_scale": "vocal-tract length factor on the formants; no trait signal",
}

# trait = 0.5 + sum(coef * z[driver]); drivers: AU means and audio parameters.
TRAIT_FORMULAS: dict[str, dict[str, float]] = {
    "openness": {"AU01": 0.17, "AU26": 0.10, "f0_hz": 0.08},
    "conscientiousness": {"AU43": -0.17, "AU01": 0.10, "loudness_dbfs": -0.08},
    "extraversion": {"AU26": 0.17, "AU12": 0.10, "loudness_dbfs": 0.08},
    "agreeableness": {"AU12": 0.17, "AU43": -0.10, "f0_hz": -0.08},
    "neuroticism": {"AU43": 0.17, "AU26": 0.10, "f0_hz": 0.08},
}
# interview = 0.5 + gain * sum(w * (trait_before_noise - 0.5)), like FI's "would you
# invite them for a job interview", which raters tie mostly to E, C, A, O and low N.
INTERVIEW_WEIGHTS = {
    "extraversion": 0.3,
    "conscientiousness": 0.3,
    "agreeableness": 0.2,
    "openness": 0.2,
    "neuroticism": -0.2,
}
INTERVIEW_GAIN = 1.45


def trait_formula_text() -> dict[str, str]:
    """Human-readable formulas, as written into planted.json."""
    out = {}
    for trait, coefs in TRAIT_FORMULAS.items():
        terms = " ".join(f"{'+' if c >= 0 else '-'} {abs(c):.2f}*z({d})" for d, c in coefs.items())
        out[trait] = f"clip(0.5 {terms} + N(0, noise_sd), 0, 1)"
    weights = " ".join(
        f"{'+' if w >= 0 else '-'} {abs(w):.2f}*({t}_raw - 0.5)"
        for t, w in INTERVIEW_WEIGHTS.items()
    )
    out["interview"] = f"clip(0.5 + {INTERVIEW_GAIN:.2f}*({weights}) + N(0, noise_sd), 0, 1)"
    return out


def driver_z(name: str, value: float) -> float:
    if name in PLANTED_AUS:
        spec = PLANTED_AUS[name]
        return (value - spec.centre) / spec.half_range
    centre, half = AUDIO_DRIVERS[name]
    return (value - centre) / half


@dataclass(frozen=True)
class Nuisance:
    """Per-frame nuisance (no trait signal). Arrays have one value per frame."""

    dx: np.ndarray  # head translation, fraction of face width
    dy: np.ndarray
    roll_deg: np.ndarray
    scale: np.ndarray
    gain: np.ndarray  # global light gain
    gamma: np.ndarray
    side: np.ndarray  # left-right light gradient on the person
    bg_mix: np.ndarray  # background drift 0..1 between two textures
    face_height: float  # this clip's face height / frame height
    center: tuple[float, float]
    bg_seed: int


@dataclass(frozen=True)
class VideoSignal:
    video: PlannedVideo
    au: dict[str, np.ndarray]  # planted AU -> per-frame intensity
    au_mean: dict[str, float]  # realised means
    audio: dict[str, float]
    traits_raw: dict[str, float]
    traits: dict[str, float]
    nuisance: Nuisance


def _event_shape(n: int) -> np.ndarray:
    """Onset (30%) - apex (40%) - offset (30%) with raised-cosine ramps."""
    t = np.linspace(0.0, 1.0, max(n, 2))
    up = np.clip(t / 0.3, 0, 1)
    down = np.clip((1 - t) / 0.3, 0, 1)
    return 0.5 - 0.5 * np.cos(np.pi * np.minimum(up, down))


def au_trajectory(spec: AuSpec, level: float, n_frames: int, fps: float, rng) -> np.ndarray:
    """Per-frame intensity: a baseline plus events, whose mean is ``level`` (before the
    cap clips rare peaks)."""
    bumps = np.zeros(n_frames)
    duration = n_frames / fps
    n_events = rng.poisson(spec.event_rate * duration) + 1  # at least one event per clip
    for _ in range(n_events):
        length = max(2, int(round(rng.uniform(*spec.event_s) * fps)))
        start = int(rng.integers(-length // 2, max(n_frames - length // 2, 1)))
        shape = rng.uniform(*spec.event_amp) * _event_shape(length)
        lo, hi = max(start, 0), min(start + length, n_frames)
        if hi > lo:
            bumps[lo:hi] += shape[lo - start : hi - start]
    wobble = np.convolve(rng.normal(0, 0.02, n_frames + 8), np.ones(9) / 9, mode="valid")
    bumps = bumps + wobble - wobble.min()
    mean_b = bumps.mean()
    if level - mean_b < 0.2 * level:  # events would push the baseline below 0: shrink them
        bumps *= 0.8 * level / max(mean_b, 1e-9)
        mean_b = bumps.mean()
    return np.clip(level - mean_b + bumps, 0.0, spec.cap)


def _smooth_process(rng, n: int, fps: float, amp: float, fmin=0.08, fmax=0.6) -> np.ndarray:
    """Smooth zero-mean wander: three sinusoids with random frequency and phase."""
    t = np.arange(n) / fps
    out = np.zeros(n)
    for a in amp * rng.uniform(0.3, 1.0, 3) / 1.7:
        out += a * np.sin(2 * np.pi * rng.uniform(fmin, fmax) * t + rng.uniform(0, 2 * np.pi))
    return out


def user_background_seed(seed: int, identity: int) -> int:
    """The seed of a person's room (config ``demo.background: per_user``)."""
    return int(np.random.SeedSequence([seed, 5, identity]).generate_state(1)[0] >> 1)


def _nuisance(rng, cfg: DemoConfig, identity: int, face_height: float, center) -> Nuisance:
    n, fps = cfg.n_frames, cfg.fps
    return Nuisance(
        dx=_smooth_process(rng, n, fps, 0.05),
        dy=_smooth_process(rng, n, fps, 0.03),
        roll_deg=_smooth_process(rng, n, fps, 4.0),
        scale=1.0 + _smooth_process(rng, n, fps, 0.03),
        gain=rng.uniform(0.85, 1.12) * (1.0 + _smooth_process(rng, n, fps, 0.06, 0.05, 0.3)),
        gamma=rng.uniform(0.85, 1.15) + _smooth_process(rng, n, fps, 0.04, 0.05, 0.3),
        side=rng.uniform(-0.15, 0.15) + _smooth_process(rng, n, fps, 0.08, 0.05, 0.3),
        bg_mix=0.5
        + 0.5
        * np.sin(
            2 * np.pi * rng.uniform(0.05, 0.25) * np.arange(n) / fps + rng.uniform(0, 2 * np.pi)
        ),
        face_height=face_height * rng.uniform(0.95, 1.05),
        center=(center[0] + rng.uniform(-0.03, 0.03), center[1] + rng.uniform(-0.02, 0.02)),
        # the clip's last draw: per_user skipping it changes nothing else
        bg_seed=int(rng.integers(0, 2**31 - 1))
        if cfg.background == "per_clip"
        else user_background_seed(cfg.seed, identity),
    )


def traits_from_drivers(drivers: dict[str, float]) -> dict[str, float]:
    """Trait values before noise (not clipped) from the driver values."""
    z = {name: driver_z(name, v) for name, v in drivers.items()}
    raw = {t: 0.5 + sum(c * z[d] for d, c in f.items()) for t, f in TRAIT_FORMULAS.items()}
    raw["interview"] = 0.5 + INTERVIEW_GAIN * sum(
        w * (raw[t] - 0.5) for t, w in INTERVIEW_WEIGHTS.items()
    )
    return raw


def _level(rng, centre: float, half: float) -> float:
    # uniform over the range: the widest spread of video levels (the trait signal);
    # the labels, sums of several drivers plus noise, still come out bell-shaped
    return centre + half * float(rng.uniform(-1.0, 1.0))


def identity_placement(
    seed: int, identity: int, face_height: tuple[float, float] = (0.5, 0.6)
) -> tuple[float, tuple[float, float]]:
    """Where an identity sits in its clips: face height / frame height (uniform in
    ``face_height``), face centre (fractions of width, height). Nuisance, drawn from its
    own stream."""
    rng = np.random.default_rng([seed, 4, identity])
    return float(rng.uniform(*face_height)), (
        float(rng.uniform(0.38, 0.62)),
        float(rng.uniform(0.42, 0.50)),
    )


def video_signal(video: PlannedVideo, cfg: DemoConfig) -> VideoSignal:
    """Everything planted in one video, from its seed (no rendering)."""
    face_height, center = identity_placement(cfg.seed, video.identity, cfg.face_height)
    rng = np.random.default_rng(video.seed)
    au, au_mean = {}, {}
    for name, spec in PLANTED_AUS.items():
        level = _level(rng, spec.centre, spec.half_range)
        au[name] = au_trajectory(spec, level, cfg.n_frames, cfg.fps, rng)
        au_mean[name] = float(au[name].mean())
    audio = {name: _level(rng, c, h) for name, (c, h) in AUDIO_DRIVERS.items()}
    audio.update({name: float(rng.uniform(lo, hi)) for name, (lo, hi) in AUDIO_NUISANCE.items()})
    raw = traits_from_drivers({**au_mean, **{k: audio[k] for k in AUDIO_DRIVERS}})
    noise = rng.normal(0.0, cfg.noise_sd, len(TRAITS)) if cfg.noise_sd > 0 else np.zeros(6)
    noisy = {t: float(np.clip(raw[t] + e, 0.0, 1.0)) for t, e in zip(TRAITS, noise, strict=True)}
    nuisance = _nuisance(rng, cfg, video.identity, face_height, center)
    return VideoSignal(video, au, au_mean, audio, raw, noisy, nuisance)
