"""`facelab export` and `facelab import`: a whole workspace as one verified zip."""

from __future__ import annotations

import argparse
from pathlib import Path

from facelab.cli import CliError
from facelab.cli import resolve_workspace


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="write a workspace (crops, labels, trained runs) to one .zip")
    p.add_argument("--workspace", "-w", required=True, help="workspace name, or path to its folder")
    p.add_argument("--out", "-o", help="zip file to write (default: ./<workspace>.zip)")
    p.add_argument("--checkpoints", action="store_true",
                   help="also pack each run's checkpoint.pt (large; only needed to resume training)")
    p.add_argument("--force", action="store_true", help="replace --out if it exists")
    p.set_defaults(func=_export)

    p = sub.add_parser("import", help="add a workspace from a .zip made by `facelab export` (verified first)")
    p.add_argument("zip", help="the archive")
    p.add_argument("--name", help="name of the new workspace (default: the name stored in the archive)")
    p.set_defaults(func=_import)


def _export(args: argparse.Namespace) -> int:
    from facelab.archive import ArchiveError, export_workspace

    w = resolve_workspace(args.workspace, args.home)
    out = Path(args.out or f"{w.name}.zip").expanduser()
    if out.is_dir():
        out = out / f"{w.name}.zip"
    if out.exists() and not args.force:
        raise CliError(f"{out} exists: pass --force to replace it, or choose another --out")
    try:
        export_workspace(w, out, include_checkpoints=args.checkpoints)
    except ArchiveError as e:
        raise CliError(str(e)) from None
    s = w.summary()
    print(f"exported {w.name} ({s['faces']} crops, {s['labelled']} labelled, {s['runs']} runs) "
          f"to {out} ({out.stat().st_size / 2**20:.1f} MiB)")
    return 0


def _import(args: argparse.Namespace) -> int:
    from facelab.archive import ArchiveError, import_workspace

    try:
        w = import_workspace(Path(args.zip).expanduser(), name=args.name, home=args.home)
    except ArchiveError as e:
        raise CliError(str(e)) from None
    s = w.summary()
    print(f"imported {w.name} ({s['faces']} crops, {s['labelled']} labelled, {s['runs']} runs) into {w.path}")
    return 0
