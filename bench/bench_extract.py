"""Benchmark: frame and audio extraction against a full ffmpeg decode of the same clip.

Builds two 15 s 1280x720 30 fps H.264 + AAC clips (ffmpeg's testsrc2 pattern and a
440 Hz tone) in a temporary folder: one with a 1-second GOP (-g 30), one with x264's
default GOP (keyint 250). Per clip it times, interleaved and repeated:
  full decode   ffmpeg -v error -i clip -f null -    (the reference, 1.00x)
  N frames      probe_video + extract_frames: the workflow's own functions, probing
                included, N evenly spaced frames fitted into 384x216, as rgb24 arrays
  audio         probe_video + extract_audio_features (16 kHz mono log mel)
Ratios are medians over repeats of (case time / full decode time of the same repeat),
so a slow drift in machine load cancels out. CPU seconds (this process and its ffmpeg
children, user + system) measure the work done, whatever else runs on the machine.

With --shard it also times shards (four such clips; eight demo-sized 384x216 4 s
clips) through extract_video, what extract_shard runs per video: two videos at a time
with one core each (extract_shard's schedule) against one video at a time on both.

Run from the repository root:
  .venv/bin/python bench/bench_extract.py [--repeats 9] [--workers 2] [--shard]
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "workflow_scripts"))

from traitlens.extract.audio_features import AudioParams, extract_audio_features  # noqa: E402
from traitlens.extract.extract_shard import extract_video  # noqa: E402
from traitlens.extract.frame_decode import extract_frames  # noqa: E402
from traitlens.extract.frame_plan import evenly_spaced_indices  # noqa: E402
from traitlens.extract.probe import probe_video  # noqa: E402

BOX = (384, 216)  # the workflow's default frame box


def make_clip(path: Path, gop: int | None) -> Path:
    cmd = ["ffmpeg", "-v", "error", "-y", "-nostdin"]
    cmd += ["-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=30:duration=15"]
    cmd += ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100:duration=15"]
    cmd += ["-c:v", "libx264", "-pix_fmt", "yuv420p"] + (["-g", str(gop)] if gop else [])
    cmd += ["-c:a", "aac", "-shortest", str(path)]
    subprocess.run(cmd, check=True)
    return path


def full_decode(path: Path) -> None:
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-f", "null", "-"], check=True)


def frames(path: Path, n: int, workers: int):
    probe = probe_video(path)
    result = extract_frames(probe, evenly_spaced_indices(probe.n_frames, n), *BOX, workers)
    assert len(result.pixels) == n
    return result.plan


def audio(path: Path) -> None:
    extract_audio_features(probe_video(path), AudioParams())


def cpu_seconds() -> float:
    """User + system CPU of this process and its finished children."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def describe(plan) -> str:
    if not hasattr(plan, "method"):
        return ""
    skip = sum(seg.skip_nonref for job in plan.jobs for seg in job)
    return (
        f"{plan.method}: {len(plan.jobs)} process(es) x {plan.decode_threads} thread(s), "
        f"{sum(len(job) for job in plan.jobs)} segment(s) ({skip} skipping non-ref), "
        f"{plan.decoded_frames} frames decoded"
    )


