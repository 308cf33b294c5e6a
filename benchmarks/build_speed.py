"""How fast is `facelab.dataset.build` on a long 720p video, against decoding alone?

Makes (once, then reuses) a 720p 30 fps H.264 video from real frames: the Pexels clip in
../shared/data, upscaled to 1280x720 and looped to the wanted length, written with PyAV
(OpenCV cannot write H.264). Then, in the same run, it times

  decode-only   `facelab.video.sample_frames` at the build's fps (grab() the skipped frames,
                retrieve() the kept ones): the floor no build can beat;
  full build    `facelab.dataset.build` into a fresh temporary workspace;

and prints both, their ratio (target <= 1.5), faces/s, and the time a 30-minute 720p30 video
would take at the measured rate (target < 90 s).

    .venv/bin/python benchmarks/build_speed.py            # 10-minute video
    .venv/bin/python benchmarks/build_speed.py --minutes 2

Timings on a shared machine are noisy: compare the ratio, measured within one run.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SOURCE = Path(os.environ.get("FACELAB_SHARED_DATA", REPO.parent / "shared" / "data")) / "WolfgangLanger_Pexels.mp4"
CACHE = Path(os.environ.get("FACELAB_BENCH_CACHE", Path.home() / ".cache" / "facelab-bench"))
WIDTH, HEIGHT, FPS = 1280, 720, 30


def make_video(minutes: float, cache: Path = CACHE) -> Path:
    """The looped 720p30 clip of `minutes` length; written once (atomically), then reused."""
    import av
    import cv2

    out = cache / f"pexels_{WIDTH}x{HEIGHT}_{FPS}fps_{minutes:g}min.mp4"
    if out.exists():
        return out
    cache.mkdir(parents=True, exist_ok=True)
    cap = cv2.VideoCapture(str(SOURCE), cv2.CAP_FFMPEG)
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(cv2.resize(frame, (WIDTH, HEIGHT), interpolation=cv2.INTER_LINEAR))
    cap.release()
    if not frames:
        raise SystemExit(f"cannot read {SOURCE}")
    total = int(round(minutes * 60 * FPS))
    print(f"writing {out} ({total} frames, once; later runs reuse it) ...", file=sys.stderr)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp.mp4")
    try:
        with av.open(str(tmp), "w") as container:
            stream = container.add_stream("libx264", rate=FPS)
            stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
            stream.options = {"preset": "veryfast", "crf": "23"}
            for i in range(total):
                vf = av.VideoFrame.from_ndarray(frames[i % len(frames)], format="bgr24")
                for packet in stream.encode(vf):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


def decode_only(video: Path, fps: float) -> tuple[float, float, int]:
    """Wall and CPU seconds (all threads) to sample the video, and the frames sampled."""
    from facelab.video import sample_frames

    t0, c0 = time.perf_counter(), time.process_time()
    n = sum(1 for _ in sample_frames(video, fps))
    return time.perf_counter() - t0, time.process_time() - c0, n


def full_build(video: Path, fps: float) -> tuple[float, float, "BuildReport"]:  # noqa: F821
    from facelab import workspace
    from facelab.dataset import BuildSettings, build

    with tempfile.TemporaryDirectory() as home:
        ws = workspace.create("bench", home)
        t0, c0 = time.perf_counter(), time.process_time()
        report = build(ws, video, BuildSettings(fps=fps))
        return time.perf_counter() - t0, time.process_time() - c0, report


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=10.0, help="length of the test video (default 10)")
    ap.add_argument("--fps", type=float, default=8.0, help="sampling rate of the build (default 8)")
    args = ap.parse_args(argv)

    import cv2

    from facelab.video import probe

    video = make_video(args.minutes)
    info = probe(video)
    print(f"video: {video.name}  {info.width}x{info.height} {info.fps:g} fps  "
          f"{info.duration_s:.0f} s  ({info.frame_count} frames)  cores: {os.cpu_count()}  "
          f"cv2 threads: {cv2.getNumThreads()}")
    dec_s, dec_cpu, sampled = decode_only(video, args.fps)
    build_s, build_cpu, report = full_build(video, args.fps)
    ratio = build_s / dec_s
    per_30min = build_s * (30 * 60) / info.duration_s
    rows = [
        ("decode-only (grab/retrieve)", f"{dec_s:8.1f} s",
         f"{sampled} frames, {sampled / dec_s:.0f} frames/s, {dec_cpu:.1f} s CPU"),
        ("full build", f"{build_s:8.1f} s",
         f"{report.kept} kept, {report.kept / build_s:.0f} faces/s, {build_cpu:.1f} s CPU"),
        ("ratio build / decode", f"{ratio:8.2f} x", "target <= 1.5"),
        ("CPU ratio build / decode", f"{build_cpu / dec_cpu:8.2f} x", "less sensitive to other load"),
        ("30-min 720p30, extrapolated", f"{per_30min:8.1f} s", "target < 90 s"),
        ("30-min decode-only, extrap.", f"{dec_s * 1800 / info.duration_s:8.1f} s", "the floor on this machine now"),
    ]
    print(f"\n{'measure':<30}{'value':>12}   note")
    for name, value, note in rows:
        print(f"{name:<30}{value:>12}   {note}")
    print(f"\ncounts: {report.counts()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
