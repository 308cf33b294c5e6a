"""The opt-in video preview (facelab.data.preview): never made unless asked, small, on the crops' time
base, and erased with its button, with any crop of its video, and with the workspace."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from facelab.cli import main as cli
from facelab.data import dataset, preview
from facelab.store import workspace as ws

from media import media_file


@pytest.fixture
def built(home: Path):
    """The single-face clip built at 8 fps into workspace 'p', through the CLI; no preview asked."""
    assert cli(["build", str(media_file("single_face.mp4")), "-w", "p", "--create", "-q"]) == 0
    return ws.open_workspace("p")


def test_no_preview_unless_asked_then_one_that_plays_each_crops_moment(built, capsys) -> None:
    w = built
    assert preview.previews(w) == {} and not (w.path / preview.PREVIEW_DIR).exists()
    faces = dataset.faces_table(w)
    assert faces and preview.moment(w, faces[0]["id"]) is None

    video = media_file("WolfgangLanger_Pexels.mp4")
    assert cli(["build", str(video), "-w", "p", "--fps", "2", "--preview", "-q"]) == 0
    assert "kept a preview" in capsys.readouterr().out
    (source, path), = preview.previews(w).items()
    with av.open(str(path)) as got, av.open(str(video)) as src:
        s = got.streams.video[0]
        assert s.codec_context.name == "h264" and s.codec_context.height == preview.MAX_HEIGHT
        assert float(s.average_rate) <= preview.MAX_FPS
        length = float(got.duration) / 1e6
        assert abs(length - float(src.duration) / 1e6) < 0.5  # the same time base as the crops
    assert path.stat().st_size < 1_000_000
    later = [f for f in dataset.faces_table(w) if f["source_id"] == source][-1]
    assert preview.moment(w, later["id"]) == (path, round(later["t_seconds"], 2))
    assert preview.moment(w, faces[0]["id"]) is None  # the first video has no preview


def test_a_preview_is_erased_with_any_crop_of_its_video_and_by_its_button(home: Path) -> None:
    w = ws.create("e")
    for name in ("single_face.mp4", "face_noface.mov"):
        report = dataset.build(w, media_file(name), dataset.BuildSettings(fps=4))
        preview.make_preview(w, report.source_id, media_file(name))
    kept = preview.previews(w)
    assert len(kept) == 2
    first_source = min(kept)
    one = next(f["id"] for f in dataset.faces_table(w) if f["source_id"] == first_source)
    dataset.delete_faces(w, [one])  # the preview shows that moment too
    assert list(preview.previews(w)) == [max(kept)] and not kept[first_source].exists()
    assert cli(["crops", "delete-previews", "-w", "e"]) == 0
    assert preview.previews(w) == {}
    assert preview.delete_previews(w) == 0


def test_a_preview_goes_with_its_workspace_and_a_bad_video_keeps_nothing(home: Path, tmp_path: Path) -> None:
    w = ws.create("d")
    report = dataset.build(w, media_file("single_face.mp4"), dataset.BuildSettings(fps=4))
    path = preview.make_preview(w, report.source_id, media_file("single_face.mp4"))
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video" * 100)
    with pytest.raises(preview.PreviewError, match="broken.mp4"):
        preview.make_preview(w, 99, broken)
    assert list(preview.previews(w)) == [report.source_id]
    assert not list(path.parent.glob(".*.tmp"))  # no half-written preview left behind
    ws.delete("d")
    assert not path.exists() and not w.path.exists()


def test_archives_do_not_carry_previews(home: Path) -> None:
    import io
    import zipfile

    from facelab.store import archive

    w = ws.create("a")
    report = dataset.build(w, media_file("single_face.mp4"), dataset.BuildSettings(fps=4))
    preview.make_preview(w, report.source_id, media_file("single_face.mp4"))
    names = zipfile.ZipFile(io.BytesIO(archive.export_bytes(w))).namelist()
    assert names and not any(preview.PREVIEW_DIR in n or n.endswith(".mp4") for n in names)
    assert np.asarray(w.faces()).shape[0] > 0
