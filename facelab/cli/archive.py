"""`facelab export` and `facelab import`: a whole workspace as one verified zip; `facelab
run-export` and `run-import`: one trained run as a folder, e.g. back from a GPU machine."""

from __future__ import annotations

import argparse
from pathlib import Path

from facelab.cli import CliError, add_workspace_arg, resolve_workspace


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="write a workspace (crops, labels, trained runs) to one .zip")
    add_workspace_arg(p)
    p.add_argument("--out", "-o", help="zip file to write (default: ./<workspace>.zip)")
    p.add_argument("--checkpoints", action="store_true",
                   help="also pack each run's checkpoint.pt (large; only needed to resume training)")
    p.add_argument("--force", action="store_true", help="replace --out if it exists")
    p.set_defaults(func=_export)

    p = sub.add_parser("import", help="add a workspace from a .zip made by `facelab export` (verified first)")
    p.add_argument("zip", help="the archive")
    p.add_argument("--name", help="name of the new workspace (default: the name stored in the archive)")
    p.set_defaults(func=_import)

    p = sub.add_parser("run-export", help="write one finished run (config, weights, metrics) to a folder")
    add_workspace_arg(p)
    p.add_argument("run", help="run id (see `facelab runs`)")
    p.add_argument("--out", "-o", help="folder to write (default: ./<run id>)")
    p.set_defaults(func=_run_export)

    p = sub.add_parser("run-import", help="add a run folder made by `facelab run-export` (verified first)")
    add_workspace_arg(p)
    p.add_argument("folder", help="the exported run folder")
    p.add_argument("--as", dest="run_id", help="run id to give it here (default: its own)")
    p.set_defaults(func=_run_import)


def _export(args: argparse.Namespace) -> int:
    from facelab.store.archive import export_workspace

    w = resolve_workspace(args.workspace, args.home)
    out = Path(args.out or f"{w.name}.zip").expanduser()
    if out.is_dir():
        out = out / f"{w.name}.zip"
    if out.exists() and not args.force:
        raise CliError(f"{out} exists: pass --force to replace it, or choose another --out")
    export_workspace(w, out, include_checkpoints=args.checkpoints)
    s = w.summary()
    print(f"exported {w.name} ({s['faces']} crops, {s['labelled']} labelled, {s['runs']} runs) "
          f"to {out} ({out.stat().st_size / 2**20:.1f} MiB)")
    return 0


def _import(args: argparse.Namespace) -> int:
    from facelab.store.archive import import_workspace

    w = import_workspace(Path(args.zip).expanduser(), name=args.name, home=args.home)
    s = w.summary()
    print(f"imported {w.name} ({s['faces']} crops, {s['labelled']} labelled, {s['runs']} runs) into {w.path}")
    return 0


def _run_export(args: argparse.Namespace) -> int:
    from facelab.model.transfer import export_run

    w = resolve_workspace(args.workspace, args.home)
    out = Path(args.out or args.run).expanduser()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise CliError(f"{out} exists and is not empty: choose another --out")
    export_run(w, args.run, out)
    print(f"exported run {args.run} of {w.name} to {out}/")
    return 0


def _run_import(args: argparse.Namespace) -> int:
    from facelab.model.transfer import import_run

    w = resolve_workspace(args.workspace, args.home)
    run_id = import_run(w, Path(args.folder).expanduser(), args.run_id)
    print(f"imported run {run_id} into {w.name}; encode it with `facelab encode -w {w.name} {run_id}` "
          "or open the Explore page")
    return 0
