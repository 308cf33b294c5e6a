"""facelab.data.dataset: building, appending, pruning; every bad input leaves the workspace as it was."""

from __future__ import annotations

import errno
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from facelab.data.dataset import (
    SHARP_DIR,
    SHARP_SIZE,
    BuildCancelled,
    BuildError,
    BuildSettings,
    CropSource,
    DuplicateVideo,
    append_crops,
    build,
    delete_faces,
    faces_table,
    sharp_faces,
    skip_counts,
    split_for,
)
from facelab.data.video import VideoError, sample_frames
from facelab.store import workspace as wsmod
from facelab.store.workspace import WorkspaceError

from media import media_file

CONTACT_SHEET = Path("/tmp/contact_sheet.png")


def snapshot(ws) -> dict:
    """Everything a build may touch: the array's bytes, every table's rows, the folder's files."""
    out = {"files": sorted(p.name for p in ws.path.iterdir() if not p.name.startswith("facelab.sqlite-"))}
    out["faces.npy"] = ws.faces_path.read_bytes() if ws.faces_path.exists() else None
    with ws.connect() as c:
        for table in ("meta", "sources", "faces", "skipped"):
            out[table] = [tuple(r) for r in c.execute(f"SELECT * FROM {table} ORDER BY rowid")]
    return out


