"""The Label page's grid in real Chromium, on the sample (issue 13, items 1-5): labelling with the
keyboard alone, a shift-click range, how long a click takes to be saved, and a phone's width."""

from __future__ import annotations

import statistics
import time

import pytest

from facelab import sample
from facelab.data import labels

from conftest import FOCUSED_ID, choose, wait_for_app

pytestmark = pytest.mark.browser
CELLS = ".fl-label-grid .cell"
LABEL = "surprise"  # none of the sample's frames carries it


def wait_saved(w, want: set[int], timeout: float = 30) -> float:
    """Poll the database until `LABEL` is on exactly `want`; returns the seconds it took."""
    t0 = time.monotonic()
    while set(labels.faces_with(w, LABEL).tolist()) != want:
        assert time.monotonic() - t0 < timeout, (
            f"stored {sorted(labels.faces_with(w, LABEL).tolist())}, expected {sorted(want)}")
        time.sleep(0.01)
    return time.monotonic() - t0


def open_grid(page, url: str) -> None:
    page.goto(f"{url}/label")
    wait_for_app(page, 90_000)
    page.locator(CELLS).first.wait_for(timeout=60_000)
    wait_for_app(page, 60_000)


def press(page, key: str) -> int | None:
    """Press `key`; returns the id of the cell focused afterwards (it must stay on a cell)."""
    page.keyboard.press(key)
    return page.evaluate(FOCUSED_ID)


def test_label_grid_keyboard_range_speed_and_phone(page, home, app_url) -> None:
    w = sample.ensure_sample(say=lambda _: None)
    page.set_viewport_size({"width": 1440, "height": 900})
    open_grid(page, app_url)
    assert page.get_by_label("Label to apply").input_value() == "smile"  # the sample is about smiles
    choose(page, "Label to apply", LABEL)
    cells = page.locator(CELLS)
    cells.first.filter(has_text=LABEL).wait_for(timeout=30_000)  # the grid has the new label
    assert page.locator(".fl-label-grid .pager .info").first.inner_text().startswith("Page 1 of")

    # Keyboard only: Tab from the Order box into the grid, then arrows, Space and n.
    page.get_by_label("Order").focus()
    for _ in range(6):
        if press(page, "Tab") is not None:
            break
    first = page.evaluate(FOCUSED_ID)
    assert first == int(cells.nth(0).get_attribute("data-id")), "Tab did not reach the grid's first cell"
    chosen: list[int] = []
    t0 = time.monotonic()
    for page_no, moves in ((1, ["ArrowRight"] * 9), (2, ["ArrowDown"] + ["ArrowRight"] * 8)):
        if page_no == 2:
            assert press(page, "n") == chosen[-1], "the focus left its cell on n"
            page.locator(".fl-label-grid .pager .info").first.filter(has_text="Page 2 of").wait_for(timeout=30_000)
            page.wait_for_function(f"() => ![{','.join(map(str, chosen))}].includes(({FOCUSED_ID})())")
        chosen.append(page.evaluate(FOCUSED_ID))
        page.keyboard.press("Space")
        for key in moves:
            chosen.append(press(page, key))
            page.keyboard.press("Space")
    typed = time.monotonic() - t0
    assert len(chosen) == 20 and None not in chosen and len(set(chosen)) == 20, chosen
    saved = wait_saved(w, set(chosen))
    print(f"\nkeyboard: 20 frames over 2 pages in {typed:.1f} s of key presses, all saved {saved:.2f} s later")
    assert page.evaluate(FOCUSED_ID) is not None, "the focus left the grid"

    # Shift-click: a range from the last cell clicked (page 3, untouched: cells 0-7).
    page.locator(".fl-label-grid nav.pager.bottom button.next").click()
    page.locator(".fl-label-grid .pager .info").first.filter(has_text="Page 3 of").wait_for(timeout=30_000)
    ids = [int(cells.nth(i).get_attribute("data-id")) for i in range(48)]
    assert not set(ids) & set(chosen)
    cells.nth(0).click()
    cells.nth(7).click(modifiers=["Shift"])
    wait_saved(w, set(chosen) | set(ids[:8]))

    # Click to saved: one click at a time, the database polled until it has it.
    want, times = set(chosen) | set(ids[:8]), []
    for i in range(10, 30):
        cells.nth(i).click()
        want.add(ids[i])
        times.append(wait_saved(w, want))
        page.wait_for_timeout(200)
    print(f"click to saved: median {statistics.median(times) * 1000:.0f} ms, "
          f"max {max(times) * 1000:.0f} ms over {len(times)} clicks")

    # Chosen but not applied, then another page: Label opens again on the label last applied.
    choose(page, "Label to apply", "sad")
    cells.first.filter(has_text="sad").wait_for(timeout=30_000)
    nav = page.locator("[data-testid='stSidebarNav']")
    nav.get_by_role("link", name="Dataset").click()
    page.get_by_text("Contact sheet").wait_for(timeout=60_000)
    nav.get_by_role("link", name="Label").click()
    cells.first.filter(has_text=LABEL).wait_for(timeout=60_000)
    assert page.get_by_label("Label to apply").input_value() == LABEL

    # A phone: columns fit the width, and a pager below the grid too.
    page.set_viewport_size({"width": 390, "height": 844})
    page.wait_for_timeout(1000)
    columns = page.locator(".fl-label-grid .cells").evaluate(
        "e => getComputedStyle(e).gridTemplateColumns.split(' ').length")
    assert columns >= 3, f"{columns} column(s) at 390 px"
    bottom = page.locator(".fl-label-grid nav.pager.bottom")
    bottom.scroll_into_view_if_needed()
    assert bottom.is_visible() and bottom.locator("button.next").is_visible()
    box = bottom.bounding_box()
    assert box["width"] <= 390, f"the bottom pager is {box['width']} px wide"
    assert page.locator("[data-testid='stException']").count() == 0
