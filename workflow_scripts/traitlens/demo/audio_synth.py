"""A voice-like signal: harmonic source, formant filtering, syllable rhythm.

Source: a sum of harmonics of a slowly wandering f0 (intonation) with per-period jitter,
amplitudes falling ~12 dB/octave like a glottal source. Vowels: the source through
three resonators at formant frequencies (F1-F3 of a few vowels, scaled by the
vocal-tract factor), cross-faded syllable by syllable. Rhythm: raised-cosine syllable
envelopes at ``rate_hz`` with pauses between phrases. A faint noise floor is added. The
clip is scaled so its RMS equals ``loudness_dbfs``.
"""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
from scipy.signal import lfilter

SAMPLE_RATE = 16000
# F1, F2, F3 (Hz) of /a/, /e/, /i/, /o/, /u/ (adult average)
VOWELS = np.array(
    [[730, 1090, 2440], [530, 1840, 2480], [270, 2290, 3010], [570, 840, 2410], [300, 870, 2240]],
    dtype=np.float64,
)
BANDWIDTHS = np.array([90.0, 110.0, 170.0])


def _resonator(freq: float, bw: float, sr: int) -> tuple[np.ndarray, np.ndarray]:
    """Second-order all-pole resonator (unit gain at DC is not needed here)."""
    r = np.exp(-np.pi * bw / sr)
    theta = 2 * np.pi * freq / sr
    a = np.array([1.0, -2 * r * np.cos(theta), r * r])
    return np.array([1.0 - r]), a


def _source(f0: np.ndarray, sr: int) -> np.ndarray:
    phase = 2 * np.pi * np.cumsum(f0) / sr
    n_harm = int((sr / 2 - 200) / f0.max())
    out = np.zeros_like(f0)
    for k in range(1, n_harm + 1):
        fade = np.clip((sr / 2 - k * f0) / 400.0, 0.0, 1.0)  # no aliasing as f0 wanders
        out += fade * np.sin(k * phase) / k  # -6 dB/octave; lfilter below adds tilt
    return out


def synthesize_voice(
    params: dict[str, float], duration_s: float, seed: int, sr: int = SAMPLE_RATE
) -> np.ndarray:
    """Mono float32 samples in [-1, 1] for the voice ``params`` (see signal.py)."""
    rng = np.random.default_rng(seed)
    n = int(round(duration_s * sr))
    t = np.arange(n) / sr
    # intonation: slow wander around f0 plus declination, and small cycle jitter
    f0 = params["f0_hz"] * (
        1.0
        + 0.08 * np.sin(2 * np.pi * rng.uniform(0.3, 0.8) * t + rng.uniform(0, 6.3))
        - 0.04 * t / max(duration_s, 1e-9)
        + 0.01 * np.convolve(rng.normal(0, 1, n), np.ones(64) / 8, mode="same")
    )
    source = _source(f0, sr)
    source = lfilter([1.0], [1.0, -0.9], source)  # glottal spectral tilt
    source /= np.abs(source).max() + 1e-12

    # syllables: start times at ~rate_hz with jitter; a pause every few syllables
    rate = params["rate_hz"]
    starts, pos = [], rng.uniform(0.0, 0.2)
    while pos < duration_s:
        starts.append(pos)
        pos += rng.uniform(0.75, 1.25) / rate
        if rng.random() < 0.15:
            pos += rng.uniform(0.2, 0.5)  # phrase pause
    envelope = np.zeros(n)
    weights = np.zeros((len(VOWELS), n))
    for start in starts:
        length = int(sr * rng.uniform(0.6, 0.9) / rate)
        i0 = int(start * sr)
        i1 = min(i0 + length, n)
        if i1 <= i0:
            continue
        shape = np.sin(np.pi * np.arange(i1 - i0) / length) ** 2
        envelope[i0:i1] += shape
        weights[rng.integers(0, len(VOWELS)), i0:i1] += shape
    envelope = np.minimum(envelope, 1.0)
    norm = weights.sum(axis=0)
    weights = np.divide(weights, norm, out=np.full_like(weights, 1 / len(VOWELS)), where=norm > 0)

    voiced = np.zeros(n)
    scale = params["formant_scale"]
    for v, formants in enumerate(VOWELS):
        if not weights[v].any():
            continue
        y = source
        for f, bw in zip(formants * scale, BANDWIDTHS, strict=True):
            b, a = _resonator(min(f, 0.45 * sr), bw, sr)
            y = lfilter(b, a, y)
        voiced += weights[v] * y / (np.abs(y).max() + 1e-12)
    speech = voiced * envelope
    speech += 0.003 * rng.normal(0, 1, n) * (1.0 + envelope)  # breath + room noise floor
    rms = np.sqrt(np.mean(speech**2)) + 1e-12
    speech *= 10 ** (params["loudness_dbfs"] / 20) / rms
    return np.clip(speech, -1.0, 1.0).astype(np.float32)


def write_wav(path: str | Path, samples: np.ndarray, sr: int = SAMPLE_RATE) -> None:
    """16-bit PCM mono WAV (plain header: byte-identical for equal samples)."""
    pcm = np.round(np.clip(samples, -1.0, 1.0) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sr)
        w.writeframes(pcm.tobytes())
