"""How much memory does `facelab.data.dataset.build` take for 720p, 4K and 8K videos?

For each resolution it writes a short MJPG clip (frames of sample/WolfgangLanger_Pexels.mp4,
upscaled), then builds it in a fresh child process (every frame sampled, so the pipeline is
full) and prints the child's peak resident memory (ru_maxrss), next to the peak of a child
that only imports facelab (the floor). Frames are shrunk as they are decoded and only
`dataset.FRAMES_IN_FLIGHT` wait for detection, so the build's share should hardly grow with
the resolution (one decoded full-size frame at a time: 25 MB at 4K, 100 MB at 8K).

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/build_memory.py
    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/build_memory.py --frames 40
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "sample" / "WolfgangLanger_Pexels.mp4"
SIZES = {"720p": (1280, 720), "4K": (3840, 2160), "8K": (7680, 4320)}
FACE_START = 380  # the sample's frames from here on show a clear face

CHILD = """
import os, resource, sys, tempfile
os.environ["FACELAB_HOME"] = tempfile.mkdtemp()
sys.path.insert(0, {repo!r})
from facelab.data import dataset
from facelab.store import workspace
if {video!r}:
    w = workspace.create("bench")
    r = dataset.build(w, __import__("pathlib").Path({video!r}), dataset.BuildSettings(fps=30))
    print(r.message(), file=sys.stderr)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)  # KiB on Linux
"""


def make_clip(path: Path, size: tuple[int, int], frames: int) -> Path:
    import cv2

    cap = cv2.VideoCapture(str(SAMPLE))
    cap.set(cv2.CAP_PROP_POS_FRAMES, FACE_START)
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30, size)
    for _ in range(frames):
        ok, frame = cap.read()
        if not ok:
            cap.set(cv2.CAP_PROP_POS_FRAMES, FACE_START)
            ok, frame = cap.read()
        out.write(cv2.resize(frame, size, interpolation=cv2.INTER_LINEAR))
    out.release()
    cap.release()
    return path


def peak_mib(video: Path | None) -> float:
    code = CHILD.format(repo=str(REPO), video=str(video) if video else "")
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    return int(out.stdout.strip().splitlines()[-1]) / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=20, help="frames per clip (default 20)")
    ap.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    args = ap.parse_args()
    floor = peak_mib(None)
    print(f"{'import only':>12}: peak RSS {floor:7.0f} MiB")
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.sizes:
            clip = make_clip(Path(tmp) / f"{name}.avi", SIZES[name], args.frames)
            peak = peak_mib(clip)
            print(f"{name:>12}: peak RSS {peak:7.0f} MiB  (build's share {peak - floor:6.0f} MiB, "
                  f"{args.frames} frames of {SIZES[name][0]}x{SIZES[name][1]})", flush=True)
            clip.unlink()


if __name__ == "__main__":
    main()
