"""The repository itself: no workspace (faces, a database) is in it or can be added to it by
accident, and its tests need nothing from outside it."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import REPO

# What a workspace holds (see facelab.store.workspace): any of these in git would be someone's faces.
WORKSPACE_FILE = re.compile(
    r"(^|/)(faces\.npy|[^/]*\.sqlite(-wal|-shm|-journal)?|checkpoint\.pt|latents\.npz|train\.log)$"
    r"|(^|/)(workspaces|\.facelab|\.facelab-home)/"
)
# The old ways tests reached the data folder beside the repository (spelt with [a] so that this
# file does not itself mention them).
OUTSIDE = re.compile(r"\.\./sh[a]red|[\"']sh[a]red[\"']|\bsh[a]red_file\b|SH[A]RED_DATA")
PLACES = ["", "w2/workspaces/me/", "deep/inside/some/folder/", "tests/data/", "sample/"]


def git(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True)


@pytest.fixture(scope="module")
def checkout() -> None:
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    top = git("rev-parse", "--show-toplevel").stdout.strip()
    if not top or Path(top).resolve() != REPO:
        pytest.skip(f"{REPO} is not a git checkout (an unpacked archive): nothing to check")


def test_no_workspace_file_is_tracked(checkout: None) -> None:
    """`git ls-files` shows the index: a deletion not yet committed counts as gone."""
    tracked = git("ls-files").stdout.splitlines()
    deleted = set(git("ls-files", "--deleted").stdout.splitlines())
    found = [p for p in tracked if WORKSPACE_FILE.search(p) and p not in deleted]
    assert not found, f"workspace files are in the repository: {found[:10]}"


@pytest.mark.parametrize("name", ["faces.npy", "facelab.sqlite", "facelab.sqlite-wal",
                                  "facelab.sqlite-shm", "runs/abc/checkpoint.pt", "me.zip"])
def test_gitignore_keeps_workspace_files_out_anywhere(checkout: None, name: str) -> None:
    paths = [place + name for place in PLACES]
    out = git("check-ignore", "--no-index", *paths)
    ignored = set(out.stdout.splitlines())
    assert ignored == set(paths), f".gitignore does not ignore {sorted(set(paths) - ignored)}"


def test_gitignore_keeps_workspace_folders_out(checkout: None) -> None:
    paths = ["workspaces/me/notes.txt", "a/b/workspaces/me/x.png", ".facelab/workspaces/me/y",
             ".facelab-home/anything"]
    ignored = set(git("check-ignore", "--no-index", *paths).stdout.splitlines())
    assert ignored == set(paths), f".gitignore does not ignore {sorted(set(paths) - ignored)}"


def test_shipped_files_are_not_ignored(checkout: None) -> None:
    """The ignore rules must not swallow what ships (the sample model, the sample clip)."""
    paths = ["models/sample/model.pt", "sample/WolfgangLanger_Pexels.mp4", "tests/data/bbaf2n.mpg"]
    assert git("check-ignore", "--no-index", *paths).stdout == ""


def test_tests_need_nothing_outside_the_repository() -> None:
    """CI runs on a clone of the repository alone: no test may read a folder beside it."""
    offenders = [p.name for p in (REPO / "tests").glob("*.py")
                 if OUTSIDE.search(p.read_text())]
    assert not offenders, f"these tests read files outside the repository: {offenders}"
