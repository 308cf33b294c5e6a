"""Choosing the trained run that the Explore, Label and Shift pages look at, and its latents."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import streamlit as st

from facelab.model import jobs, quality
from facelab.space.latent import Latents, active_latents, encode_run, load_latents
from facelab.store.workspace import Workspace
from facelab.ui import state
from facelab.ui.text import db


def learned_nothing(w: Workspace, run: jobs.RunStatus) -> bool:
    """Show `quality.verdict`'s warning for a run that learned nothing; True when shown."""
    warning = quality.run_report(w, run, pca=False)["warning"]  # the mean crop's figure is enough
    if warning:
        st.warning(warning, icon="⚠️")
    return bool(warning)


def pick_run(w: Workspace) -> str:
    """A selectbox of the finished runs (bound to state.RUN); stops the page if there is none,
    and, below the selectbox, if the picked run learned nothing (its map and edits would be
    noise)."""
    done = [r for r in jobs.list_runs(w) if r.state == "done"]
    if not done:
        st.info("No trained model yet: train one on the **Train** page first.")
        st.stop()
    names = {r.run_id: f"{r.name} · PSNR {db(r.metrics.get('val_psnr'))}" for r in done}
    if st.session_state.get(state.RUN) not in names:
        st.session_state[state.RUN] = done[0].run_id
    run_id = st.selectbox("Model", list(names), format_func=names.get, key=state.RUN)
    if learned_nothing(w, next(r for r in done if r.run_id == run_id)):
        st.stop()
    return run_id


def require_latents(w: Workspace, run_id: str) -> Latents:
    """The run's latents; if they are missing or stale, a button computes them (with progress).

    A run trained by a job is encoded before it shows 'done' (`jobs.encode_after_training`), so
    the button is for crops added or deleted since, imported runs, or a failed encoding. The
    prompt lives in one slot that is emptied once the latents exist: left in place it would sit
    above the finished map until the next rerun."""
    lat = load_latents(w, run_id)
    if lat is not None:
        return lat
    slot = st.empty()
    with slot.container():
        st.info("This model has not encoded the current crops yet (crops were added or deleted since "
                "it was trained, or the run was imported).")
        if not st.button("Compute latents", type="primary", key="fl_encode"):
            st.stop()
        bar = st.progress(0.0, text="Encoding faces…")
        lat = encode_run(w, run_id, progress=lambda done, total: bar.progress(
            done / max(1, total), text=f"Encoding faces… {done}/{total}"))
    slot.empty()
    return lat


class RunPage(NamedTuple):
    """What a page about one trained model starts from (unpacked by the page)."""

    w: Workspace
    run_id: str
    lat: Latents
    ids: np.ndarray  # the face ids not deleted ...
    mu: np.ndarray  # ... and their μ rows


def open_run_page(title: str) -> RunPage:
    """The opening of Explore, Shift and Webcam: the title, the workspace, any message left by the
    last run, the model picker and its latents (each step stops the page with a hint when it
    cannot go on)."""
    st.title(title)
    w = state.require_workspace()
    state.show_flash()
    run_id = pick_run(w)
    lat = require_latents(w, run_id)
    ids, mu = active_latents(w, lat)
    return RunPage(w, run_id, lat, ids, mu)
