"""Run a dataset build from an uploaded file, with a progress bar, in the page's own run.

The upload is copied to a temp file inside the workspace (removed afterwards: only crops are
kept). Clicking anything while it runs makes Streamlit stop this script run; the build then
discards its work, so the workspace is left as it was, and the next run says so.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import streamlit as st

from facelab.data import dataset, preview
from facelab.data.video import VideoError
from facelab.store.processes import owned_name
from facelab.store.workspace import UPLOAD_PREFIX, Workspace
from facelab.ui import state
from facelab.ui.text import md

BUILDING = "fl_building"  # set while a build runs; still set on the next run = it was stopped
DUPLICATE = "fl_build_duplicate"  # (upload's file_id, message): a video built before, to confirm
NOTES = "fl_build_notes"  # the last build's notes (e.g. a damaged file), shown after its rerun
UPLOADS = "fl_upload_round"  # bumped by each build that added faces: the next uploader is empty


def upload_key() -> str:
    """The file uploader's key: a new one after each build, so the built file is not left in
    it with Build enabled (building it twice would double the dataset)."""
    return f"fl_upload_{st.session_state.get(UPLOADS, 0)}"


def confirm_again(w: Workspace, upload, settings: dataset.BuildSettings, keep_preview: bool = False) -> None:
    """For an upload the workspace already holds: the warning, and a button to add it anyway."""
    pending = st.session_state.get(DUPLICATE)
    if pending is None:
        return
    if upload is None or pending[0] != upload.file_id:
        st.session_state.pop(DUPLICATE, None)  # another file now: the question is moot
        return
    st.warning(f"{md(pending[1])}. Add it anyway?")
    if st.button("Add it again", key="fl_build_again"):
        st.session_state.pop(DUPLICATE, None)
        build_from_upload(w, upload, settings, again=True, keep_preview=keep_preview)


def build_from_upload(w: Workspace, upload, settings: dataset.BuildSettings, again: bool = False,
                      keep_preview: bool = False) -> None:
    st.session_state[BUILDING] = upload.name
    cancel = st.empty()
    cancel.button("Cancel build", key="fl_cancel_build", help="Stops the build; nothing from it is kept.")
    bar = st.progress(0.0, text="Reading the video…")
    # The server's pid in the name: `workspace.remove_leftovers` drops the copy once it is dead.
    tmp = w.path / (owned_name(UPLOAD_PREFIX, "video") + ".tmp")
    try:
        with open(tmp, "xb") as f:
            shutil.copyfileobj(upload, f, length=1 << 22)

        def progress(p: dataset.BuildProgress) -> None:
            eta = f" · about {p.eta_s:.0f} s left" if p.eta_s is not None else ""
            bar.progress(p.done / max(1, p.total), text=f"{p.done}/{p.total} frames · {p.kept} faces{eta}")

        report = dataset.build(w, Path(tmp), settings, name=upload.name, progress=progress, again=again)
        if keep_preview and report.source_id is not None:  # from the temp copy, before it goes
            bar.progress(0.0, text="Making the preview…")
            try:
                preview.make_preview(w, report.source_id, tmp,
                                     lambda share: bar.progress(share, text="Making the preview…"))
            except preview.PreviewError as e:
                report.notes.append(f"No preview was kept: {e}")
    except (VideoError, OSError, dataset.DuplicateVideo) as e:
        report = e
    finally:
        # Reached on a Streamlit stop too (a click during the build): the temp copy goes.
        Path(tmp).unlink(missing_ok=True)
    # Only a build that ended by itself gets here; a stopped one leaves BUILDING set.
    st.session_state.pop(BUILDING, None)
    bar.empty()
    cancel.empty()
    if isinstance(report, dataset.DuplicateVideo):
        st.session_state[DUPLICATE] = (upload.file_id, str(report))
        confirm_again(w, upload, settings)
    elif isinstance(report, VideoError):
        st.error(md(report))  # it names the upload
    elif isinstance(report, OSError):
        st.error(f"Could not save the crops ({report.strerror or report}). Nothing was changed.")
    elif report.kept == 0:
        st.warning(
            f"No usable face found in the {report.sampled} sampled frames of **{md(upload.name)}** "
            f"({report.no_face} without a face, {report.ambiguous} with several). Nothing was added."
            + "".join(f" {md(n)}." for n in report.notes)
        )
    else:
        state.flash(
            f"Added {report.kept} faces from **{md(upload.name)}** in {report.seconds:.1f} s "
            f"({report.sampled} frames sampled)."
        )
        st.session_state[NOTES] = report.notes
        st.session_state[UPLOADS] = st.session_state.get(UPLOADS, 0) + 1
        st.rerun()  # the page again, with a fresh, empty uploader


def report_interrupted_build() -> None:
    """Show the last build's notes (e.g. a damaged file, read up to the damage), and tell the
    user if a build was stopped half-way (nothing of it was kept)."""
    for note in st.session_state.pop(NOTES, []):
        st.warning(md(note))
    name = st.session_state.pop(BUILDING, None)
    if name:
        st.warning(f"The build of **{md(name)}** was stopped; nothing from it was added.")
