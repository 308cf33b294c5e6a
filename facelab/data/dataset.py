"""Build a workspace's dataset of face crops from a video, and read or prune it.

A build samples frames (`facelab.data.video`), finds one face per frame and crops it
(`facelab.data.faces`; `add_frames`, which a webcam recording's frames go through too), and appends
the crops with `append_crops`, the one write path of crops into a workspace: `faces.npy`
(row i <-> faces.id i) and their sharper crops in crops128/, one `faces` row per crop, one
`sources` row per video and one `skipped` row per sampled frame that gave no crop, with its
reason ('no_face', 'ambiguous', 'blurred', 'duplicate').

All or nothing: a build is staged in memory and committed at the very end, in one transaction
that holds the database's write lock (so two builds never interleave): the rows are inserted,
the new faces.npy (old rows + new rows) is written to a temp file and renamed over the old one,
and only then does the transaction commit. A failed array write (full disk: OSError) rolls the
transaction back and leaves the old file in place; a failure after the rename leaves rows past
the database's count in faces.npy, which `Workspace.faces()` ignores and the next build
overwrites. A build that is cancelled, or whose progress callback raises
(e.g. Streamlit stopping a script for a rerun), stops before the commit and keeps nothing.

Speed: the calling thread decodes; chunks of consecutive frames (one full-frame detection, then
tracking) go to a pool of threads (OpenCV releases the GIL). A chunk depends only on its own
frames, and results are taken in chunk order, so the output never depends on thread timing.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import numpy as np

from facelab.data.faces import (
    DEFAULT_MARGIN,
    DEFAULT_SHIFT,
    Box,
    BoxSmoother,
    FaceDetector,
    crop_sharpness,
    difference,
    face_square,
    same_place,
    square_crop,
    to_gray,
)
from facelab.data.video import VideoInfo, probe, sample_frames, sampled_count
from facelab.store.db import now_iso
from facelab.store.storage import load_npy, save_npy_atomic
from facelab.store.workspace import DEFAULT_CROP_SIZE, HELD_OUT_SHARE, Workspace, WorkspaceError

CROP_SIZES = (32, 64, 128)
REASONS = ("no_face", "ambiguous", "blurred", "duplicate")
PROGRESS_EVERY_S = 0.1  # at most ~10 progress calls a second
# Sampled frames waiting for detection (chunks queued for the threads, plus the one being
# gathered): with frames shrunk to `BuildSettings.keep_short_side`, memory stays bounded
# whatever the video's resolution or the sampling rate.
FRAMES_IN_FLIGHT = 32


class BuildError(WorkspaceError):
    """A build refused or failed; the message is for the user. The workspace is unchanged."""


class BuildCancelled(Exception):
    """The build was cancelled by its `cancel` callback; nothing was stored."""


class DuplicateVideo(BuildError):
    """The very same file (same SHA-256) was built into this workspace before; building it
    again would add every crop a second time. `build(..., again=True)` adds it anyway."""


@dataclass
class BuildSettings:
    """How a video becomes crops. Stored as JSON with each source."""

    fps: float = 8.0  # frames sampled per second of video
    size: int = DEFAULT_CROP_SIZE  # crop side in pixels: 32, 64 or 128 (one size per workspace)
    margin: float = DEFAULT_MARGIN  # grows (or, negative, trims) the face box's side, per side
    shift: float = DEFAULT_SHIFT  # moves the crop's centre down, as a share of the box height
    align: bool = False  # rotate so the eyes are level (Haar eye search)
    ambiguous_ratio: float = 0.5  # 2nd face area / largest >= this -> frame skipped as 'ambiguous'
    blur_threshold: float = 40.0  # variance of the Laplacian of the 64x64 crop below this -> 'blurred'
    duplicate_threshold: float = 0.6  # mean abs grey difference to the last kept crop below this -> 'duplicate'
    # detection and tracking
    detect_short_side: int = 120  # full-frame search on a grey frame about this high (short side)
    min_face: float = 0.2  # smallest face searched, as a share of the frame's short side
    redetect_s: float = 1.0  # a full-frame search at least this often (new or second faces)
    workers: int = 2  # detection threads (0 or 1: all in the calling thread)
    smooth: int = 3  # face box averaged over this many sampled frames either side (0: off)

    def check(self) -> None:
        """Raise `BuildError` for a value that makes no sense, naming it."""
        problems = []
        if not (0 < self.fps <= 120):
            problems.append(f"fps must be in (0, 120], not {self.fps}")
        if self.size not in CROP_SIZES:
            problems.append(f"size must be one of {', '.join(map(str, CROP_SIZES))}, not {self.size}")
        if not (-0.3 <= self.margin <= 1.0):
            problems.append(f"margin must be between -0.3 and 1.0, not {self.margin}")
        if not (-0.3 <= self.shift <= 0.3):
            problems.append(f"shift must be between -0.3 and 0.3, not {self.shift}")
        if not (0 < self.ambiguous_ratio <= 1):
            problems.append(f"ambiguous_ratio must be in (0, 1], not {self.ambiguous_ratio}")
        if self.blur_threshold < 0 or self.duplicate_threshold < 0:
            problems.append("blur and duplicate thresholds must be >= 0")
        if not (0 < self.min_face < 1) or self.detect_short_side < 48 or self.redetect_s <= 0:
            problems.append("detection settings out of range")
        if not (0 <= self.smooth <= 10):
            problems.append(f"smooth must be between 0 and 10 frames, not {self.smooth}")
        if problems:
            raise BuildError("bad build settings: " + "; ".join(problems))

    def detector(self) -> FaceDetector:
        return FaceDetector(short_side=self.detect_short_side, min_face=self.min_face)

    def keep_short_side(self) -> int:
        """Frames are shrunk to this short side as they are decoded: the smallest face searched
        (`min_face` of it) is then still 2x the crop and as large as the sharp crop cut beside
        it (`SHARP_SIZE`), and detection's grey frame (`detect_short_side`) is still a true
        downscale."""
        sharp = math.ceil(SHARP_SIZE / self.min_face) if self.size < SHARP_SIZE else 0
        return max(2 * self.detect_short_side, math.ceil(2 * self.size / self.min_face), sharp)

    def frame_scale(self, width: int, height: int) -> float:
        """Frame pixels per pixel of the frame shrunk to `keep_short_side` (1.0: not shrunk),
        to store the boxes in the frame's own pixels."""
        keep = self.keep_short_side()
        return min(width, height) / keep if min(width, height) > keep else 1.0


