"""Heavy imports done once per server process, in the background, after the first page is drawn.

Explore's first visit on 15,000 frames spent 3-6 of its seconds importing scikit-learn (its PCA
and K-means), Altair and torch. The app opens on the Dataset page, so a visit to Explore is rarely
the first page of a server: importing them on a side thread once a page has been drawn takes
that wait off the first map. Started after the page's script (not before), so the page itself
never waits on these imports for the interpreter's lock.
"""

from __future__ import annotations

import importlib
import threading

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