def contact_sheet(crops: np.ndarray, path: Path, cols: int = 16) -> None:
    rows = -(-len(crops) // cols)
    s = crops.shape[1]
    sheet = np.zeros((rows * s, cols * s, 3), np.uint8)
    for i, c in enumerate(crops):
        sheet[(i // cols) * s:(i // cols + 1) * s, (i % cols) * s:(i % cols + 1) * s] = c
    cv2.imwrite(str(path), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))


@pytest.fixture(scope="module")
def pexels(tmp_path_factory):
    """One build of the Pexels clip, shared by the read-only tests below."""
    home = tmp_path_factory.mktemp("home")
    ws = wsmod.create("pexels", home)
    calls = []
    report = build(ws, media_file("WolfgangLanger_Pexels.mp4"), progress=calls.append)
    return ws, report, calls


@pytest.fixture
def ws(home):
    return wsmod.create("me", home)


def test_split_is_by_two_second_blocks():
    assert [split_for(t) for t in (0, 1.9, 17.9, 18.0, 19.99, 20.0, 38.5)] == \
        ["train", "train", "train", "val", "val", "train", "val"]


def test_bad_settings_are_refused_with_their_names(ws):
    with pytest.raises(BuildError, match="size must be one of 32, 64, 128"):
        build(ws, media_file("single_face.mp4"), BuildSettings(size=48))
    with pytest.raises(BuildError, match="fps"):
        BuildSettings(fps=0).check()


def test_pexels_clip_gives_tight_crops_and_rows(pexels):
    ws, report, _ = pexels
    assert report.sampled == 158 and report.kept >= 150 and report.source_id == 1
    assert report.kept + sum(report.counts()[r] for r in ("no_face", "ambiguous", "blurred", "duplicate")) == 158
    crops = ws.faces(mmap=False)
    assert crops.shape == (report.kept, 64, 64, 3) and crops.dtype == np.uint8
    assert ws.get_meta("crop_size") == 64
    table = faces_table(ws)
    assert [r["id"] for r in table] == list(range(report.kept))  # row i <-> faces.id i
    assert {r["split"] for r in table} == {"train", "val"}
    assert all(r["source"] == "WolfgangLanger_Pexels.mp4" and len(r["box"]) == 4 for r in table)
    assert all(r["sharpness"] > 0 for r in table)
    times = [r["t_seconds"] for r in table]
    assert times == sorted(times) and times[-1] == pytest.approx(19.5, abs=0.5)
    with ws.connect() as c:
        src = c.execute("SELECT * FROM sources").fetchone()
        n_skipped = c.execute("SELECT COUNT(*) FROM skipped").fetchone()[0]
    assert json.loads(src["counts"])["kept"] == report.kept
    assert json.loads(src["settings"])["size"] == 64 and len(src["sha256"]) == 64
    assert n_skipped == report.sampled - report.kept  # every skipped frame recorded
    # each crop is a face: skin in the middle, not a flat background
    assert crops[:, 24:40, 24:40].std(axis=(1, 2, 3)).min() > 3
    contact_sheet(crops, CONTACT_SHEET)


def test_progress_is_rate_limited_and_ends_at_the_total(pexels):
    _, report, calls = pexels
    assert calls[-1].done == calls[-1].total == 158 and calls[-1].kept == report.kept
    dones = [c.done for c in calls]
    assert dones == sorted(dones)
    assert any(c.eta_s is not None for c in calls)
    # at most ~10 a second (plus the first and the last call)
    assert len(calls) <= 10 * calls[-1].elapsed_s + 3


def test_two_builds_give_identical_crops_whatever_the_threads(home):
    video = media_file("WolfgangLanger_Pexels.mp4")
    a = wsmod.create("a", home)
    b = wsmod.create("b", home)
    build(a, video, BuildSettings(workers=2))
    build(b, video, BuildSettings(workers=1))
    assert np.array_equal(a.faces(mmap=False), b.faces(mmap=False))
    strip = lambda rows: [{k: v for k, v in r.items() if k != "source_id"} for r in rows]  # noqa: E731
    assert strip(faces_table(a)) == strip(faces_table(b))


def test_the_planned_decoder_builds_what_decoding_every_frame_builds(pexels, home, monkeypatch):
    """Same crops (and sharp crops), frames, times, boxes and skip counts as the build that
    decodes every frame of the real clip."""
    import functools

    import facelab.data.dataset as dataset

    fast, fast_report, _ = pexels
    monkeypatch.setattr(dataset, "sample_frames", functools.partial(sample_frames, planned=False))
    slow = wsmod.create("slow", home)
    slow_report = build(slow, media_file("WolfgangLanger_Pexels.mp4"))
    assert slow_report.counts() == fast_report.counts()
    assert np.array_equal(slow.faces(mmap=False), fast.faces(mmap=False))
    ids = [r["id"] for r in faces_table(fast)]
    assert np.array_equal(dataset.sharp_faces(slow, ids), dataset.sharp_faces(fast, ids))
    strip = lambda rows: [{k: v for k, v in r.items() if k != "source_id"} for r in rows]  # noqa: E731
    assert strip(faces_table(slow)) == strip(faces_table(fast))
    assert skip_counts(slow) == skip_counts(fast)


def test_second_video_appends_and_ids_continue(ws):
    first = build(ws, media_file("single_face.mp4"))
    before = ws.faces(mmap=False)
    second = build(ws, media_file("bbaf2n.mpg"), name="speaker.mpg")
    assert first.kept > 10 and second.kept > 10
    crops = ws.faces(mmap=False)
    assert len(crops) == first.kept + second.kept
    assert np.array_equal(crops[: first.kept], before)  # the old crops are untouched
    table = faces_table(ws)
    assert [r["id"] for r in table] == list(range(len(crops)))
    assert {r["source"] for r in table[first.kept:]} == {"speaker.mpg"}
    assert second.source_id == first.source_id + 1


def test_a_workspace_keeps_one_crop_size(ws):
    build(ws, media_file("single_face.mp4"))
    before = snapshot(ws)
    with pytest.raises(BuildError, match="holds 64x64 crops"):
        build(ws, media_file("single_face.mp4"), BuildSettings(size=32))
    assert snapshot(ws) == before


@pytest.mark.parametrize("size", [32, 128])
def test_other_crop_sizes(home, size):
    w = wsmod.create(f"s{size}", home)
    report = build(w, media_file("single_face.mp4"), BuildSettings(size=size, align=True))
    assert w.faces().shape == (report.kept, size, size, 3) and report.kept > 10


def test_face_that_leaves_gives_crops_only_where_it_is(ws):
    report = build(ws, media_file("face_noface.mov"))
    assert report.kept > 10 and report.no_face > 10
    with ws.connect() as c:
        skipped = [r["t_seconds"] for r in c.execute("SELECT t_seconds FROM skipped WHERE reason='no_face'")]
    kept = [r["t_seconds"] for r in faces_table(ws)]
    assert len(skipped) == report.no_face
    assert not set(kept) & set(skipped)
    # the face is there, then gone: kept frames come before the skipped ones
    assert max(kept) < min(skipped)


def test_no_face_video_adds_nothing(ws):
    report = build(ws, media_file("no_face.mp4"))
    assert report.kept == 0 and report.source_id is None and report.no_face == report.sampled > 0
    assert report.message().startswith(f"no face found in {report.sampled} sampled frames")
    assert ws.summary()["sources"] == 0 and not ws.faces_path.exists()


def two_faces_video(path: Path) -> Path:
    """Two copies of a real face side by side: two faces of the same size in every frame."""
    out = None
    for _, _, f in sample_frames(media_file("WolfgangLanger_Pexels.mp4"), 4):
        f = np.hstack([f, f])
        if out is None:
            out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 4, (f.shape[1], f.shape[0]))
        out.write(f)
    out.release()
    return path


def test_two_similar_faces_are_ambiguous(ws, tmp_path):
    report = build(ws, two_faces_video(tmp_path / "two.avi"))
    assert report.ambiguous >= 0.8 * report.sampled
    assert report.kept + report.ambiguous + report.no_face == report.sampled


def test_still_video_frames_are_duplicates(ws, tmp_path):
    frame = next(sample_frames(media_file("single_face.mp4"), 1))[2]
    path = tmp_path / "still.avi"
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 8, (frame.shape[1], frame.shape[0]))
    for _ in range(16):
        out.write(frame)
    out.release()
    report = build(ws, path)
    # a full search and tracking may box the face a pixel apart (a new crop); the rest repeat
    assert report.duplicate >= 12 and report.kept + report.duplicate == 16
    assert build(wsmod.create("other", ws.path.parent.parent), path, BuildSettings(duplicate_threshold=0)).kept == 16