@dataclass
class BuildProgress:
    done: int  # sampled frames processed
    total: int  # sampled frames expected (from the video's header; grows if it was short)
    kept: int
    elapsed_s: float
    eta_s: float | None  # None until there is a rate to go by

    @property
    def fraction(self) -> float:
        return self.done / self.total if self.total else 0.0


@dataclass
class BuildReport:
    source_id: int | None  # None when nothing was added (no usable face)
    sampled: int
    kept: int
    no_face: int
    ambiguous: int
    blurred: int
    duplicate: int
    seconds: float
    name: str = ""
    notes: list[str] = field(default_factory=list)  # what the user should know about the file


    def counts(self) -> dict[str, int]:
        """Frames per outcome, for tables and charts: sampled, kept and each skip reason."""
        return {"sampled": self.sampled, "kept": self.kept,
                **{r: getattr(self, r) for r in REASONS}}

    def message(self) -> str:
        """One line for the user saying what the build did."""
        why = ", ".join(f"{r} {getattr(self, r)}" for r in REASONS if getattr(self, r))
        notes = "".join(f". {n}" for n in self.notes)
        if self.kept == 0:
            what = "no face found" if self.no_face == self.sampled else "no usable face found"
            return (f"{what} in {self.sampled} sampled frames of {self.name}"
                    f"{f' ({why})' if why else ''}: nothing was added{notes}")
        return (f"{self.name}: kept {self.kept} of {self.sampled} sampled frames"
                f"{f' (skipped: {why})' if why else ''} in {self.seconds:.1f} s{notes}")


HELD_OUT_PERIOD_S = 20.0  # about one held-out block per this many seconds (2-s blocks)
MIN_HELD_OUT_S = 5.0  # a source shorter than this holds nothing out (see `split_for`)


def split_for(t_seconds: float, duration_s: float | None = None) -> str:
    """'val' for the last `HELD_OUT_SHARE` of every period of the source's time, else 'train'.

    Held out by time blocks, not by random frames: neighbouring frames are near copies, so a
    random split would let validation frames leak into training. The period is about
    `HELD_OUT_PERIOD_S`, stretched so a whole number of periods fills the source's
    `duration_s`: every source of `MIN_HELD_OUT_S` or more (an 8-s clip too) gets ~10 % held
    out, the last block ending with the clip. A shorter one is all 'train' (one block would
    be a handful of frames); training then holds out the workspace's last faces by time if
    no source has a 'val' block. Without a duration, 2-s blocks every 20 s.
    """
    period = HELD_OUT_PERIOD_S
    if duration_s is not None:
        if duration_s < MIN_HELD_OUT_S:
            return "train"
        period = duration_s / max(1, round(duration_s / HELD_OUT_PERIOD_S))
    return "val" if t_seconds % period >= (1 - HELD_OUT_SHARE) * period else "train"


@dataclass
class _Frame:
    """What a worker found in one sampled frame."""

    index: int
    t: float
    reason: str | None  # None: a crop to keep (unless the duplicate check says otherwise)
    box: Box | None = None
    crop: np.ndarray | None = None
    sharpness: float = 0.0
    frame: np.ndarray | None = None  # the BGR frame, until it is cropped (after smoothing)
    sharp: np.ndarray | None = None  # the SHARP_SIZE crop of the same box, until it is written
    roll: float = 0.0  # eye roll in degrees (settings.align), measured on the detected box


