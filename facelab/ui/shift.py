"""Cached pieces of the Shift page: the run's PCA plane, probes and bounds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import streamlit as st

from facelab import dataset
from facelab.directions import LinearProbe, labelled_latents
from facelab.edit import LatentBounds
from facelab.latent_map import plain_map_table, plane
from facelab.workspace import Workspace


@st.cache_resource(max_entries=4)
def run_plane(latents_key: str, mu: np.ndarray):
    return plane(mu)


@st.cache_data(max_entries=4)
def light_map(ws_path: str, latents_key: str, ids: np.ndarray, mu: np.ndarray):
    t = {f["id"]: f["t_seconds"] for f in dataset.faces_table(Workspace(Path(ws_path)))}
    xy = run_plane(latents_key, mu).transform(mu)
    return plain_map_table(xy, ids, np.array([t.get(int(i), 0.0) for i in ids]))


@st.cache_resource(max_entries=4)
def bounds(latents_key: str, mu: np.ndarray) -> LatentBounds:
    return LatentBounds.from_latents(mu)


@st.cache_resource(max_entries=16, show_spinner=False)
def probe(ws_path: str, run_id: str, label: str, labels_version: int) -> LinearProbe | None:
    """A probe of `label` fitted on the training split, or None with too few examples."""
    z, y, _ = labelled_latents(Workspace(Path(ws_path)), run_id, label)
    if y.sum() < 5 or (~y).sum() < 5:
        return None
    return LinearProbe().fit(z, y)
