"""An opt-in preview of a source video, so a frame's point on the map can play its moment.

facelab keeps only face crops by default. A person may ask (Dataset's "Keep a small preview",
`facelab build --preview`) to also keep a small silent copy of the video: 240 px high at most,
15 frames a second at most, H.264. It lives in `previews/<source id>.mp4` and is removed

- with the workspace (it lies inside it),
- by its own button (`delete_previews`: the Dataset page's "Delete previews", `facelab crops
  delete-previews`),
- when any crop of that video is deleted (`facelab.store.erase.erase_derived`): the preview shows
  those moments too, so it is erased rather than left behind.

Workspace archives do not carry previews.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from fractions import Fraction
from pathlib import Path

from facelab.errors import FacelabError
from facelab.store.workspace import Workspace

PREVIEW_DIR = "previews"
MAX_HEIGHT = 240  # pixels: enough to see an expression, small enough to keep (about 1 MB a minute)
MAX_FPS = 15.0


class PreviewError(FacelabError):
    """The preview could not be made; the message says why (the crops are kept either way)."""


def preview_path(workspace: Workspace, source_id: int) -> Path:
    return workspace.path / PREVIEW_DIR / f"{int(source_id)}.mp4"


def previews(workspace: Workspace) -> dict[int, Path]:
    """source id -> its preview file, for the previews that exist."""
    folder = workspace.path / PREVIEW_DIR
    found = {}
    for path in sorted(folder.glob("*.mp4")) if folder.is_dir() else []:
        if path.stem.isdigit():
            found[int(path.stem)] = path
    return found


def make_preview(workspace: Workspace, source_id: int, video: str | Path,
                 progress: Callable[[float], None] | None = None) -> Path:
    """Write the preview of `video` (already built as source `source_id`); returns its path.

    Frame k of the preview shows the video at k / fps seconds, so a frame's time stamp is its
    place in the preview. `progress` gets the share done (0..1) now and then. Written to a temp
    file renamed into place, so a failure leaves no half preview."""
    import av

    from facelab.data.video import first_video_stream
    from facelab.store.storage import write_atomic

    path = preview_path(workspace, source_id)
    try:
        with av.open(str(video)) as src:
            stream = first_video_stream(src) or src.streams.video[0]  # the stream the crops come from
            stream.thread_type = "AUTO"
            rate = float(stream.average_rate or 25)
            fps = Fraction(min(rate, MAX_FPS)).limit_denominator(1001)
            duration = float(stream.duration * stream.time_base) if stream.duration else None
            height = min(MAX_HEIGHT, stream.codec_context.height) // 2 * 2
            width = int(round(stream.codec_context.width * height / stream.codec_context.height / 2)) * 2

            def write(f) -> None:
                with av.open(f, mode="w", format="mp4") as out:
                    enc = out.add_stream("libx264", rate=fps)
                    enc.width, enc.height, enc.pix_fmt = width, height, "yuv420p"
                    enc.options = {"crf": "28", "preset": "veryfast"}
                    k = 0
                    for frame in src.decode(stream):
                        t = float(frame.time or 0.0)
                        while k / float(fps) <= t + 1e-6:  # repeat or drop frames to hold the time base
                            small = frame.reformat(width=width, height=height, format="yuv420p")
                            small.pts, small.time_base = k, 1 / fps  # frame k at k / fps seconds
                            out.mux(enc.encode(small))
                            k += 1
                        if progress is not None and duration and k % 30 == 0:
                            progress(min(1.0, t / duration))
                    out.mux(enc.encode())

            write_atomic(path, write)
    except (av.error.FFmpegError, OSError, IndexError, ZeroDivisionError) as e:
        raise PreviewError(f"could not make a preview of {Path(video).name}: {e}") from None
    if progress is not None:
        progress(1.0)
    return path


def delete_previews(workspace: Workspace, source_ids: Iterable[int] | None = None) -> int:
    """Erase the previews of these sources (all when None): overwritten, then removed. Returns how many."""
    from facelab.store.erase import shred

    wanted = None if source_ids is None else {int(s) for s in source_ids}
    gone = 0
    for source_id, path in previews(workspace).items():
        if wanted is None or source_id in wanted:
            shred(path)
            gone += 1
    return gone


def sources_of(workspace: Workspace, face_ids: Iterable[int]) -> list[int]:
    """The source videos the crops `face_ids` come from."""
    ids = [int(i) for i in face_ids]
    if not ids:
        return []
    with workspace.connect() as c:
        rows = c.execute(f"SELECT DISTINCT source_id FROM faces WHERE id IN ({','.join('?' * len(ids))})", ids)
        return sorted(int(r[0]) for r in rows)


def moment(workspace: Workspace, face_id: int) -> tuple[Path, float] | None:
    """(the preview holding this crop's moment, its time in seconds), or None without a preview."""
    with workspace.connect() as c:
        row = c.execute("SELECT source_id, t_seconds FROM faces WHERE id = ?", (int(face_id),)).fetchone()
    if row is None:
        return None
    path = previews(workspace).get(int(row[0]))
    return None if path is None else (path, round(float(row[1]), 2))
