"""`facelab workspaces`, `facelab workspace create|rename|delete`."""

from __future__ import annotations

import argparse

from facelab.store import workspace as ws


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("workspaces", help="list workspaces with their counts")
    p.set_defaults(func=_list)

    p = sub.add_parser("workspace", help="create, rename or delete a workspace")
    actions = p.add_subparsers(dest="action", required=True)
    a = actions.add_parser("create")
    a.add_argument("name")
    a.set_defaults(func=lambda args: print(ws.create(args.name, args.home).path))
    a = actions.add_parser("rename")
    a.add_argument("old")
    a.add_argument("new")
    a.set_defaults(func=lambda args: print(ws.rename(args.old, args.new, args.home).path))
    a = actions.add_parser("delete", help="delete every file of a workspace (no undo)")
    a.add_argument("name")
    a.add_argument("--yes", action="store_true", help="do not ask")
    a.set_defaults(func=_delete)


def _list(args: argparse.Namespace) -> int:
    names = ws.list_workspaces(args.home)
    if not names:
        print(f"no workspaces in {ws.workspaces_root(args.home)}")
        return 0
    print(f"{'workspace':<24} {'sources':>7} {'faces':>7} {'labelled':>8} {'runs':>5}")
    for name in names:
        s = ws.open_workspace(name, args.home).summary()
        print(f"{name:<24} {s['sources']:>7} {s['faces']:>7} {s['labelled']:>8} {s['runs']:>5}")
    return 0


def _delete(args: argparse.Namespace) -> int:
    if not args.yes:
        answer = input(f"Delete workspace {args.name!r} and all its faces and models? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            print("kept")
            return 1
    ws.delete(args.name, args.home)
    print(f"deleted {args.name}")
    return 0
