"""In real Chromium: create a workspace, upload the Pexels clip, build, see counts and crops."""

from __future__ import annotations

import re

import pytest

from conftest import wait_for_app
from media import media_file

pytestmark = pytest.mark.browser


def test_upload_build_and_see_contact_sheet(page, app_url: str) -> None:
    page.goto(app_url)
    wait_for_app(page)
    page.get_by_label("Name", exact=True).fill("me")
    page.get_by_role("button", name="Create").click()
    page.get_by_text("No faces yet").wait_for()

    page.locator("[data-testid='stMain'] [data-testid='stFileUploader'] input[type='file']").set_input_files(
        str(media_file("WolfgangLanger_Pexels.mp4"))
    )
    page.get_by_role("button", name="Build dataset").click()
    page.get_by_text(re.compile(r"Added \d+ faces")).wait_for(timeout=120_000)
    added = int(re.search(r"Added (\d+) faces", page.get_by_text(re.compile(r"Added \d+ faces")).inner_text())[1])
    assert added >= 150

    kept = page.locator("[data-testid='stMetric']").filter(has_text="Faces kept")
    assert kept.locator("[data-testid='stMetricValue']").inner_text().strip() == str(added)
    sheet = page.locator("[data-testid='stImage'] img")
    sheet.first.wait_for()
    assert sheet.count() == 48  # a full first page of the contact sheet
    assert page.get_by_text(re.compile(r"Page 1 of \d+")).is_visible()
