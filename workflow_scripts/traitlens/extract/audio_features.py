"""Audio: ffmpeg -> 16 kHz mono samples -> log mel filter-bank features.

The audio model of the paper (Zhang et al.'s DAN+ entry) is a linear regression on log
filter-bank energies; ``log_mel`` computes them with numpy only, as a pure function of
the waveform, with every parameter explicit (they come from the config).
"""

from __future__ import annotations

import subprocess
from dataclasses import asdict, dataclass

import ffmpeg
import numpy as np

from traitlens.extract.probe import VideoProbe, VideoReadError, file_url, short_reason, tool_path

FFMPEG_TIMEOUT_S = 1800
LOG_FLOOR = 1e-10  # added before the log so that silence gives a finite value


@dataclass(frozen=True)
class AudioParams:
    """Log mel settings (config ``extract.audio``)."""

    sample_rate: int = 16000
    n_mels: int = 40
    window_ms: float = 25.0
    hop_ms: float = 10.0
    fmin_hz: float = 20.0
    fmax_hz: float = 8000.0

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


class AudioExtractionError(VideoReadError):
    """ffmpeg could not decode the audio stream; ``reason`` is one line for QC."""


def read_audio(probe: VideoProbe, sample_rate: int) -> np.ndarray:
    """The video's first audio stream, downmixed to mono and resampled by ffmpeg, as
    float32 samples in [-1, 1]; empty when the video has no audio stream."""
    if probe.audio_stream is None:
        return np.zeros(0, dtype=np.float32)
    stream = ffmpeg.input(file_url(probe.path))[str(probe.audio_stream)]
    out = stream.output("pipe:", format="s16le", acodec="pcm_s16le", ac=1, ar=sample_rate)
    cmd = out.compile(cmd=[tool_path("ffmpeg"), "-nostdin", "-hide_banner", "-v", "error"])
    try:
        done = subprocess.run(cmd, capture_output=True, timeout=FFMPEG_TIMEOUT_S)
    except subprocess.TimeoutExpired as err:
        raise AudioExtractionError(f"ffmpeg timed out after {FFMPEG_TIMEOUT_S} s") from err
    if done.returncode != 0:
        stderr = done.stderr.decode("utf-8", "replace")
        reason = short_reason(stderr, probe.path, f"ffmpeg exit status {done.returncode}")
        raise AudioExtractionError(f"audio: {reason}")
    samples = np.frombuffer(done.stdout[: len(done.stdout) // 2 * 2], dtype="<i2")
    return samples.astype(np.float32) / 32768.0


def hz_to_mel(hz):
    """HTK mel scale."""
    return 2595.0 * np.log10(1.0 + np.asarray(hz, dtype=np.float64) / 700.0)


def mel_to_hz(mel):
    return 700.0 * (10.0 ** (np.asarray(mel, dtype=np.float64) / 2595.0) - 1.0)


def mel_filterbank(
    sample_rate: int, n_fft: int, n_mels: int, fmin_hz: float, fmax_hz: float
) -> np.ndarray:
    """(n_mels, n_fft // 2 + 1) triangular filters, equally spaced on the mel scale,
    evaluated at the FFT bin frequencies (peak 1)."""
    if not 0 <= fmin_hz < fmax_hz <= sample_rate / 2:
        raise ValueError(
            f"need 0 <= fmin_hz < fmax_hz <= sample_rate/2, got fmin_hz={fmin_hz}, "
            f"fmax_hz={fmax_hz}, sample_rate={sample_rate}"
        )
    edges = mel_to_hz(np.linspace(hz_to_mel(fmin_hz), hz_to_mel(fmax_hz), n_mels + 2))
    bins = np.fft.rfftfreq(n_fft, d=1.0 / sample_rate)
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (bins[None, :] - lower) / (centre - lower)
    falling = (upper - bins[None, :]) / (upper - centre)
    bank = np.clip(np.minimum(rising, falling), 0.0, None)
    empty = np.flatnonzero(bank.sum(axis=1) == 0)
    if len(empty):
        raise ValueError(
            f"{len(empty)} of {n_mels} mel filters fall between FFT bins ({n_fft}-point FFT "
            f"at {sample_rate} Hz): lower n_mels, raise fmin_hz or lengthen window_ms"
        )
    return bank


def log_mel(
    waveform: np.ndarray,
    sample_rate: int,
    n_mels: int,
    window_ms: float,
    hop_ms: float,
    fmin_hz: float,
    fmax_hz: float,
) -> np.ndarray:
    """Log mel filter-bank energies, (T, n_mels) float32.

    Frames of ``window_ms`` every ``hop_ms`` (no padding: T = 1 + (len - window) // hop,
    0 when the signal is shorter than one window), Hann window, power spectrum of a
    zero-padded FFT of the next power of two, scaled by 1/n_fft as in
    python_speech_features; natural log of the mel energies + ``LOG_FLOOR``.
    """
    window = int(round(sample_rate * window_ms / 1000.0))
    hop = int(round(sample_rate * hop_ms / 1000.0))
    if window < 2 or hop < 1:
        raise ValueError(f"window_ms={window_ms}, hop_ms={hop_ms} too short at {sample_rate} Hz")
    n_fft = 1 << (window - 1).bit_length()
    bank = mel_filterbank(sample_rate, n_fft, n_mels, fmin_hz, fmax_hz)
    signal = np.asarray(waveform, dtype=np.float32).reshape(-1)
    if len(signal) < window:
        return np.zeros((0, n_mels), dtype=np.float32)
    frames = np.lib.stride_tricks.sliding_window_view(signal, window)[::hop]
    spectrum = np.fft.rfft(frames * np.hanning(window).astype(np.float32), n=n_fft, axis=1)
    power = (spectrum.real**2 + spectrum.imag**2) / n_fft
    return np.log(power @ bank.T + LOG_FLOOR).astype(np.float32)


def extract_audio_features(probe: VideoProbe, params: AudioParams) -> np.ndarray:
    """(T, n_mels) log mel features of the video's audio; (0, n_mels) without audio."""
    waveform = read_audio(probe, params.sample_rate)
    return log_mel(
        waveform,
        params.sample_rate,
        params.n_mels,
        params.window_ms,
        params.hop_ms,
        params.fmin_hz,
        params.fmax_hz,
    )