def _process_chunk(frames: list[tuple[int, float, np.ndarray]], settings: BuildSettings,
                   detector: FaceDetector) -> list[_Frame]:
    """Detect and crop a run of consecutive sampled frames.

    The first frame gets a full-frame search; the next ones track the face near its last box;
    whenever tracking loses it, a full search runs again. Depends on nothing outside the chunk,
    so chunks can run in any order on any thread and give the same result.
    """
    out: list[_Frame] = []
    last: Box | None = None  # the tracking anchor: where the window is centred and sized
    for index, t, frame in frames:
        gray = to_gray(frame)  # once per frame, for both searches
        box = detector.track(gray, last) if last is not None else None
        if box is not None and not same_place(box, last):
            last = box  # the face moved: follow it
        if box is None:
            boxes = detector.detect(gray)
            if not boxes:
                out.append(_Frame(index, t, "no_face"))
                last = None
                continue
            if len(boxes) > 1 and boxes[1].area >= settings.ambiguous_ratio * boxes[0].area:
                out.append(_Frame(index, t, "ambiguous", boxes[0]))
                last = None
                continue
            box = boxes[0]
            last = box
        roll = detector.eye_roll(frame, box) if settings.align else 0.0
        out.append(_Frame(index, t, None, box, frame=frame, roll=roll))
    return out


def _crop(fr: _Frame, box: Box, settings: BuildSettings) -> None:
    """Cut the crop of a frame at its (smoothed) box, and mark it 'blurred' if it is."""
    fr.box = box
    square = face_square(fr.frame, box, settings.margin, fr.roll, settings.shift)  # once for both sizes
    fr.crop = square_crop(square, settings.size)
    if settings.size < SHARP_SIZE:
        fr.sharp = square_crop(square, SHARP_SIZE)
    fr.frame = None
    fr.sharpness = crop_sharpness(fr.crop)
    fr.reason = "blurred" if fr.sharpness < settings.blur_threshold else None


def _chunks(frames: Iterable[tuple[int, float, np.ndarray]], n: int) -> Iterable[list]:
    chunk: list = []
    for f in frames:
        chunk.append(f)
        if len(chunk) == n:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _sha256(path: Path, out: dict) -> None:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    out["sha256"] = h.hexdigest()


def build(
    workspace: Workspace,
    video: Path,
    settings: BuildSettings = BuildSettings(),
    *,
    name: str | None = None,
    progress: Callable[[BuildProgress], None] | None = None,
    cancel: Callable[[], bool] | None = None,
    again: bool = False,
) -> BuildReport:
    """Add the faces of `video` to `workspace`; returns what was kept and skipped.

    A file already built into the workspace (same SHA-256) raises `DuplicateVideo`, saying
    when and under what name, as soon as the file is hashed, unless `again` is True.

    `name` is the source's display name (default: the file's name; an upload saved to a temp
    file passes its original name). `progress` is called at most ~10 times a second and once
    at the end; `cancel` is polled between chunks of frames (one chunk per `redetect_s` of
    video) and, when it returns True, the build stops with `BuildCancelled`.

    Raises `VideoError` for a file that is not a usable video (also when it turns out truncated
    half-way) and `BuildError` for bad settings, a crop size other than the workspace's or a
    failed write (full disk). In every one of these cases, and when `progress` raises,
    the workspace is left exactly as it was (see the module docstring for how).

    A video with no usable face returns a report with kept == 0 and adds nothing (no source).
    """
    settings.check()
    started = time.monotonic()
    info = probe(video, name)
    name = name or info.path.name
    _check_crop_size(workspace, settings.size)

    digest: dict = {}
    hasher = threading.Thread(target=_sha256, args=(info.path, digest), daemon=True)
    hasher.start()
    checked = False

    def check_known() -> None:  # as soon as the hash is ready, to refuse before the work
        nonlocal checked
        if not again and not checked and "sha256" in digest:
            checked = True
            _refuse_known(workspace, digest["sha256"], name)

    def sha256() -> str | None:
        hasher.join()
        check_known()
        return digest.get("sha256")

    notes: list[str] = []
    frames = sample_frames(info.path, settings.fps, name, max_short_side=settings.keep_short_side(), notes=notes)
    try:
        return add_frames(workspace, frames, settings, CropSource.of_video(info, name), sha256=sha256,
                          total=max(1, sampled_count(info, settings.fps)),
                          scale=settings.frame_scale(info.width, info.height), notes=notes,
                          progress=progress, cancel=cancel, poll=check_known, again=again, started=started)
    finally:
        frames.close()


