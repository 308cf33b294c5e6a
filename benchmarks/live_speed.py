"""How fast is the webcam pipeline (`facelab.live.LivePipeline.process`) on this CPU, and the live preview in a browser?

Frames: the real clips in ../shared/data (the Pexels clip and single_face.mp4), resized to
640x480 as a webcam would give them. Model: a random-weight BetaVAE (64x64, 32 latents; the
speed of a trained one is the same) or a run's trained model with --run-dir. In the same run
it times

  decode-only   reading the frames from the video and resizing them (the floor: what a camera
                loop costs before any facelab work);
  pipeline      `process(frame)` per frame, stage by stage (detect/track, crop, encode, shift,
                decode, paste), with one shift direction active;

and prints a table of per-stage means, the facelab ms per frame (target <= 15), the sustainable
end-to-end fps (target >= 25), the ratio to decode-only, and the time of one slider update on
the Shift page (compose, decode two faces, add the change; target < 100 ms).

    .venv/bin/python benchmarks/live_speed.py
    .venv/bin/python benchmarks/live_speed.py --frames 600 --paste-back --torch-threads 0

With --browser it measures the whole path instead (camera → WebRTC → processing → WebRTC → page):
the Webcam page of `streamlit run` on the sample workspace, in headless Chromium with a 640x480
fake camera whose frames carry their own numbers, inside a private network namespace (needs
root): frames shown per second, the delay from camera frame to processed frame on screen, and
where the time goes (see benchmarks/live_browser.py for the method). Targets on a quiet
machine: >= 20 fps shown, <= 100 ms added delay.

    .venv/bin/python benchmarks/live_speed.py --browser --seconds 15 --repeats 2
    .venv/bin/python benchmarks/live_speed.py --browser --busy    # a training job runs beside

Timings on a shared machine are noisy: compare ratios measured within one run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

DATA = Path(os.environ.get("FACELAB_SHARED_DATA", REPO.parent / "shared" / "data"))
CLIPS = ("WolfgangLanger_Pexels.mp4", "single_face.mp4")
W, H = 640, 480


def read_frames(n: int) -> tuple[list, float]:
    """n frames (looping over the clips), and the seconds reading + resizing them took."""
    import cv2

    frames = []
    t0 = time.perf_counter()
    while len(frames) < n:
        for name in CLIPS:
            cap = cv2.VideoCapture(str(DATA / name))
            while len(frames) < n:
                ok, frame = cap.read()
                if not ok:
                    break
                frames.append(cv2.resize(frame, (W, H), interpolation=cv2.INTER_LINEAR))
            cap.release()
    return frames, time.perf_counter() - t0


def cv2_threads() -> int:
    import cv2

    return cv2.getNumThreads()


def make_codec(run_dir: str | None):
    from facelab.model.models import ModelConfig, TorchCodec, build_model, load_codec

    if run_dir:
        return load_codec(Path(run_dir))
    return TorchCodec(build_model(ModelConfig(kind="betavae", latent_dim=32, image_size=64)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--run-dir", help="a trained run folder (default: random weights)")
    ap.add_argument("--detect-every", type=int, default=5)
    ap.add_argument("--paste-back", action="store_true")
    ap.add_argument("--torch-threads", type=int, default=1,
                    help="torch threads of the pipeline's thread (default 1, the pipeline's own; 0: torch's choice)")
    ap.add_argument("--cv-threads", type=int, help="cv2.setNumThreads (default: OpenCV's choice)")
    ap.add_argument("--browser", action="store_true",
                    help="measure the live preview in Chromium instead (frames shown, delay; needs root)")
    ap.add_argument("--seconds", type=float, default=15, help="--browser: seconds measured per stream")
    ap.add_argument("--repeats", type=int, default=2, help="--browser: streams (a fresh Chromium each)")
    ap.add_argument("--busy", action="store_true", help="--browser: with a training job running beside")
    ap.add_argument("--camera-fps", type=int, default=30, help="--browser: the fake camera's frame rate")
    ap.add_argument("--settle", type=float, default=3, help="--browser: seconds streamed before measuring")
    ap.add_argument("--home", help="--browser: a FACELAB_HOME to use and keep (default: a temporary one); "
                                   "the sample workspace is made there if absent")
    ap.add_argument("--what-if", action="append", default=[], choices=["no-page-timers", "unbuffered-relay"],
                    help="--browser: run the server with one change, to see what it is worth (repeatable; "
                         "see benchmarks/live_browser.py WHAT_IFS)")
    ap.add_argument("--server-stacks", metavar="PATH",
                    help="--browser: also sample the server's thread stacks every 5 ms into PATH (JSON)")
    args = ap.parse_args()
    if args.browser:
        from live_browser import run

        run(args.seconds, args.repeats, args.busy, args.camera_fps, args.home, args.settle, args.server_stacks,
            args.what_if)
        return

    import numpy as np
    import torch

    from facelab.live import STAGES, LivePipeline, LiveSettings

    from facelab.edits.directions import Direction
    from facelab.edits.edit import compose, shift_faces

    if args.cv_threads is not None:
        import cv2

        cv2.setNumThreads(args.cv_threads)
    codec = make_codec(args.run_dir)
    d = codec.config.latent_dim

    # decode-only baseline, read twice: the first pass warms the file cache
    read_frames(min(args.frames, 60))
    frames, read_s = read_frames(args.frames)
    read_ms = 1000 * read_s / len(frames)

    rng = np.random.default_rng(0)
    v = rng.normal(size=d).astype(np.float32)
    direction = Direction("bench", "custom", v / np.linalg.norm(v), spread=1.0)
    settings = LiveSettings(shifts=((direction, 2.0),), detect_every=args.detect_every,
                            paste_back=args.paste_back)
    pipe = LivePipeline(codec, settings, torch_threads=args.torch_threads or None)
    for f in frames[:10]:  # warm-up: first torch calls, cascade loading
        pipe.process(f)
    rows: list[dict[str, float]] = []
    faces = 0
    t0 = time.perf_counter()
    for f in frames:
        r = pipe.process(f)
        rows.append(r.timings)
        faces += len(r.boxes)
    wall = time.perf_counter() - t0
    n = len(frames)

    def mean(key: str) -> float:
        return statistics.fmean(r[key] for r in rows)

    def pct(key: str, q: float) -> float:
        vals = sorted(r[key] for r in rows)
        return vals[min(len(vals) - 1, int(q * len(vals)))]

    # one slider update on the Shift page: move one code, decode it and the original's code,
    # and add the change to the original face (the detail-preserving picture)
    z = rng.normal(size=d).astype(np.float32)
    s = codec.config.image_size
    face = rng.integers(0, 256, (s, s, 3), dtype=np.uint8)
    for _ in range(5):
        shift_faces(codec, face, z, compose(z, [(direction, 1.0)]))
    t = time.perf_counter()
    reps = 50
    for i in range(reps):
        shift_faces(codec, face, z, compose(z, [(direction, (i % 7) - 3.0)]))
    update_ms = 1000 * (time.perf_counter() - t) / reps

    facelab_ms = 1000 * wall / n
    e2e_ms = read_ms + facelab_ms
    print(f"live pipeline: {n} frames {W}x{H} from {', '.join(CLIPS)}; {faces} faces processed "
          f"({faces / n:.2f}/frame); model {codec.config.kind} {codec.config.image_size}px "
          f"z{d}; torch threads {torch.get_num_threads()}; cv2 threads {cv2_threads()}; detect every {args.detect_every}; "
          f"paste-back {'on' if args.paste_back else 'off'}")
    print(f"{'stage':<12}{'mean ms':>9}{'p50 ms':>9}{'p95 ms':>9}")
    for key in (*STAGES, "total"):
        print(f"{key:<12}{mean(key):>9.2f}{pct(key, 0.5):>9.2f}{pct(key, 0.95):>9.2f}")
    print(f"decode-only (read + resize)  {read_ms:6.2f} ms/frame  ({1000 / read_ms:6.0f} fps)")
    print(f"facelab work per frame       {facelab_ms:6.2f} ms/frame  (target <= 15)")
    print(f"end to end                   {e2e_ms:6.2f} ms/frame  ({1000 / e2e_ms:6.1f} fps, target >= 25)")
    print(f"ratio end-to-end / decode-only  {e2e_ms / read_ms:6.1f}x")
    print(f"Shift page slider update (shift + decode 2 faces + change)  {update_ms:6.2f} ms  (target < 100)")


if __name__ == "__main__":
    main()
