"""The app imports the maps' heavy modules on a side thread once a page is drawn, once."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from conftest import REPO


def test_warm_imports_load_the_maps_modules_once_in_the_background() -> None:
    code = textwrap.dedent("""
        import sys, threading
        from facelab.ui.warm import MODULES, warm_imports
        assert not any(m in sys.modules for m in MODULES), "imported before warming"
        assert warm_imports() and not warm_imports()  # one thread per process
        [t.join() for t in threading.enumerate() if t.name == "facelab-warm-imports"]
        missing = [m for m in MODULES if m not in sys.modules]
        assert not missing, missing
    """)
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "warm_imports()" in (REPO / "streamlit_app.py").read_text()  # the app calls it


def test_explore_imports_no_torch_before_its_map() -> None:
    """Importing torch takes about 2 s on a cold server: Explore's map needs no model, so
    nothing the page imports may pull torch in (it comes with the first model, after the map)."""
    code = textwrap.dedent("""
        import ast, importlib, sys
        for node in ast.parse(open("pages/explore.py").read()).body:
            if isinstance(node, ast.ImportFrom):
                importlib.import_module(node.module)
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    importlib.import_module(alias.name)
        assert "torch" not in sys.modules, "torch imported by the Explore page's imports"
    """)
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
