"""`facelab build`: counts on success, one clean error line (exit 2) on bad input."""

from __future__ import annotations

import subprocess
import sys

from facelab.cli import main
from facelab.cli.build import progress_line
from facelab.data.dataset import BuildProgress
from facelab.store import workspace as wsmod

from conftest import REPO
from media import media_file


def test_build_with_create_prints_the_counts(home, capsys):
    rc = main(["build", str(media_file("single_face.mp4")), "--workspace", "me", "--create", "-q"])
    out = capsys.readouterr()
    assert rc == 0, out.err
    assert "single_face.mp4: kept 19 of 19 sampled frames" in out.out
    assert "sampled 19  kept 19  no_face 0" in out.out
    assert wsmod.open_workspace("me").summary()["faces"] == 19


def test_missing_workspace_needs_create(home, capsys):
    rc = main(["build", str(media_file("single_face.mp4")), "--workspace", "nobody"])
    err = capsys.readouterr().err
    assert rc == 2 and "no workspace named 'nobody'" in err and "--create" in err
    assert wsmod.list_workspaces() == []


def test_bad_video_is_one_error_line_and_changes_nothing(home, tmp_path, capsys):
    wsmod.create("me")
    junk = tmp_path / "holiday.mp4"
    junk.write_text("not a video\n" * 100)
    rc = main(["build", str(junk), "--workspace", "me", "-q"])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.strip() == "facelab: error: holiday.mp4 is not a readable video " \
        "(unknown format, or the file is damaged or cut short)"
    assert wsmod.open_workspace("me").summary()["sources"] == 0


def test_video_without_a_face_is_an_error_that_says_why(home, capsys):
    rc = main(["build", str(media_file("no_face.mp4")), "--workspace", "me", "--create", "-q"])
    err = capsys.readouterr().err
    assert rc == 2 and "no face found in" in err and "nothing was added" in err


def test_other_crop_size_is_refused(home, capsys):
    video = str(media_file("single_face.mp4"))
    assert main(["build", video, "-w", "me", "--create", "-q"]) == 0
    rc = main(["build", video, "-w", "me", "--size", "32", "-q"])
    assert rc == 2 and "holds 64x64 crops" in capsys.readouterr().err


def test_progress_line():
    line = progress_line(BuildProgress(done=120, total=320, kept=100, elapsed_s=2.0, eta_s=4.2))
    assert line == " 38% 120/320 frames  100 faces  ETA 4 s"
    assert "ETA" not in progress_line(BuildProgress(0, 320, 0, 0.0, None))


def test_the_installed_command_shows_progress_on_stderr(home):
    proc = subprocess.run(
        [sys.executable, "-m", "facelab", "build", str(media_file("bbaf2n.mpg")), "-w", "grid",
         "--create", "--size", "32", "--align"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "100% 24/24 frames" in proc.stderr  # not a terminal: a line per 10 %
    assert "kept 24 of 24" in proc.stdout
    assert "Traceback" not in proc.stderr and "[h264" not in proc.stderr


def test_every_user_error_is_a_facelab_error_and_the_cli_prints_it_as_one_line(home, capsys, monkeypatch):
    """Each module's errors for the user share one base, so `facelab.cli.main` catches them
    once: an error of a module the CLI does not know by name still prints one line, exit 2."""
    import importlib
    import pkgutil

    import facelab
    from facelab.errors import FacelabError

    not_for_the_user = {"BuildCancelled", "_PlanFailed"}  # a cancel, a fallback inside video.py
    found = []
    for info in pkgutil.walk_packages(facelab.__path__, "facelab."):
        if info.name.startswith("facelab.ui") or info.name == "facelab.__main__":
            continue  # Streamlit's side; the CLI's entry point
        module = importlib.import_module(info.name)
        for name, obj in vars(module).items():
            if (isinstance(obj, type) and issubclass(obj, Exception) and obj.__module__ == info.name
                    and name not in not_for_the_user):
                found.append(obj)
                assert issubclass(obj, FacelabError), f"{info.name}.{name} is not a FacelabError"
    assert len(found) >= 20

    import facelab.cli.build as cli_build

    class NewKindOfError(FacelabError):
        """An error of a module written after the CLI."""

    def failing(*args, **kwargs):
        raise NewKindOfError("the new module says what went wrong")

    monkeypatch.setattr(cli_build, "build", failing)
    assert main(["build", "-w", "me", "--create", str(media_file("single_face.mp4"))]) == 2
    assert capsys.readouterr().err == "facelab: error: the new module says what went wrong\n"