def test_blurred_frames_are_skipped(ws):
    report = build(ws, media_file("single_face.mp4"), BuildSettings(blur_threshold=1e9))
    assert report.kept == 0 and report.blurred == report.sampled


# --- bad input and interruptions: the workspace stays exactly as it was -----------------------
@pytest.fixture
def filled(ws):
    build(ws, media_file("single_face.mp4"))
    return ws


def bad_videos(tmp_path: Path) -> dict[str, Path]:
    data = media_file("WolfgangLanger_Pexels.mp4").read_bytes()
    files = {
        "empty.mp4": b"",
        "notes.mp4": b"not a video at all\n" * 100,
        "cut.mp4": data[: int(len(data) * 0.3)],
    }
    for name, content in files.items():
        (tmp_path / name).write_bytes(content)
    out = {name: tmp_path / name for name in files}
    out["photo.mp4"] = Path(shutil.copy(media_file("multi_face.jpg"), tmp_path / "photo.mp4"))
    out["multi_face.jpg"] = media_file("multi_face.jpg")
    return out


def test_bad_videos_are_refused_and_change_nothing(filled, tmp_path):
    before = snapshot(filled)
    expected = {
        "empty.mp4": "is empty", "notes.mp4": "not a readable video", "cut.mp4": "is truncated",
        "photo.mp4": "an image, not a video", "multi_face.jpg": "an image, not a video",
    }
    for name, path in bad_videos(tmp_path).items():
        with pytest.raises(VideoError, match=expected[name]):
            build(filled, path)
        assert snapshot(filled) == before, name
        # An upload is built from a temp copy: messages name the upload, not the copy.
        with pytest.raises(VideoError, match=rf"^holiday\.mp4 .*{expected[name]}"):
            build(filled, path, name="holiday.mp4")


def test_cancelled_build_keeps_nothing(filled):
    before = snapshot(filled)
    polls = []

    def cancel() -> bool:
        polls.append(1)
        return len(polls) >= 2  # half-way through the clip's chunks

    with pytest.raises(BuildCancelled):
        build(filled, media_file("WolfgangLanger_Pexels.mp4"), cancel=cancel)
    assert snapshot(filled) == before


