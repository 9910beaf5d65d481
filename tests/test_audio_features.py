"""Log mel filter-bank features: the pure function, and real audio through ffmpeg."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from traitlens.extract.audio_features import (
    LOG_FLOOR,
    AudioParams,
    extract_audio_features,
    hz_to_mel,
    log_mel,
    mel_filterbank,
    mel_to_hz,
    read_audio,
)
from traitlens.extract.probe import probe_video

from support.media import make_clip

PARAMS = AudioParams()


def band_of(hz: float, params: AudioParams = PARAMS) -> int:
    """Index of the mel band whose centre is closest to ``hz``."""
    edges = np.linspace(hz_to_mel(params.fmin_hz), hz_to_mel(params.fmax_hz), params.n_mels + 2)
    return int(np.argmin(np.abs(mel_to_hz(edges[1:-1]) - hz)))


def features(waveform, **overrides):
    params = {**PARAMS.as_dict(), **overrides}
    return log_mel(waveform, **params)


def tone(hz: float, seconds: float, rate: int = 16000) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.5 * np.sin(2 * np.pi * hz * t)).astype(np.float32)


@pytest.mark.parametrize("hz", [300.0, 1000.0, 4000.0])
def test_a_tone_lands_in_its_band(hz):
    out = features(tone(hz, 1.0))
    assert out.dtype == np.float32 and out.shape == (1 + (16000 - 400) // 160, 40)
    assert abs(int(np.argmax(out.mean(axis=0))) - band_of(hz)) <= 1


def test_shape_follows_the_parameters():
    wave = tone(500.0, 2.0)
    assert features(wave, hop_ms=20.0).shape == (1 + (32000 - 400) // 320, 40)
    assert features(wave, n_mels=24).shape[1] == 24
    assert features(wave, window_ms=50.0).shape[0] == 1 + (32000 - 800) // 160


def test_silence_and_short_signals():
    silence = features(np.zeros(16000, dtype=np.float32))
    np.testing.assert_allclose(silence, np.log(LOG_FLOOR), rtol=1e-6)
    assert features(np.zeros(399, dtype=np.float32)).shape == (0, 40)
    assert features(np.zeros(0, dtype=np.float32)).shape == (0, 40)


def test_louder_is_higher():
    quiet, loud = features(tone(1000.0, 0.5) * 0.1), features(tone(1000.0, 0.5))
    band = band_of(1000.0)
    assert loud[:, band].mean() - quiet[:, band].mean() == pytest.approx(np.log(100), abs=0.05)


def test_filterbank():
    bank = mel_filterbank(16000, 512, 40, 20.0, 8000.0)
    assert bank.shape == (40, 257)
    assert bank.min() >= 0 and bank.max() <= 1 and (bank.sum(axis=1) > 0).all()
    with pytest.raises(ValueError, match="fmax_hz"):
        mel_filterbank(16000, 512, 40, 20.0, 9000.0)
    with pytest.raises(ValueError, match="fall between FFT bins"):
        mel_filterbank(16000, 512, 200, 0.0, 8000.0)


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    d = tmp_path_factory.mktemp("audio")
    return {
        "tone": make_clip(d / "--tone.mp4", n_frames=60, tone_hz=1000.0, sample_rate=44100),
        "silent": make_clip(d / "silent.mp4", n_frames=30, tone_hz=None),
    }


@pytest.mark.media
def test_real_audio_through_ffmpeg(clips):
    probe = probe_video(clips["tone"])  # a file name starting with '-'
    wave = read_audio(probe, 16000)
    assert wave.dtype == np.float32
    assert len(wave) == pytest.approx(2.0 * 16000, rel=0.03)  # 44.1 kHz AAC resampled
    out = extract_audio_features(probe, PARAMS)
    assert out.shape[1] == 40 and out.shape[0] == pytest.approx(200, abs=5)
    profile = out.mean(axis=0)
    band = band_of(1000.0)
    assert abs(int(np.argmax(profile)) - band) <= 1
    # The tone's band carries the energy: far above bands away from it.
    assert profile[band] - np.median(profile) > 5.0


@pytest.mark.media
def test_video_without_audio_gives_no_rows(clips):
    probe = probe_video(clips["silent"])
    assert not probe.has_audio
    out = extract_audio_features(probe, PARAMS)
    assert out.shape == (0, 40) and out.dtype == np.float32


@pytest.mark.media
def test_non_ascii_name(clips, tmp_path):
    path = tmp_path / "ünï cödé.mp4"
    shutil.copy(clips["tone"], path)
    assert extract_audio_features(probe_video(path), PARAMS).shape[0] > 150
