"""How fast is `facelab.data.dataset.build` on a long 720p video, against decoding alone?

Makes (once, then reuses) a 720p 30 fps H.264 video from real frames: the Pexels clip in
../shared/data, upscaled to 1280x720 and looped to the wanted length, written with PyAV
(OpenCV cannot write H.264; x264's "veryfast" preset, B-frames as most encoders make them).
Then, in the same run, it times

  decode every frame    `facelab.data.video.sample_frames(planned=False)`: OpenCV decodes every
                        frame (grab) and converts the sampled ones (retrieve): the build's
                        floor until it stopped decoding every frame;
  decode sampled        `sample_frames` as the build calls it: the sampled frames and only
                        the frames they depend on are decoded;
  full build            `facelab.data.dataset.build` into a fresh temporary workspace;

and prints them, the build's ratio to each (target: build / decode-every-frame < 1.0),
faces/s, and the time a 30-minute 720p video would take at the measured rate (target <= 60 s).
Run it on a quiet machine, then with a training job beside it.

    .venv/bin/python benchmarks/build_speed.py            # 10-minute video
    .venv/bin/python benchmarks/build_speed.py --quick    # 1 minute; last line: the ratio

Timings on a shared machine are noisy: compare the ratios, measured within one run.
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


def decode_only(video: Path, fps: float, planned: bool) -> tuple[float, float, int]:
    """Wall and CPU seconds (all threads) to sample the video, and the frames sampled."""
    from facelab.data.dataset import BuildSettings
    from facelab.data.video import sample_frames

    keep = BuildSettings(fps=fps).keep_short_side()  # frames shrunk as the build shrinks them
    t0, c0 = time.perf_counter(), time.process_time()
    n = sum(1 for _ in sample_frames(video, fps, max_short_side=keep, planned=planned))
    return time.perf_counter() - t0, time.process_time() - c0, n


def full_build(video: Path, fps: float) -> tuple[float, float, "BuildReport"]:  # noqa: F821
    from facelab.data.dataset import BuildSettings, build
    from facelab.store import workspace

    with tempfile.TemporaryDirectory() as home:
        ws = workspace.create("bench", home)
        t0, c0 = time.perf_counter(), time.process_time()
        report = build(ws, video, BuildSettings(fps=fps))
        return time.perf_counter() - t0, time.process_time() - c0, report


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=10.0, help="length of the test video (default 10)")
    ap.add_argument("--quick", action="store_true", help="a 1-minute video")
    ap.add_argument("--fps", type=float, default=8.0, help="sampling rate of the build (default 8)")
    args = ap.parse_args(argv)
    minutes = 1.0 if args.quick else args.minutes

    import cv2

    from facelab.data.video import probe

    video = make_video(minutes)
    info = probe(video)
    print(f"video: {video.name}  {info.width}x{info.height} {info.fps:g} fps  "
          f"{info.duration_s:.0f} s  ({info.frame_count} frames)  cores: {os.cpu_count()}  "
          f"cv2 threads: {cv2.getNumThreads()}")
    every_s, every_cpu, sampled = decode_only(video, args.fps, planned=False)
    some_s, some_cpu, _ = decode_only(video, args.fps, planned=True)
    build_s, build_cpu, report = full_build(video, args.fps)
    per_30min = build_s * (30 * 60) / info.duration_s
    rows = [
        ("decode every frame", f"{every_s:8.1f} s",
         f"{sampled} sampled, {sampled / every_s:.0f} frames/s, {every_cpu:.1f} s CPU"),
        ("decode sampled (+ refs)", f"{some_s:8.1f} s", f"{some_cpu:.1f} s CPU"),
        ("full build", f"{build_s:8.1f} s",
         f"{report.kept} kept, {report.kept / build_s:.0f} faces/s, {build_cpu:.1f} s CPU"),
        ("build / decode sampled", f"{build_s / some_s:8.2f} x", "the detection's share"),
        ("CPU build / decode every", f"{build_cpu / every_cpu:8.2f} x", "less sensitive to other load"),
        ("30-min 720p30, extrapolated", f"{per_30min:8.1f} s", "target <= 60 s"),
        ("30-min decode every frame", f"{every_s * 1800 / info.duration_s:8.1f} s", "extrapolated"),
    ]
    print(f"\n{'measure':<30}{'value':>12}   note")
    for name, value, note in rows:
        print(f"{name:<30}{value:>12}   {note}")
    print(f"\ncounts: {report.counts()}")
    print(f"build / decode-every-frame = {build_s / every_s:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
