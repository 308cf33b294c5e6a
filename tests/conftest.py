"""Fixtures every test shares: a private facelab home, a live app, Chromium (media: tests/media.py)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
LOCAL_PREFIXES = ("http://127.0.0.1", "ws://127.0.0.1", "data:", "blob:", "about:")


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh FACELAB_HOME for this test (never the user's real one)."""
    path = tmp_path / "home"
    path.mkdir()
    monkeypatch.setenv("FACELAB_HOME", str(path))
    yield path
    stop_background_work(path)


def stop_background_work(home: Path) -> None:
    """Stop the training jobs and map workers a test left running (they outlive the app by design).

    Left alone they would train on through the next tests, slowing them (a fake camera's video
    stalled under such load). Said as a warning, so a test that leaks one is seen.
    """
    from facelab.store import db, processes, workspace

    root = workspace.workspaces_root(home)
    for folder in sorted(root.iterdir()) if root.is_dir() else []:
        if (folder / workspace.DB_FILE).exists():
            with db.connect(folder / workspace.DB_FILE, write=True) as c:
                c.execute("UPDATE jobs SET state = 'cancelled', pid = NULL WHERE state = 'queued'")
        deadline = time.monotonic() + 3  # a child that has just finished its job is still exiting
        while (busy := workspace.workers(folder)) and time.monotonic() < deadline:
            time.sleep(0.1)
        if busy:
            warnings.warn(f"stopped what a test left running in {folder.name}: {busy}")
            processes.stop([pid for pid, _ in busy])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def streamlit_server(home: Path) -> Iterator[str]:
    """Run `streamlit run streamlit_app.py` on a free port of 127.0.0.1; yields its URL.

    It runs in the caller's network namespace (the webcam test calls it from a child process
    started inside its own namespace, so the health check reaches it).
    """
    port = free_port()
    env = {**os.environ, "FACELAB_HOME": str(home), "PYTHONUNBUFFERED": "1"}
    log = (home / f"streamlit-{port}.log").open("wb")
    cmd = [
        sys.executable, "-m", "streamlit", "run", "streamlit_app.py",
        "--server.port", str(port), "--server.address", "127.0.0.1", "--server.headless", "true",
        "--browser.gatherUsageStats", "false",
    ]
    # Its own process group, stopped as Ctrl-C in a terminal stops it: the signal reaches the
    # whole group, so anything the app starts must leave the group to outlive it (training does).
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"streamlit exited early:\n{(home / log.name).read_text()}")
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                    if r.read() == b"ok":
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("streamlit did not answer within 60 s")
            time.sleep(0.25)
        yield url
    finally:
        _signal_group(proc.pid, signal.SIGINT)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            _signal_group(proc.pid, signal.SIGKILL)
            proc.wait(10)
        log.close()


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


@pytest.fixture
def app_url(home: Path) -> Iterator[str]:
    with streamlit_server(home) as url:
        yield url


