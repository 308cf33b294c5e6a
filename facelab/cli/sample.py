"""`facelab sample [--reset]`: make the ready-made sample workspace (quick when it exists)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sample", help="create the sample workspace from the bundled clip and model")
    p.add_argument("--reset", action="store_true", help="delete and recreate it")
    p.set_defaults(func=_sample)


def _sample(args: argparse.Namespace) -> int:
    from facelab.sample import ensure_sample

    w = ensure_sample(args.home, reset=args.reset)
    print(f"sample workspace ready: {w.path}")
    return 0
