"""How much does the face crop zoom from frame to frame, without and with box smoothing?

For every clip in ../shared/data (or FACELAB_SHARED_DATA), builds the dataset twice into
temporary workspaces, with `BuildSettings(smooth=0)` (raw Haar boxes) and with the default
smoothing, and prints |Δsize| / size between consecutive kept crops of the clip: its median
(`facelab.data.faces.size_jitter`), mean and 90th percentile, plus the crops kept. A still head
should give a still crop.

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/crop_jitter.py [--fps 8]

Skips (exit 0, with a message) when the shared data folder is absent.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

DATA = Path(os.environ.get("FACELAB_SHARED_DATA", REPO.parent / "shared" / "data"))
CLIPS = ("WolfgangLanger_Pexels.mp4", "liveportrait_d0.mp4", "liveportrait_d11.mp4",
         "liveportrait_d12.mp4", "liveportrait_d13.mp4", "liveportrait_d20.mp4",
         "single_face.mp4", "bbaf2n.mpg", "lbax4n.mpg")


def jitter_of(video: Path, root: Path, smooth: int, fps: float) -> tuple[str, int]:
    """('median mean p90' of the size jitter, crops kept) of one build of `video`."""
    import numpy as np

    from facelab.data import dataset
    from facelab.data.faces import Box, size_jitter
    from facelab.store import workspace

    ws = workspace.create(f"s{smooth}-{video.stem}", root)
    dataset.build(ws, video, dataset.BuildSettings(fps=fps, smooth=smooth))
    faces = dataset.faces_table(ws)
    w = np.array([f["box"][2] for f in faces], float)
    d = np.abs(np.diff(w)) / w[:-1] if len(w) > 1 else np.array([np.nan])
    med = size_jitter([Box(*f["box"]) for f in faces])
    return f"{med:6.1%} {d.mean():6.1%} {np.percentile(d, 90):6.1%}", len(faces)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fps", type=float, default=8.0, help="frames sampled per second (build's default 8)")
    args = ap.parse_args()
    clips = [DATA / c for c in CLIPS if (DATA / c).exists()]
    if not clips:
        print(f"skipped: no clips found in {DATA} (set FACELAB_SHARED_DATA to the shared data folder)")
        return 0
    from facelab.data.dataset import BuildSettings

    smooth = BuildSettings().smooth
    print(f"|Δsize|/size between consecutive kept crops, {args.fps:g} fps sampled\n")
    print(f"{'':33} {'raw (smooth 0)':^20}   {f'smooth {smooth}':^20}")
    print(f"{'clip':26} {'crops':>6} {'median   mean    p90':>20}   {'median   mean    p90':>20}")
    with tempfile.TemporaryDirectory() as tmp:
        for clip in clips:
            raw, n = jitter_of(clip, Path(tmp), 0, args.fps)
            smoothed, _ = jitter_of(clip, Path(tmp), smooth, args.fps)
            print(f"{clip.name:26} {n:6d} {raw:>20}   {smoothed:>20}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
