"""`facelab crops delete -w W ID [ID ...]`: delete crops for good, as the Dataset page does;
`facelab crops delete-previews -w W`: erase the opt-in video previews (`facelab.data.preview`)."""

from __future__ import annotations

import argparse

from facelab.cli import CliError, add_workspace_arg, resolve_workspace


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("crops", help="manage a workspace's face crops")
    actions = p.add_subparsers(dest="action", required=True)
    a = actions.add_parser("delete", help="erase crops (their pixels, codes, maps and eval images); no undo")
    add_workspace_arg(a)
    a.add_argument("ids", nargs="+", metavar="ID", help="crop ids, as the Dataset page shows them")
    a.set_defaults(func=_delete)
    a = actions.add_parser("delete-previews", help="erase the workspace's video previews (the crops stay)")
    add_workspace_arg(a)
    a.set_defaults(func=_delete_previews)


def _parse_ids(values: list[str]) -> list[int]:
    bad = [v for v in values if not v.strip().isdigit()]
    if bad:
        raise CliError(f"crop ids are whole numbers (0, 1, 2, ...), not {', '.join(map(repr, bad[:5]))}")
    return [int(v) for v in values]


def _delete(args: argparse.Namespace) -> int:
    from facelab.data.dataset import RETRAIN_NOTE, delete_faces

    ids = _parse_ids(args.ids)
    w = resolve_workspace(args.workspace, args.home)
    n = delete_faces(w, ids)
    unique = len(set(ids))
    already = f" ({unique - n} already deleted)" if unique > n else ""
    print(f"deleted {n} crop{'s' if n != 1 else ''} from workspace {w.name}{already}")
    print(f"note: {RETRAIN_NOTE}")
    return 0


def _delete_previews(args: argparse.Namespace) -> int:
    from facelab.data.preview import delete_previews

    w = resolve_workspace(args.workspace, args.home)
    n = delete_previews(w)
    print(f"deleted {n} video preview{'s' if n != 1 else ''} from workspace {w.name}")
    return 0
