"""In real Chromium: start training from the Train page and watch the loss chart grow."""

from __future__ import annotations

import re
import time

import pytest

from facelab.data import dataset
from facelab.store import workspace as ws

from conftest import choose, wait_for_app
from media import media_file

pytestmark = pytest.mark.browser


def loss_points(page) -> int:
    chart = page.locator("[data-testid='stVegaLiteChart']").first
    return chart.locator("g.mark-symbol path").count()


def test_start_training_and_see_loss_chart_update(page, app_url: str, home) -> None:
    w = ws.create("me")
    dataset.build(w, media_file("WolfgangLanger_Pexels.mp4"))
    page.goto(f"{app_url}/train")
    wait_for_app(page)
    page.get_by_label("Training steps", exact=True).fill("5000")  # cancelled long before the end
    choose(page, "Batch size", "16")  # a metrics row (a chart point) every few seconds
    page.get_by_role("button", name="Start training").click()
    page.get_by_text(re.compile(r"running · step [1-9]")).wait_for(timeout=60_000)
    page.locator("[data-testid='stVegaLiteChart']").first.wait_for()
    deadline = time.monotonic() + 90
    while loss_points(page) < 2:  # two metrics rows, then one more must arrive while we watch
        assert time.monotonic() < deadline, "the loss chart got no points"
        page.wait_for_timeout(500)
    first = loss_points(page)
    deadline = time.monotonic() + 90
    while loss_points(page) <= first:
        assert time.monotonic() < deadline, "the loss chart did not update"
        page.wait_for_timeout(500)
    assert loss_points(page) > first >= 2
    page.get_by_role("button", name="Cancel").click()
    page.get_by_text(re.compile(r"cancelled · step")).wait_for(timeout=30_000)
