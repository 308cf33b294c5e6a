"""Every page opens on the sample workspace in real Chromium without an error; the README's
screenshots come from here: `make screenshots` writes them to docs/screenshots/ (a plain run
keeps them in its temporary folder, so running the suite leaves the working tree as it was)."""

from __future__ import annotations

import os

import pytest

from facelab import sample

from conftest import REPO, wait_for_app

pytestmark = pytest.mark.browser
SHOTS = REPO / "docs" / "screenshots"
SHOTS_ENV = "FACELAB_SCREENSHOTS"  # set (to anything): refresh the README's screenshots
PAGES = {  # url path → what shows the page is really there (text, or a CSS selector)
    "dataset": "text=Contact sheet",
    "train": "text=All runs",
    "explore": ".st-key-fl_map_box g.mark-symbol.role-mark path",
    "label": "text=Label counts",
    "shift": "text=shifted",
    "webcam": "iframe[title*='streamlit_webrtc']",
}


def test_every_page_renders_on_the_sample(page, home, app_url, tmp_path) -> None:
    sample.ensure_sample(say=lambda _: None)
    shots = SHOTS if os.environ.get(SHOTS_ENV) else tmp_path
    shots.mkdir(parents=True, exist_ok=True)
    for path, marker in PAGES.items():
        page.goto(f"{app_url}/{path}")
        wait_for_app(page, 90_000)
        page.locator(marker).first.wait_for(timeout=60_000)
        wait_for_app(page, 90_000)
        assert page.locator("[data-testid='stException']").count() == 0, f"{path} shows an error"
        page.wait_for_function(  # every image on screen has arrived
            "() => [...document.querySelectorAll('[data-testid=stMain] img')]"
            ".every(i => i.complete && i.naturalWidth > 0)", timeout=30_000)
        page.wait_for_timeout(500)  # let charts finish drawing
        page.screenshot(path=str(shots / f"{path}.png"))
    # This Chromium has no camera: the webcam page (the last one opened) says so in plain words
    # and offers a photo instead of the browser's "NotFoundError: Requested device not found".
    page.get_by_text("No camera was found").wait_for(timeout=30_000)
    assert page.get_by_text("No camera? Upload a photo of your face").count() == 1
