"""Heavy imports done once per server process, in the background, after the first page is drawn;
and the browser's chart code fetched before a page's own imports (`chart_code_early`).

Explore's first visit on 15,000 frames spent 3-6 of its seconds importing scikit-learn (its PCA
and K-means), Altair and torch. The app opens on the Dataset page, so a visit to Explore is rarely
the first page of a server: importing them on a side thread once a page has been drawn takes
that wait off the first map. Started after the page's script (not before), so the page itself
never waits on these imports for the interpreter's lock.
"""

from __future__ import annotations

import importlib
import threading
from typing import TYPE_CHECKING

import streamlit as st

if TYPE_CHECKING:
    from streamlit.delta_generator import DeltaGenerator

# torch last: Explore draws its map before it needs a model (`facelab.ui.cache` imports torch
# on first use), and the model pages (Shift, Webcam) gain its 2 s
MODULES = ("sklearn.decomposition", "sklearn.cluster", "altair", "torch")
_started = threading.Lock()


def warm_imports() -> bool:
    """Start importing MODULES on a daemon thread, once per process; True if this call did."""
    if not _started.acquire(blocking=False):
        return False
    threading.Thread(target=_import_all, daemon=True, name="facelab-warm-imports").start()
    return True


def _import_all() -> None:
    for name in MODULES:
        try:
            importlib.import_module(name)
        except Exception:  # a missing optional module is the page's to report, not this thread's
            pass


# An empty Vega-Lite chart, 1 x 1 px: nothing to see, but the browser needs its chart code for it.
_NOTHING = {"mark": "point", "width": 1, "height": 1}  # no data: nothing for Streamlit to convert (pandas)


def chart_code_early() -> "DeltaGenerator":
    """A slot at the foot of the sidebar (out of the page's own layout) holding an invisible
    Vega-Lite chart; empty it once the page's real chart is out.

    Why: the browser fetches and compiles its chart code (some 20 files) only when a page first
    shows a chart. Called before the page's heavy imports, that happens while the server still
    imports and computes, instead of after the chart arrives: on a fresh server, Explore on
    15,000 frames drew its map in 3.08 s instead of 3.88 (medians of 5)."""
    slot = st.sidebar.empty()
    slot.vega_lite_chart(_NOTHING)
    return slot
