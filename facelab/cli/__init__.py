"""`facelab` command line. Each sub-command lives in its own module with a `register(sub)`.

Errors meant for the user (a `facelab.errors.FacelabError`: bad input, a missing workspace)
print one line and exit 2, caught once in `main`; they never print a traceback. A command
catches one itself only to add a hint (e.g. "pass --create").
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

from facelab.errors import FacelabError

# Modules under facelab.cli, each adding its sub-commands; a missing one is skipped so the
# CLI works while a feature is being built.
COMMAND_MODULES = ["workspaces", "build", "crops", "train", "explore", "edit", "sample", "archive"]


class CliError(FacelabError):
    """An error whose message is shown to the user as is."""


def add_workspace_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--workspace", "-w", required=True, help="workspace name, or the path of its folder")


def check_out(out: Path, *suffixes: str) -> None:
    """CliError unless the output file's name ends in one of `suffixes` (it says which kind to write)."""
    if out.suffix.lower() not in suffixes:
        kinds = ", ".join(suffixes[:-1]) + (" or " if len(suffixes) > 1 else "") + suffixes[-1]
        raise CliError(f"--out must end in {kinds}, not {out.name!r}")


def resolve_workspace(value: str, home: str | None):
    """A workspace by name (under the home folder) or by the path of its folder."""
    from facelab.store import db
    from facelab.store.workspace import DB_FILE, Workspace, WorkspaceError, open_workspace

    if "/" in value or value.startswith("."):
        path = Path(value).expanduser().resolve()
        if not (path / DB_FILE).exists():
            raise WorkspaceError(f"{value} is not a facelab workspace (no {DB_FILE} in it)")
        db.init(path / DB_FILE)
        return Workspace(path)
    return open_workspace(value, home)


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="facelab", description="facelab: a local, private lab that models your facial expressions."
    )
    parser.add_argument("--home", help="folder holding the workspaces (default: $FACELAB_HOME or ~/.facelab)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(f"facelab.cli.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (FacelabError, FileNotFoundError) as e:  # every module's user errors, caught here once
        print(f"facelab: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("facelab: interrupted", file=sys.stderr)
        return 130
