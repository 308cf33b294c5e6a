"""`facelab build VIDEO --workspace NAME`: add the faces of a video to a workspace."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from facelab.cli import CliError, add_workspace_arg, resolve_workspace
from facelab.data.dataset import CROP_SIZES, BuildProgress, BuildSettings, DuplicateVideo, build
from facelab.data.faces import DEFAULT_MARGIN
from facelab.store import workspace as ws


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("build", help="add the faces of a video to a workspace",
                       description="Sample a video, crop one face per frame and append the crops "
                                   "to a workspace. Nothing is stored unless the build finishes.")
    p.add_argument("video", type=Path)
    add_workspace_arg(p)
    p.add_argument("--create", action="store_true", help="create the workspace (by name) if it does not exist")
    p.add_argument("--fps", type=float, default=BuildSettings.fps, help="frames sampled per second (default 8)")
    p.add_argument("--size", type=int, default=BuildSettings.size, choices=CROP_SIZES, help="crop side in pixels")
    p.add_argument("--margin", type=float, default=DEFAULT_MARGIN,
                   help=f"grow (or, negative, trim) the face box per side, as a share of it (default {DEFAULT_MARGIN})")
    p.add_argument("--align", action="store_true", help="rotate crops so the eyes are level")
    p.add_argument("--name", help="source name to record (default: the file's name)")
    p.add_argument("--again", action="store_true",
                   help="add the video even if this very file was built into the workspace before")
    p.add_argument("--preview", action="store_true",
                   help="also keep a small silent copy of the video (240 px high) so the app can play a "
                        "frame's moment; deleted with the workspace, with `facelab crops delete-previews`, and "
                        "when a crop of this video is deleted")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    p.set_defaults(func=_build)


def progress_line(p: BuildProgress) -> str:
    """`' 37% 120/320 frames  ETA 4 s'`: one line of the text progress bar."""
    eta = "" if p.eta_s is None else f"  ETA {p.eta_s:.0f} s"
    return f"{100 * p.fraction:3.0f}% {p.done}/{p.total} frames  {p.kept} faces{eta}"


def _build(args: argparse.Namespace) -> int:
    if not args.video.is_file():
        raise CliError(f"{args.video} does not exist or is not a file")
    try:
        w = resolve_workspace(args.workspace, args.home)
    except ws.WorkspaceError as e:
        if not args.create:
            raise CliError(f"{e} (or pass --create)") from None
        w = ws.open_or_create(args.workspace, args.home)
    settings = BuildSettings(fps=args.fps, size=args.size, margin=args.margin, align=args.align)
    tty = sys.stderr.isatty()
    shown = {"tenth": -1}

    def show(p: BuildProgress) -> None:
        if args.quiet:
            return
        if tty:
            print(f"\r{progress_line(p)}   ", end="", file=sys.stderr, flush=True)
        elif int(10 * p.fraction) != shown["tenth"]:  # a log file gets a line per 10%, not a flood
            shown["tenth"] = int(10 * p.fraction)
            print(progress_line(p), file=sys.stderr, flush=True)

    try:
        report = build(w, args.video, settings, name=args.name, progress=show, again=args.again)
    except DuplicateVideo as e:
        raise CliError(f"{e}; nothing was added (pass --again to add it anyway)") from None
    finally:
        if tty and not args.quiet:
            print(file=sys.stderr)
    if report.kept == 0:
        raise CliError(report.message())
    print(report.message())
    if args.preview:
        from facelab.data.preview import PreviewError, make_preview

        try:
            print(f"kept a preview: {make_preview(w, report.source_id, args.video)}")
        except PreviewError as e:
            print(f"no preview was kept: {e}", file=sys.stderr)
    counts = report.counts()
    print("  ".join(f"{k} {v}" for k, v in counts.items()))
    print(f"workspace {w.name}: {w.summary()['faces']} faces")
    return 0
