"""Heavy objects the pages share, loaded once per server (st.cache_resource / st.cache_data).

Keys include the model file's mtime, so a retrained or replaced run is never served stale.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import streamlit as st

from facelab.model.model_config import weights_path
from facelab.store.workspace import Workspace

if TYPE_CHECKING:
    from facelab.model.models import Codec


def _stamp(run_dir: Path) -> float:
    """The weights file's mtime (0 before training): a retrained run gets a new key."""
    path = weights_path(run_dir)
    try:
        return path.stat().st_mtime if path is not None else 0.0
    except FileNotFoundError:
        return 0.0


@st.cache_resource(max_entries=8, show_spinner="Loading the model…")
def _codec(run_dir: str, stamp: float) -> Codec:
    from facelab.model.models import load_codec  # torch: imported when a page first needs a model, so
    # a page can draw what needs none (Explore's map) before the 2 s of importing it

    return load_codec(Path(run_dir))


def codec(w: Workspace, run_id: str) -> Codec:
    run_dir = w.run_dir(run_id)
    return _codec(str(run_dir), _stamp(run_dir))


def model_stamp(w: Workspace, run_id: str) -> float:
    return _stamp(w.run_dir(run_id))


@st.cache_data(max_entries=16, show_spinner="Computing the evaluation grids…")
def evaluation_grids(ws_path: str, run_id: str, stamp: float, seed: int,
                     faces_key: str = "") -> dict[str, np.ndarray]:
    """Reconstructions, prior samples, the three-point triangle and traversals of one run.

    `faces_key` (`Workspace.crops_key`) changes when crops are deleted, so grids showing
    a deleted crop are never served again."""
    from facelab.model import evaluate
    from facelab.model.train import load_images, split_ids

    w = Workspace(Path(ws_path))
    c = _codec(str(w.run_dir(run_id)), stamp)
    val = load_images(w, split_ids(w).val_ids, c.config.image_size)
    figs = evaluate.heldout_figures(c, val)
    images, dims = evaluate.evaluation_grids(c, val, figs, seed)
    return {**images, "traversal_dims": np.array(dims), "psnr": np.array(figs["psnr"])}