def add_frames(
    workspace: Workspace,
    frames: Iterable[tuple[int, float, np.ndarray]],
    settings: BuildSettings,
    source: CropSource,
    *,
    sha256: Callable[[], str | None] | None = None,
    total: int,
    scale: float = 1.0,
    notes: list[str] | None = None,
    progress: Callable[[BuildProgress], None] | None = None,
    cancel: Callable[[], bool] | None = None,
    poll: Callable[[], None] | None = None,
    again: bool = False,
    started: float | None = None,
) -> BuildReport:
    """Find, crop and check the face of each (frame_index, t_seconds, BGR frame), then append
    the kept crops with `append_crops`: what a video build does with its decoded frames and a
    webcam recording with its own, so both cut the same crops and count the same skips.

    Frames come shrunk to `settings.keep_short_side()`; `scale` takes their boxes back to the
    source's pixels. `source` is the sources row (its settings and counts are filled in here);
    `sha256`, when given, is called once after the last frame for its SHA-256 (a build hashes
    the file beside the detection); `poll` is called between chunks (a build refuses a known
    file there). `total`: the frames expected, for `progress`. All or nothing, as `build` says.
    """
    settings.check()
    started = time.monotonic() if started is None else started
    name = source.name
    detector = settings.detector()
    threads = max(1, settings.workers)
    # Chunks short enough that `threads` of them (queued) plus the one gathered fit in flight.
    chunk_len = max(1, min(round(settings.fps * settings.redetect_s), FRAMES_IN_FLIGHT // (threads + 1)))
    results: list[_Frame] = []
    counts = dict.fromkeys(REASONS, 0)
    state = {"kept": 0, "last_crop": None, "last_report": 0.0}
    smoother = BoxSmoother(radius=settings.smooth)
    sharp = SharpCrops(workspace) if settings.size < SHARP_SIZE else None

    def take(chunk_result: list[_Frame], final: bool = False) -> None:
        ready: list[tuple[_Frame, Box | None]] = []
        for fr in chunk_result:  # boxes in time order through the smoother, then cropped
            ready += smoother.push(fr.t, fr.box if fr.reason is None else None, fr)
        if final:
            ready += smoother.flush()
        for fr, box in ready:
            if box is not None:
                _crop(fr, box, settings)
            if fr.reason is None:
                prev = state["last_crop"]
                if prev is not None and difference(prev, fr.crop) < settings.duplicate_threshold:
                    fr.reason = "duplicate"
                else:
                    state["last_crop"] = fr.crop
                    state["kept"] += 1
                    if sharp is not None:
                        sharp.add(fr.sharp)
            if fr.reason is not None:
                counts[fr.reason] += 1
                fr.crop = None  # free the pixels of skipped frames now
            fr.sharp = None
            results.append(fr)
        report_progress()

    def report_progress(final: bool = False) -> None:
        now = time.monotonic()
        if progress is None or (not final and now - state["last_report"] < PROGRESS_EVERY_S):
            return
        state["last_report"] = now
        done = len(results)
        tot = max(total, done) if not final else done
        elapsed = now - started
        eta = elapsed / done * (tot - done) if done else None
        progress(BuildProgress(done, tot, state["kept"], elapsed, eta))

    def stop_if_cancelled() -> None:
        if cancel is not None and cancel():
            raise BuildCancelled(f"build of {name} cancelled: nothing was added")

    pool = ThreadPoolExecutor(settings.workers, thread_name_prefix="facelab-build") \
        if settings.workers > 1 else None
    pending: deque[Future] = deque()
    max_pending = max(1, min(2 * threads, FRAMES_IN_FLIGHT // chunk_len - 1))
    try:
        report_progress()
        for chunk in _chunks(frames, chunk_len):
            stop_if_cancelled()
            if poll is not None:
                poll()
            if pool is None:
                take(_process_chunk(chunk, settings, detector))
                continue
            pending.append(pool.submit(_process_chunk, chunk, settings, detector))
            while len(pending) >= max_pending or (pending and pending[0].done()):
                take(pending.popleft().result())
        while pending:
            stop_if_cancelled()
            take(pending.popleft().result())
        take([], final=True)  # the smoother's last boxes
        if sha256 is not None:
            source = replace(source, sha256=sha256())
        kept = [fr for fr in results if fr.reason is None]
        report = BuildReport(None, len(results), len(kept), counts["no_face"], counts["ambiguous"],
                             counts["blurred"], counts["duplicate"], 0.0, name, [] if notes is None else notes)
        if kept:
            span = max(fr.t for fr in results) + 1 / settings.fps  # the sampled frames' time
            report.source_id = append_crops(
                workspace, np.stack([fr.crop for fr in kept]), [fr.t for fr in kept],
                source=replace(source, settings=asdict(settings), counts=report.counts()), sharp=sharp,
                frame_index=[fr.index for fr in kept],
                boxes=[tuple(round(v * scale) for v in fr.box.as_tuple()) for fr in kept],
                sharpness=[fr.sharpness for fr in kept], split=[split_for(fr.t, span) for fr in kept],
                skipped=[(fr.index, fr.t, fr.reason) for fr in results if fr.reason is not None],
                again=again).source_id
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        if sharp is not None:
            sharp.discard()
    report.seconds = time.monotonic() - started
    report_progress(final=True)
    return report


def _check_crop_size(workspace: Workspace, size: int, conn=None) -> None:
    if conn is None:
        with workspace.connect() as c:
            return _check_crop_size(workspace, size, c)
    row = conn.execute("SELECT value FROM meta WHERE key = 'crop_size'").fetchone()
    if row is not None and json.loads(row["value"]) != size:
        have = json.loads(row["value"])
        raise BuildError(
            f"workspace {workspace.name!r} holds {have}x{have} crops; a build with size {size} "
            f"cannot be added to it (use size {have}, or another workspace)"
        )


def known_source(workspace: Workspace, sha256: str, conn=None) -> dict | None:
    """The latest source of the workspace with this SHA-256 (name, created_at, crops: how many
    of its crops are not deleted), or None."""
    if conn is None:
        with workspace.connect() as c:
            return known_source(workspace, sha256, c)
    row = conn.execute(
        "SELECT s.name, s.created_at, (SELECT COUNT(*) FROM faces f WHERE f.source_id = s.id "
        "AND f.deleted = 0) AS crops FROM sources s WHERE s.sha256 = ? ORDER BY s.id DESC LIMIT 1",
        (sha256,)).fetchone()
    return dict(row) if row else None


def _refuse_known(workspace: Workspace, sha256: str, name: str, conn=None) -> None:
    known = known_source(workspace, sha256, conn)
    if known is not None:
        when = known["created_at"][:16].replace("T", " ") + " UTC"
        raise DuplicateVideo(
            f"{name} is already in this workspace (built on {when} as {known['name']}, "
            f"{known['crops']} crops): building it again would add every crop a second time"
        )


@dataclass
class CropSource:
    """The `sources` row of crops appended together: what they were cut from, and how."""

    name: str
    sha256: str | None = None  # of the file (or recorded frames): `build` refuses a known one
    video_fps: float | None = None
    frame_count: int | None = None
    width: int | None = None  # frame pixels, the boxes' unit
    height: int | None = None
    duration_s: float | None = None
    settings: dict = field(default_factory=dict)  # the `BuildSettings` the crops were cut with
    counts: dict = field(default_factory=dict)  # `BuildReport.counts()`: sampled, kept, skips

    @classmethod
    def of_video(cls, info: VideoInfo, name: str, sha256: str | None = None) -> CropSource:
        return cls(name, sha256, info.fps, info.frame_count, info.width, info.height, info.duration_s)


@dataclass(frozen=True)
class Appended:
    """What `append_crops` added: the new source and its crops' ids (consecutive)."""

    source_id: int
    ids: np.ndarray


def append_crops(
    workspace: Workspace,
    crops: np.ndarray,
    times: Sequence[float],
    *,
    source: CropSource | str,
    sharp: np.ndarray | SharpCrops | None = None,
    frame_index: Sequence[int] | None = None,
    boxes: Sequence[tuple[int, int, int, int]] | None = None,
    sharpness: Sequence[float] | None = None,
    split: Sequence[str] | None = None,
    skipped: Sequence[tuple[int, float, str]] = (),
    again: bool = False,
) -> Appended:
    """Add already-cut crops (N x S x S x 3 uint8 RGB, `times` in seconds into their source) as
    one new source. The one way crops enter a workspace (a video build, a webcam recording, the
    tests' and benchmarks' made-up data), so faces.npy, crops128/ and the rows stay in step.

    `sharp`: the SHARP_SIZE crops of the same boxes (an array, or a build's staged file);
    without them the crops are shown upscaled. Defaults: frame_index 0..N-1, boxes the whole
    crop, sharpness measured as the builder does, split by `split_for` on the source's
    duration. `skipped`: (frame_index, t_seconds, reason) of the frames that gave no crop.

    All or nothing, under the database's write lock (see the module docstring): the array is
    renamed into place, then the rows commit. Raises `BuildError` for a crop size other than
    the workspace's or a failed write, `DuplicateVideo` for a known `source.sha256` (unless
    `again`), and ValueError for crops or lists that do not match.
    """
    src = CropSource(source) if isinstance(source, str) else source
    crops = np.asarray(crops)
    n = len(crops)
    if not n or crops.ndim != 4 or crops.dtype != np.uint8 or crops.shape[2:] != (crops.shape[1], 3):
        raise ValueError(f"crops must be N x S x S x 3 uint8 with N >= 1, not {crops.dtype} {crops.shape}")
    s = crops.shape[1]
    times = [float(t) for t in times]
    frame_index = list(range(n)) if frame_index is None else [int(i) for i in frame_index]
    boxes = [(0, 0, s, s)] * n if boxes is None else [tuple(int(v) for v in b) for b in boxes]
    sharpness = [crop_sharpness(c) for c in crops] if sharpness is None else [float(v) for v in sharpness]
    split = [split_for(t, src.duration_s) for t in times] if split is None else list(split)
    if any(len(x) != n for x in (times, frame_index, boxes, sharpness, split)):
        raise ValueError(f"times, frame_index, boxes, sharpness and split need one value per crop ({n})")
    staged = SharpCrops.of(workspace, sharp) if isinstance(sharp, np.ndarray) else sharp
    try:
        if staged is not None and (s >= SHARP_SIZE or staged.count != n):
            raise ValueError(f"{staged.count} sharp crops for {n} crops of {s} px")
        sharp_tmp = staged.finish() if staged is not None else None
        with workspace.connect(write=True) as c:
            _check_crop_size(workspace, s, c)
            if src.sha256 and not again:  # under the lock: a build of the same file may just have ended
                _refuse_known(workspace, src.sha256, src.name, c)
            n0 = int(c.execute("SELECT COUNT(*) FROM faces").fetchone()[0])
            source_id = int(c.execute(
                "INSERT INTO sources(name, sha256, video_fps, frame_count, width, height, duration_s, "
                "settings, counts, created_at) VALUES(?,?,?,?,?,?,?,?,?,?)",
                (src.name, src.sha256, src.video_fps, src.frame_count, src.width, src.height, src.duration_s,
                 json.dumps(src.settings), json.dumps(src.counts), now_iso()),
            ).lastrowid)
            c.executemany(
                "INSERT INTO faces(id, source_id, frame_index, t_seconds, x, y, w, h, sharpness, split) "
                "VALUES(?,?,?,?,?,?,?,?,?,?)",
                [(n0 + k, source_id, frame_index[k], times[k], *boxes[k], sharpness[k], split[k])
                 for k in range(n)],
            )
            c.executemany("INSERT INTO skipped(source_id, frame_index, t_seconds, reason) VALUES(?,?,?,?)",
                          [(source_id, *row) for row in skipped])
            c.execute("INSERT INTO meta(key, value) VALUES('crop_size', ?) "
                      "ON CONFLICT(key) DO UPDATE SET value = excluded.value", (json.dumps(s),))
            array = np.empty((n0 + n, s, s, 3), np.uint8)
            if n0:
                array[:n0] = _old_faces(workspace, n0, s)
            array[n0:] = crops
            try:
                save_npy_atomic(workspace.faces_path, array)
                # rows n0.. of the sharp crops; a stale file of a failed commit is replaced, or
                # removed when these crops have none (it would be shown for them)
                if sharp_tmp is not None:
                    sharp_tmp.replace(_sharp_dir(workspace) / f"{n0}.npy")
                else:
                    (workspace.path / SHARP_DIR / f"{n0}.npy").unlink(missing_ok=True)
            except OSError as e:
                raise BuildError(
                    f"could not save the crops of {src.name} in workspace {workspace.name!r} "
                    f"({e.strerror or e}); nothing was added"
                ) from e
    finally:
        if staged is not None and staged is not sharp:
            staged.discard()
    return Appended(source_id, np.arange(n0, n0 + n))


# --- sharper crops for display -------------------------------------------------------------
# Training uses the small crops; what a person looks at (the Shift page, `facelab shift`) is
# a SHARP_SIZE crop of the same box with the decoded change upsampled onto it. They live in
# crops128/<first id>.npy, one file per build (rows first id, first id + 1, ...), so a build
# never rewrites older ones and no step holds more than one build's sharp crops, and those on
# disk (a memmap). Workspaces made before, and sources whose file is missing, fall back to
# the small crops upscaled.
SHARP_SIZE = 128
SHARP_DIR = "crops128"


def _sharp_dir(workspace: Workspace) -> Path:
    folder = workspace.path / SHARP_DIR
    folder.mkdir(exist_ok=True)
    return folder


class SharpCrops:
    """The kept frames' SHARP_SIZE crops, appended to a raw temp file as the build goes (a long
    video's would not fit in memory), then made one .npy file by `finish`. The temp files lie
    beside the workspace's files, not in SHARP_DIR, so a build that fails leaves no new folder;
    `discard` removes whatever is left."""

    def __init__(self, workspace: Workspace):
        self.folder, self.count = workspace.path, 0
        self._raw: Path | None = None
        self._file = None
        self._npy: Path | None = None

    def add(self, crop: np.ndarray) -> None:
        if self._file is None:
            # ".tmp" in the name: `storage.remove_stale_temps` deletes it if a crash leaves it behind
            fd, raw = tempfile.mkstemp(prefix=".crops128.", suffix=".tmp.raw", dir=self.folder)
            self._raw, self._file = Path(raw), os.fdopen(fd, "wb")
        self._file.write(np.ascontiguousarray(crop, np.uint8).tobytes())
        self.count += 1

    @classmethod
    def of(cls, workspace: Workspace, crops: np.ndarray) -> SharpCrops:
        """Crops already in memory, staged the same way."""
        crops = np.asarray(crops)
        if crops.dtype != np.uint8 or crops.shape[1:] != (SHARP_SIZE, SHARP_SIZE, 3):
            raise ValueError(f"sharp crops must be N x {SHARP_SIZE} x {SHARP_SIZE} x 3 uint8, "
                             f"not {crops.dtype} {crops.shape}")
        staged = cls(workspace)
        for crop in crops:
            staged.add(crop)
        return staged

    def finish(self) -> Path:
        """The crops as a temp .npy file, for the commit to rename into place."""
        fd, npy = tempfile.mkstemp(prefix=".crops128.", suffix=".tmp", dir=self.folder)
        self._npy = Path(npy)
        with os.fdopen(fd, "wb") as out:
            np.lib.format.write_array_header_1_0(
                out, {"descr": "|u1", "fortran_order": False,
                      "shape": (self.count, SHARP_SIZE, SHARP_SIZE, 3)})
            if self._file is not None:
                self._file.close()
                with open(self._raw, "rb") as raw:
                    shutil.copyfileobj(raw, out, 1 << 22)
        return self._npy

    def discard(self) -> None:
        if self._file is not None:
            self._file.close()
        for p in (self._raw, self._npy):
            if p is not None:
                p.unlink(missing_ok=True)


def _sharp_files(workspace: Workspace) -> list[tuple[int, Path]]:
    """(first id, file) of every sharp-crop file, by first id."""
    folder = workspace.path / SHARP_DIR
    if not folder.is_dir():
        return []
    found = [(int(p.stem), p) for p in folder.glob("*.npy") if p.stem.isdigit()]
    return sorted(found)


def sharp_faces(workspace: Workspace, ids: Iterable[int]) -> np.ndarray:
    """uint8 N x SHARP_SIZE x SHARP_SIZE x 3 crops of faces `ids`, for display and the
    detail-preserving edit: the stored sharp crop, or (older workspaces, a missing file) the
    training crop upscaled. Crops of SHARP_SIZE or larger are returned as they are."""
    import cv2

    ids = np.asarray(list(ids), dtype=np.int64)
    faces = workspace.faces()
    if faces.shape[1] >= SHARP_SIZE or len(ids) == 0:
        return np.ascontiguousarray(faces[ids])
    out = np.empty((len(ids), SHARP_SIZE, SHARP_SIZE, 3), np.uint8)
    have = np.zeros(len(ids), dtype=bool)
    n = workspace.face_count()
    files = _sharp_files(workspace)
    for j, (first, path) in enumerate(files):
        end = files[j + 1][0] if j + 1 < len(files) else n  # rows past the next file's start are stale
        try:
            arr = load_npy(path, mmap=True)
        except (OSError, ValueError):
            continue
        if arr.shape[1:] != (SHARP_SIZE, SHARP_SIZE, 3):
            continue
        inside = (ids >= first) & (ids < min(end, first + len(arr))) & ~have
        out[inside] = arr[ids[inside] - first]
        have |= inside
    for k in np.flatnonzero(~have):
        out[k] = cv2.resize(np.ascontiguousarray(faces[ids[k]]), (SHARP_SIZE, SHARP_SIZE),
                            interpolation=cv2.INTER_CUBIC)
    return out


def _zero_sharp_rows(workspace: Workspace, ids: list[int]) -> None:
    """Overwrite the sharp crops of `ids` with zeros where they lie (every file that holds a
    row for them, stale ones included)."""
    from facelab.store.erase import zero_npy_rows

    for first, path in _sharp_files(workspace):
        rows = [i - first for i in ids if i >= first]
        if rows:
            zero_npy_rows(path, rows)


def _old_faces(workspace: Workspace, n: int, size: int) -> np.ndarray:
    """The first n crops, read while the caller holds the write lock (not `Workspace.faces`,
    which would open a second connection)."""
    if not workspace.faces_path.exists():
        raise BuildError(f"workspace {workspace.name!r} is damaged: its database lists {n} crops "
                         "but faces.npy is missing")
    arr = load_npy(workspace.faces_path, mmap=True)
    if arr.shape[0] < n or arr.shape[1:] != (size, size, 3):
        raise BuildError(f"workspace {workspace.name!r} is damaged: faces.npy has shape "
                         f"{arr.shape}, the database lists {n} crops of {size}x{size}")
    return arr[:n]


# --- reading and pruning the dataset ------------------------------------------------------
def face_times(workspace: Workspace, ids: Iterable[int]) -> np.ndarray:
    """Seconds into its video of each crop `ids` (0.0 for an id the database does not hold)."""
    with workspace.connect() as c:
        t = dict(c.execute("SELECT id, t_seconds FROM faces").fetchall())
    return np.array([t.get(int(i), 0.0) for i in ids], dtype=np.float64)


def faces_table(workspace: Workspace) -> list[dict]:
    """One dict per crop not deleted, in id order: id, source_id, source (its name),
    frame_index, t_seconds, box (x, y, w, h in frame pixels), split, sharpness."""
    with workspace.connect() as c:
        rows = c.execute(
            "SELECT f.id, f.source_id, s.name AS source, f.frame_index, f.t_seconds, "
            "f.x, f.y, f.w, f.h, f.split, f.sharpness FROM faces f "
            "JOIN sources s ON s.id = f.source_id WHERE f.deleted = 0 ORDER BY f.id"
        ).fetchall()
    return [
        {"id": r["id"], "source_id": r["source_id"], "source": r["source"],
         "frame_index": r["frame_index"], "t_seconds": r["t_seconds"],
         "box": (r["x"], r["y"], r["w"], r["h"]), "split": r["split"], "sharpness": r["sharpness"]}
        for r in rows
    ]


def skip_counts(workspace: Workspace) -> dict[str, int]:
    """Over all sources: 'kept' (crops not deleted), 'deleted' (crops the user removed), and
    the sampled frames skipped per reason ('no_face', 'ambiguous', 'blurred', 'duplicate')."""
    with workspace.connect() as c:
        out = {"kept": 0, "deleted": 0, **dict.fromkeys(REASONS, 0)}
        for r in c.execute("SELECT deleted, COUNT(*) AS n FROM faces GROUP BY deleted"):
            out["deleted" if r["deleted"] else "kept"] += r["n"]
        for r in c.execute("SELECT reason, COUNT(*) AS n FROM skipped GROUP BY reason"):
            out[r["reason"]] = r["n"]
    return out


def delete_faces(workspace: Workspace, ids: Iterable[int]) -> int:
    """Delete crops for good; returns how many were newly deleted. Unknown ids raise
    `WorkspaceError` and change nothing.

    Their pixels are overwritten with zeros where they lie in faces.npy and crops128/ (a new file renamed over
    the old one would leave the old bytes in free disk blocks), inside the transaction that marks
    their rows deleted; then every run's codes, maps, clusters and evaluation images of them are
    erased (`facelab.store.erase`). Ids stay, so row i is still faces.id i. Models trained before keep
    what they learned from the crops (see `RETRAIN_NOTE`).

    If the overwrite fails (I/O error), the rows are still marked deleted, so no half-erased crop
    is ever shown or trained on, and `BuildError` asks to delete again: the requested rows are
    overwritten every time, deleted already or not.
    """
    from facelab.store.erase import erase_derived, zero_npy_rows

    wanted = sorted({int(i) for i in ids})
    if not wanted:
        return 0
    failed: OSError | None = None
    with workspace.connect(write=True) as c:
        n = int(c.execute("SELECT COUNT(*) FROM faces").fetchone()[0])
        unknown = [i for i in wanted if not 0 <= i < n]
        if unknown:
            raise WorkspaceError(f"no crop with id {', '.join(map(str, unknown[:5]))}"
                                 f"{' ...' if len(unknown) > 5 else ''} in workspace {workspace.name!r}")
        alive = [r[0] for r in c.execute(
            f"SELECT id FROM faces WHERE deleted = 0 AND id IN ({','.join('?' * len(wanted))})", wanted)]
        c.executemany("UPDATE faces SET deleted = 1 WHERE id = ?", [(i,) for i in alive])
        try:
            zero_npy_rows(workspace.faces_path, wanted)
            _zero_sharp_rows(workspace, wanted)
        except OSError as e:
            failed = e  # commit the marks anyway: see the docstring
    if failed is not None:
        raise BuildError(f"the {len(wanted)} crops are marked deleted in workspace {workspace.name!r}, "
                         f"but their pixels could not all be overwritten ({failed.strerror or failed}): "
                         "delete them again")
    try:
        erase_derived(workspace, wanted)
    except OSError as e:
        raise BuildError(f"the crops are deleted in workspace {workspace.name!r}, but what runs made "
                         f"from them could not all be erased ({e.strerror or e}): delete them again") from e
    return len(alive)


RETRAIN_NOTE = ("Models trained before this delete still hold what they learned from these faces "
                "(their decoders can draw faces like them): retrain, or delete those runs, to be rid of it.")


def build_settings_of(ws: Workspace) -> BuildSettings:
    """The `BuildSettings` the workspace's latest video was cropped with (defaults if none)."""
    with ws.connect() as c:
        row = c.execute("SELECT settings FROM sources ORDER BY id DESC LIMIT 1").fetchone()
    saved = json.loads(row["settings"]) if row else {}
    known = {f.name for f in fields(BuildSettings)}
    return BuildSettings(**{k: v for k, v in saved.items() if k in known})