def test_progress_callback_that_raises_keeps_nothing(filled):
    """Streamlit stops a script for a rerun by raising from inside whatever it is running."""

    class Rerun(BaseException):
        pass

    before = snapshot(filled)
    seen = []

    def progress(p):
        seen.append(p)
        if p.done > 0:
            raise Rerun()

    with pytest.raises(Rerun):
        build(filled, media_file("WolfgangLanger_Pexels.mp4"), progress=progress)
    assert snapshot(filled) == before


@pytest.mark.parametrize("first", [True, False])
def test_full_disk_keeps_the_workspace_as_it_was(home, monkeypatch, first):
    import facelab.store.storage as storage

    w = wsmod.create("disk", home)
    if not first:
        build(w, media_file("single_face.mp4"))
    before = snapshot(w)

    def no_space(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(storage.os, "fsync", no_space)
    with pytest.raises(BuildError, match="No space left on device.*nothing was added"):
        build(w, media_file("bbaf2n.mpg"))
    assert snapshot(w) == before  # and no temp file is left behind (snapshot lists the files)


def test_crash_between_array_and_rows_is_invisible(filled, monkeypatch):
    """The array is renamed into place, then the process 'dies' before the rows commit."""
    import facelab.data.dataset as dataset

    real = dataset.save_npy_atomic
    n = filled.face_count()
    old = filled.faces(mmap=False)

    def save_then_die(path, array):
        real(path, array)
        raise RuntimeError("killed")

    monkeypatch.setattr(dataset, "save_npy_atomic", save_then_die)
    with pytest.raises(RuntimeError):
        build(filled, media_file("bbaf2n.mpg"))
    assert filled.face_count() == n and np.array_equal(filled.faces(mmap=False), old)
    monkeypatch.setattr(dataset, "save_npy_atomic", real)
    report = build(filled, media_file("bbaf2n.mpg"))  # and the next build is fine
    assert filled.face_count() == n + report.kept
    assert np.array_equal(filled.faces(mmap=False)[:n], old)


# --- reading and pruning ------------------------------------------------------------------------
def test_delete_faces_removes_pixels_and_rows(filled):
    n = filled.face_count()
    assert delete_faces(filled, [1, 3, 3]) == 2
    assert delete_faces(filled, [1]) == 0  # already gone
    crops = filled.faces(mmap=False)
    assert len(crops) == n and not crops[1].any() and not crops[3].any() and crops[2].any()
    ids = [r["id"] for r in faces_table(filled)]
    assert 1 not in ids and 3 not in ids and len(ids) == n - 2
    counts = skip_counts(filled)
    assert counts["kept"] == n - 2 and counts["deleted"] == 2
    assert set(counts) == {"kept", "deleted", "no_face", "ambiguous", "blurred", "duplicate"}
    with pytest.raises(WorkspaceError, match="no crop with id 999"):
        delete_faces(filled, [999])
    # an append after a delete keeps ids aligned with rows
    report = build(filled, media_file("bbaf2n.mpg"))
    assert [r["id"] for r in faces_table(filled)][-report.kept:] == list(range(n, n + report.kept))


def test_skip_counts_sum_over_sources(ws):
    a = build(ws, media_file("single_face.mp4"))
    b = build(ws, media_file("face_noface.mov"))
    counts = skip_counts(ws)
    assert counts["kept"] == a.kept + b.kept
    assert counts["no_face"] == a.no_face + b.no_face


# --- crops cut elsewhere ----------------------------------------------------------------------
def test_append_crops_writes_array_rows_and_sharp_crops_that_delete_erases(ws):
    rng = np.random.default_rng(0)
    crops = rng.integers(0, 256, (4, 64, 64, 3), dtype=np.uint8)
    sharp = rng.integers(0, 256, (4, SHARP_SIZE, SHARP_SIZE, 3), dtype=np.uint8)
    first = append_crops(ws, crops, [0.0, 0.5, 1.0, 1.5], source="webcam", sharp=sharp, frame_index=[0, 4, 8, 12],
                         skipped=[(16, 2.0, "no_face")])
    assert first.source_id == 1 and list(first.ids) == [0, 1, 2, 3]
    stale = rng.integers(0, 256, (2, SHARP_SIZE, SHARP_SIZE, 3), dtype=np.uint8)
    np.save(ws.path / SHARP_DIR / "4.npy", stale)  # left by a commit that failed after its rename
    more = append_crops(ws, crops[:2], [18.5, 19.0], source=CropSource("clip.mp4", video_fps=8.0))
    assert more.source_id == 2 and list(more.ids) == [4, 5]

    np.testing.assert_array_equal(ws.faces(mmap=False), np.concatenate([crops, crops[:2]]))
    table = faces_table(ws)
    assert [(r["id"], r["source"], r["frame_index"], r["t_seconds"], r["box"], r["split"]) for r in table] == [
        (0, "webcam", 0, 0.0, (0, 0, 64, 64), "train"), (1, "webcam", 4, 0.5, (0, 0, 64, 64), "train"),
        (2, "webcam", 8, 1.0, (0, 0, 64, 64), "train"), (3, "webcam", 12, 1.5, (0, 0, 64, 64), "train"),
        (4, "clip.mp4", 0, 18.5, (0, 0, 64, 64), "val"), (5, "clip.mp4", 1, 19.0, (0, 0, 64, 64), "val")]
    assert all(r["sharpness"] > 0 for r in table)  # measured, as the builder does
    assert ws.get_meta("crop_size") == 64 and skip_counts(ws)["no_face"] == 1
    # the second source has no sharp crops: its crops upscaled, never the stale file's
    assert sorted(p.name for p in (ws.path / SHARP_DIR).iterdir()) == ["0.npy"]
    shown = sharp_faces(ws, range(6))
    np.testing.assert_array_equal(shown[:4], sharp)
    upscaled = cv2.resize(crops[0], (SHARP_SIZE, SHARP_SIZE), interpolation=cv2.INTER_CUBIC)
    np.testing.assert_array_equal(shown[4], upscaled)

    assert delete_faces(ws, [1]) == 1  # the crop and its sharp crop, zeroed where they lie
    on_disk = np.load(ws.path / SHARP_DIR / "0.npy")
    assert not ws.faces(mmap=False)[1].any() and not on_disk[1].any() and not sharp_faces(ws, [1]).any()
    np.testing.assert_array_equal(on_disk[[0, 2, 3]], sharp[[0, 2, 3]])
    assert not [p for p in ws.path.iterdir() if p.name.startswith(".")], "a temporary file was left"


def test_append_crops_refuses_what_does_not_fit_and_changes_nothing(ws):
    crops = np.full((2, 64, 64, 3), 99, np.uint8)
    before = snapshot(ws)
    with pytest.raises(ValueError, match="one value per crop"):
        append_crops(ws, crops, [0.0], source="x")
    with pytest.raises(ValueError, match="sharp crops"):
        append_crops(ws, crops, [0.0, 1.0], source="x", sharp=crops)
    with pytest.raises(ValueError, match="2 sharp crops for 1 crops"):
        append_crops(ws, crops[:1], [0.0], source="x", sharp=np.zeros((2, SHARP_SIZE, SHARP_SIZE, 3), np.uint8))
    with pytest.raises(ValueError, match="N >= 1"):
        append_crops(ws, crops[:0], [], source="x")
    assert snapshot(ws) == before
    append_crops(ws, crops, [0.0, 1.0], source=CropSource("x", sha256="ab12"))
    before = snapshot(ws)
    with pytest.raises(BuildError, match="holds 64x64 crops"):
        append_crops(ws, np.zeros((1, 32, 32, 3), np.uint8), [0.0], source="y")
    with pytest.raises(DuplicateVideo, match="x is already in this workspace"):
        append_crops(ws, crops, [0.0, 1.0], source=CropSource("x", sha256="ab12"))
    assert snapshot(ws) == before
    assert list(append_crops(ws, crops, [0.0, 1.0], source=CropSource("x", sha256="ab12"), again=True).ids) == [2, 3]
