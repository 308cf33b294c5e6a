"""Pieces of the Shift page: the run's PCA map, probes and bounds (cached), and what the
sliders make of a face."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from facelab.data import dataset
from facelab.data.labels import MIN_EXAMPLES
from facelab.edits import animate, edit
from facelab.edits.directions import Direction, labelled_latents
from facelab.edits.edit import LatentBounds
from facelab.space.latent_map import map_chart, plain_map_table
from facelab.space.probe import LinearProbe
from facelab.space.projection import Projector
from facelab.store.workspace import Workspace


# The caches below are keyed on the latents key, which fixes μ and the active ids (it covers the
# model file, the crops and the deleted ids: `facelab.space.latent`); so they do not hash the arrays
# again (6-15 ms each at 15,000 x 32, on every slider move).
@st.cache_resource(max_entries=4)
def run_plane(latents_key: str, _mu: np.ndarray) -> Projector:
    """The run's PCA map, the one Explore shows: its `transform` places a shifted or live face."""
    return Projector().fit(_mu)


@st.cache_data(max_entries=4)
def light_map(ws_path: str, latents_key: str, _ids: np.ndarray, _mu: np.ndarray, axes_key: str = "",
              _placer=None):
    """The frames' points for a chart redrawn often: on the run's PCA map, or placed by
    `_placer` (fitted `generative_map.Axes`, named by `axes_key`)."""
    xy = (_placer or run_plane(latents_key, _mu)).transform(_mu)
    return plain_map_table(xy, _ids, dataset.face_times(Workspace(Path(ws_path)), _ids))


MAX_MAP_POINTS = 2000  # background points of a map redrawn at every slider move or live redraw


def thin(table: pd.DataFrame, max_points: int = MAX_MAP_POINTS) -> pd.DataFrame:
    """At most `max_points` evenly spaced rows: a map redrawn often only needs to show where the
    data lies."""
    if len(table) <= max_points:
        return table
    step = -(-len(table) // max_points)
    return table.iloc[::step]


@st.cache_resource(max_entries=8, show_spinner=False)
def ringed_map_spec(ws_path: str, latents_key: str, axes_key: str, height: int, _table: pd.DataFrame) -> dict:
    """The Vega-Lite spec of a map redrawn often (`light_map`'s table, thinned) with an empty ring
    layer, made once per map (workspace, latents, axes): building and checking the Altair chart
    took 40-60 ms of every redraw, of a Shift slider move as of the live map (whose video waited
    for the interpreter's lock meanwhile). Read-only: `with_ring` copies what it changes."""
    ring = pd.DataFrame({"x": [0.0], "y": [0.0], "note": [""]})
    return map_chart(thin(_table), "time", box=False, marked=ring, height=height).to_dict()


def with_ring(spec: dict, marked: pd.DataFrame | None) -> dict:
    """`spec` (from `ringed_map_spec`) with these rings (x, y, note), or none."""
    ring = spec["layer"][-1]["data"]["name"]
    rows = [] if marked is None else marked.to_dict("records")
    return {**spec, "datasets": {**spec["datasets"], ring: rows}}


@st.cache_resource(max_entries=4)
def bounds(latents_key: str, _mu: np.ndarray) -> LatentBounds:
    return LatentBounds.from_latents(_mu)


@st.cache_resource(max_entries=16, show_spinner=False)
def probe(ws_path: str, run_id: str, label: str, labels_version: int) -> LinearProbe | None:
    """A probe of `label` fitted on the training split, or None with too few examples."""
    z, y, _ = labelled_latents(Workspace(Path(ws_path)), run_id, label)
    if y.sum() < MIN_EXAMPLES or (~y).sum() < MIN_EXAMPLES:
        return None
    return LinearProbe().fit(z, y)


@st.cache_resource(max_entries=8, show_spinner="Training the independent judge on your labelled frames…")
def judge_of(ws_path: str, label: str, labels_version: int):
    """`facelab.edits.judge.label_judge` of `label`, or None with too few labelled frames."""
    from facelab.edits.directions import DirectionError
    from facelab.edits.judge import JudgeError, label_judge

    try:
        return label_judge(Workspace(Path(ws_path)), label)
    except (JudgeError, DirectionError):
        return None


def judge_caption(judge, label: str, original: np.ndarray, recon: np.ndarray, shifted: np.ndarray) -> str:
    """What the independent judge sees in the three faces on screen (Markdown; `label` escaped)."""
    from facelab.ui.text import md

    p = [float(judge.p(face[None])[0]) for face in (original, recon, shifted)]  # sizes differ: 128 and 64 px
    e = judge.estimate
    return (f"**Independent judge** (HOG + logistic regression trained on your labelled frames' pixels, "
            f"never on the model's codes; AUC {e.auc:.2f}, 95 % {e.low:.2f}–{e.high:.2f}): "
            f"P({md(label)}) original **{p[0]:.2f}** · reconstruction {p[1]:.2f} · shifted **{p[2]:.2f}**")


def slider_edit(
    model, original: np.ndarray, z0: np.ndarray, moves: dict[str, Direction], alphas: dict[str, float],
    centre: np.ndarray | None, strength: float, limits: LatentBounds, detail: bool = True,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(z', reconstruction, face to show) for the sliders' settings: `edit.compose`, the same
    composition `facelab shift` and the webcam use, then the detail-preserving picture (or,
    with detail=False, the plain decoded one)."""
    z = edit.compose(z0, [(moves[n], a) for n, a in alphas.items()], centre, strength, limits)
    recon, shown = edit.shift_faces(model, original, z0, z, detail)
    return z, recon, shown[0]


@st.cache_data(max_entries=2, show_spinner="Making the strip, the GIF and the video…")
def path_files(frames: np.ndarray, ends: tuple[np.ndarray, np.ndarray] | None) -> tuple[bytes, bytes, bytes]:
    """An interpolation path's PNG strip, GIF and MP4, made once per path (1-3 s), not on every
    rerun. Given to the download buttons as bytes: made on the click instead (Streamlit's
    deferred data), a click now and then downloaded nothing, since Streamlit drops a deferred
    file's callable when a run elsewhere on the server cleans up files no session refers to."""
    return (animate.png_bytes(animate.strip_image(frames, ends=ends)), animate.gif_bytes(frames),
            animate.mp4_bytes(frames))
