"""Run a dataset build from an uploaded file, with a progress bar, in the page's own run.

The upload is copied to a temp file inside the workspace (removed afterwards: only crops are
kept). Clicking anything while it runs makes Streamlit stop this script run; the build then
discards its work, so the workspace is left as it was, and the next run says so.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import streamlit as st

from facelab import dataset
from facelab.video import VideoError
from facelab.workspace import Workspace

BUILDING = "fl_building"  # set while a build runs; still set on the next run = it was stopped


def build_from_upload(w: Workspace, upload, settings: dataset.BuildSettings) -> None:
    st.session_state[BUILDING] = upload.name
    cancel = st.empty()
    cancel.button("Cancel build", key="fl_cancel_build", help="Stops the build; nothing from it is kept.")
    bar = st.progress(0.0, text="Reading the video…")
    fd, tmp = tempfile.mkstemp(prefix=".upload-", suffix=".tmp", dir=w.path)
    try:
        with open(fd, "wb") as f:
            shutil.copyfileobj(upload, f, length=1 << 22)

        def progress(p: dataset.BuildProgress) -> None:
            eta = f" · about {p.eta_s:.0f} s left" if p.eta_s is not None else ""
            bar.progress(p.done / max(1, p.total), text=f"{p.done}/{p.total} frames · {p.kept} faces{eta}")

        report = dataset.build(w, Path(tmp), settings, name=upload.name, progress=progress)
    except (VideoError, OSError) as e:
        report = e
    finally:
        # Reached on a Streamlit stop too (a click during the build): the temp copy goes.
        Path(tmp).unlink(missing_ok=True)
    # Only a build that ended by itself gets here; a stopped one leaves BUILDING set.
    st.session_state.pop(BUILDING, None)
    bar.empty()
    cancel.empty()
    if isinstance(report, VideoError):
        st.error(str(report))  # it names the upload
    elif isinstance(report, OSError):
        st.error(f"Could not save the crops ({report.strerror or report}). Nothing was changed.")
    elif report.kept == 0:
        st.warning(
            f"No usable face found in the {report.sampled} sampled frames of **{upload.name}** "
            f"({report.no_face} without a face, {report.ambiguous} with several). Nothing was added."
        )
    else:
        st.success(
            f"Added {report.kept} faces from **{upload.name}** in {report.seconds:.1f} s "
            f"({report.sampled} frames sampled)."
        )


def report_interrupted_build() -> None:
    """Tell the user a build was stopped half-way (and that nothing of it was kept)."""
    name = st.session_state.pop(BUILDING, None)
    if name:
        st.warning(f"The build of **{name}** was stopped; nothing from it was added.")