def per_clip(clips: dict[str, Path], repeats: int, workers: int) -> None:
    cases = {
        "full decode (`ffmpeg -f null`)": full_decode,
        f"10 frames, workers={workers}": lambda p: frames(p, 10, workers),
        f"100 frames, workers={workers}": lambda p: frames(p, 100, workers),
        "10 frames, workers=1": lambda p: frames(p, 10, 1),
        "100 frames, workers=1": lambda p: frames(p, 100, 1),
        "audio (16 kHz log mel)": audio,
    }
    times = {(c, k): [] for c in clips for k in cases}
    cpu = {(c, k): [] for c in clips for k in cases}
    plans = {(c, k): run(p) for c, p in clips.items() for k, run in cases.items()}  # warm-up
    for _ in range(repeats):
        for name, path in clips.items():
            for case, run in cases.items():
                start, start_cpu = time.perf_counter(), cpu_seconds()
                run(path)
                times[name, case].append(time.perf_counter() - start)
                cpu[name, case].append(cpu_seconds() - start_cpu)
    print("| clip | case | seconds | x full decode | CPU s | x full decode CPU | plan |")
    print("|---|---|---|---|---|---|---|")
    base_case = next(iter(cases))
    for name in clips:
        base, base_cpu = times[name, base_case], cpu[name, base_case]
        for case in cases:
            ratios = [t / b for t, b in zip(times[name, case], base, strict=True)]
            cpu_ratios = [t / b for t, b in zip(cpu[name, case], base_cpu, strict=True)]
            print(
                f"| {name} | {case} | {statistics.median(times[name, case]):.3f} "
                f"| {statistics.median(ratios):.2f} | {statistics.median(cpu[name, case]):.2f} "
                f"| {statistics.median(cpu_ratios):.2f} | {describe(plans[name, case])} |"
            )


def make_small_clip(path: Path) -> Path:
    """A demo-sized clip: 4 s of 384x216 at 30 fps, x264 defaults, AAC tone."""
    cmd = ["ffmpeg", "-v", "error", "-y", "-nostdin"]
    cmd += ["-f", "lavfi", "-i", "testsrc2=size=384x216:rate=30:duration=4"]
    cmd += ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100:duration=4"]
    cmd += ["-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest", str(path)]
    subprocess.run(cmd, check=True)
    return path


def shard(shards: dict[str, list[tuple[str, str]]], repeats: int, workers: int) -> None:
    """Videos per second of extract_video (10 frames + audio) over a shard, scheduled
    as extract_shard does (videos side by side) or one video at a time on all cores."""

    def run(videos, at_once: int, per_video: int) -> None:
        def one(video):
            return extract_video(*video, 10, BOX, AudioParams(), per_video)

        with ThreadPoolExecutor(at_once) as pool:
            assert all(r.ok for r in pool.map(one, videos))

    configs = {
        f"{workers} videos at a time, 1 core each": (workers, 1),
        f"1 video at a time, {workers} cores": (1, workers),
    }
    times = {(s, c): [] for s in shards for c in configs}
    for _ in range(repeats):
        for name, videos in shards.items():
            for config, args in configs.items():
                start = time.perf_counter()
                run(videos, *args)
                times[name, config].append(time.perf_counter() - start)
    print("\n| shard | schedule | seconds | videos/s |")
    print("|---|---|---|---|")
    for name, videos in shards.items():
        for config in configs:
            med = statistics.median(times[name, config])
            print(f"| {name} | {config} | {med:.2f} | {len(videos) / med:.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--shard", action="store_true", help="also time a shard")
    args = parser.parse_args()
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        clips = {
            "1-s GOP (-g 30)": make_clip(Path(tmp) / "gop30.mp4", 30),
            "x264 default GOP (250)": make_clip(Path(tmp) / "gop250.mp4", None),
        }
        version = subprocess.run(["ffmpeg", "-version"], capture_output=True, text=True)
        print(
            f"{platform.node()}: {os.cpu_count()} cores, {version.stdout.split(' Copyright')[0]}, "
            f"median of {args.repeats}, load average {load:.2f} before, "
            f"frames fitted into {BOX[0]}x{BOX[1]}\n"
        )
        per_clip(clips, args.repeats, args.workers)
        if args.shard:
            big = [(f"{n}-{k}", str(p)) for k in range(2) for n, p in clips.items()]
            small = [(f"s{k}", str(make_small_clip(Path(tmp) / f"s{k}.mp4"))) for k in range(8)]
            shards = {"4 x 720p 15 s (both GOPs)": big, "8 x 384x216 4 s": small}
            shard(shards, max(3, args.repeats // 3), args.workers)
    print(f"\nload average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