@pytest.fixture(scope="session")
def pw():
    """The one Playwright of the test process (a second one cannot start beside it)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="session")
def browser(pw):
    b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    yield b
    b.close()


@pytest.fixture
def page(browser):
    """A fresh browser page. Every request it makes must stay on this machine."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    pg = context.new_page()
    pg.set_default_timeout(30_000)
    outside: list[str] = []
    pg.on("request", lambda r: None if r.url.startswith(LOCAL_PREFIXES) else outside.append(r.url))
    yield pg
    context.close()
    assert not outside, f"the page sent requests off this machine: {outside[:5]}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Screenshot each browser test's page as its body ends, before fixture teardown stops the
    server (a screenshot taken later shows a disconnected, greyed-out app, whatever happened)."""
    yield
    pg = item.funcargs.get("page") if call.when == "call" else None
    if pg is not None:
        ARTIFACTS.mkdir(exist_ok=True)
        try:
            pg.screenshot(path=str(ARTIFACTS / f"{item.name}.png"), full_page=True)
        except Exception:  # a closed page or crashed browser: the test's own error says more
            pass


def wait_for_app(page, timeout_ms: int = 30_000) -> None:
    """Wait until Streamlit has finished running the page script."""
    page.wait_for_selector("[data-testid='stMain'] [data-testid='stElementContainer']", timeout=timeout_ms)
    page.wait_for_function(
        "() => !document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=timeout_ms
    )


def choose(page, label: str, option: str) -> None:
    """Pick a selectbox option as a person does: open it, type the option, Enter."""
    page.get_by_label(label).click()
    page.keyboard.type(option, delay=30)
    page.wait_for_timeout(300)
    page.keyboard.press("Enter")
    wait_for_app(page)


def map_points(page, box: str):
    """The latent-map chart inside the container keyed `box`, and its drawn points."""
    chart = page.locator(f".st-key-{box} [data-testid='stVegaLiteChart']")
    chart.wait_for(timeout=60_000)
    points = chart.locator("g.mark-symbol.role-mark path")  # the frames, not the legend's symbols
    points.first.wait_for(timeout=60_000)
    return chart, points


def _point_centre(points, i: int) -> tuple[float, float]:
    """Where point i is drawn, scrolled into the window first: a mouse event outside the
    viewport reaches nothing (a tall map's lower points may lie below the fold)."""
    points.nth(i).scroll_into_view_if_needed()
    bb = points.nth(i).bounding_box()
    return bb["x"] + bb["width"] / 2, bb["y"] + bb["height"] / 2


def click_point(page, points, i: int) -> None:
    """Click where point i is drawn, as a person would (overlapping points: the top one wins)."""
    page.mouse.click(*_point_centre(points, i))


def drag(page, element, start: tuple[float, float], end: tuple[float, float], steps: int = 10) -> None:
    """Drag the mouse across `element` (a locator) from `start` to `end`, each (x, y) as
    fractions of its size: a box on a map, a span on a timeline."""
    bb = element.bounding_box()
    page.mouse.move(bb["x"] + bb["width"] * start[0], bb["y"] + bb["height"] * start[1])
    page.mouse.down()
    page.mouse.move(bb["x"] + bb["width"] * end[0], bb["y"] + bb["height"] * end[1], steps=steps)
    page.mouse.up()


def hover_point(page, points, i: int) -> None:
    """Move the mouse over where point i is drawn (overlapping points: the top one's tooltip)."""
    page.mouse.move(*_point_centre(points, i))


# The Label grid's cell that has the keyboard's focus, by id; the grid draws in a shadow root,
# so look inside hosts.
FOCUSED_ID = """() => { let a = document.activeElement;
  while (a && a.shadowRoot && a.shadowRoot.activeElement) a = a.shadowRoot.activeElement;
  return a && a.classList.contains('cell') ? Number(a.dataset.id) : null; }"""


def empty_place(page, box: str = ".st-key-fl_map_box") -> dict:
    """The centre of the map's "faces between the frames" cell farthest from every frame drawn
    in `box` (an SVG map): {x, y, far} in page pixels, `far` its distance to the nearest frame."""
    return page.evaluate("""(sel) => {
        const box = document.querySelector(sel);
        const centre = (e) => { const r = e.getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2]; };
        const dots = [...box.querySelectorAll('g.mark-symbol.role-mark path')].map(centre);
        let best = null, far = -1;
        const cells = [...box.querySelectorAll('g.mark-rect.role-mark path')]  // not the (empty) box brush
            .filter((e) => e.getBoundingClientRect().width > 2);
        for (const c of cells.map(centre)) {
            const d = Math.min(...dots.map(([x, y]) => Math.hypot(x - c[0], y - c[1])));
            if (d > far) { far = d; best = c; }
        }
        return {x: best[0], y: best[1], far};
    }""", box)


def move_slider_until_face_changes(page, slider_text: str, steps: int = 15) -> None:
    """Press → on the Shift page's slider labelled `slider_text` and wait for a new shifted face."""
    import time

    shifted = page.locator("[data-testid='stImage']").filter(has_text="shifted").locator("img")
    page.wait_for_function(  # one shifted face once the page has settled (two mid-rerun is normal)
        "() => [...document.querySelectorAll('[data-testid=stImage]')]"
        ".filter(e => e.innerText.includes('shifted')).length === 1", timeout=60_000)
    before = shifted.get_attribute("src")
    page.locator("[data-testid='stSlider']").filter(has_text=slider_text).get_by_role("slider").focus()
    for _ in range(steps):
        page.keyboard.press("ArrowRight")
    deadline = time.monotonic() + 30
    while shifted.get_attribute("src") == before:
        assert time.monotonic() < deadline, "the shifted face did not change after moving the slider"
        page.wait_for_timeout(200)


@pytest.fixture
def one_thread(monkeypatch):
    """Train with one thread here (and in jobs started by these tests): results compared across
    processes stay bit-equal, and tests do not crawl when other work shares the cores. A module
    asks for it with `pytestmark = pytest.mark.usefixtures("one_thread")`."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    monkeypatch.setenv("FACELAB_THREADS", "1")
    yield
    torch.set_num_threads(before)
