"""In real Chromium, on the sample workspace: the map (hover, click, box-select and label), the
Label page's counts, and the Shift page (slider, click two points to interpolate)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from facelab import sample
from facelab.data import dataset, labels, preview

from conftest import (
    choose,
    click_point,
    drag,
    empty_place,
    hover_point,
    map_points,
    move_slider_until_face_changes,
    wait_for_app,
)

pytestmark = pytest.mark.browser


@pytest.fixture
def sample_app(home, app_url):
    w = sample.ensure_sample(say=lambda _: None)
    return app_url, w


def test_map_hover_click_box_select_and_label(page, sample_app) -> None:
    url, w = sample_app
    (source,) = {f["source_id"] for f in dataset.faces_table(w)}
    preview.make_preview(w, source, sample.VIDEO)  # as if kept at build time: a click plays the moment
    page.goto(f"{url}/explore")
    wait_for_app(page, 90_000)
    chart, points = map_points(page, "fl_map_box")
    assert points.count() >= 450
    # The invisible chart that had the browser load its chart code early (`warm.chart_code_early`)
    # is gone once the map is out.
    assert page.locator("[data-testid='stSidebar'] [data-testid='stVegaLiteChart']").count() == 0

    hover_point(page, points, 10)
    tooltip_img = page.locator("#vg-tooltip-element img")
    tooltip_img.wait_for(timeout=10_000)
    assert tooltip_img.get_attribute("src").startswith("data:image/jpeg;base64,")

    # Decode anywhere: hover an empty place (the grid cell farthest from every frame) and see the
    # face the model draws there; the face field is drawn under the map. The rest of
    # the test (click, box, label) runs with this layer on.
    page.get_by_text("Faces between the frames").click()
    page.wait_for_function("() => document.querySelectorAll("
                           "'.st-key-fl_map_box g.mark-rect.role-mark path').length > 20", timeout=60_000)
    empty = empty_place(page)
    assert empty["far"] > 8, empty  # no frame under the mouse: the tooltip is the decoded place's
    page.mouse.move(empty["x"], empty["y"])
    tip = page.locator("#vg-tooltip-element")
    tip.get_by_text(re.compile("the model's (face|guess) here")).wait_for(timeout=10_000)
    assert tip.locator("img").get_attribute("src").startswith("data:image/jpeg;base64,")
    field = page.locator("[data-testid='stImage']").filter(has_text="10 × 10 grid over the map")
    field.wait_for(timeout=30_000)
    assert "exactly" in field.inner_text()  # a PCA map: each place is its latent exactly

    heading = page.get_by_text(re.compile(r"^Frame \d+ · \d+\.\d+ s"))
    for i in (300, 200, 400, 10):  # a frame 2 s in or later (points are drawn in time order)
        click_point(page, points, i)
        page.get_by_text("8 nearest neighbours in latent space").wait_for(timeout=30_000)
        wait_for_app(page)
        at = float(re.search(r"· (\d+\.\d+) s", heading.inner_text()).group(1))
        if at >= 2:
            break
    page.get_by_text(f"this frame is at {at:.2f} s").wait_for(timeout=30_000)
    page.wait_for_function("() => { const v = document.querySelector('.st-key-fl_moment video');"
                           f" return v && v.readyState >= 1 && Math.abs(v.currentTime - {int(at)}) < 0.3; }}",
                           timeout=30_000)  # the kept preview, at this frame's second
    assert page.get_by_text("reconstruction", exact=True).is_visible()

    drag(page, chart, (0.25, 0.2), (0.6, 0.8))
    heading = page.get_by_text(re.compile(r"^\d+ frames in the box$"))
    heading.wait_for(timeout=30_000)
    n = int(heading.inner_text().split()[0])
    assert n > 0

    choose(page, "Label them as", "surprise")
    page.get_by_role("button", name=f"Label {n} frames").wait_for()
    page.get_by_role("button", name=f"Label {n} frames").click()
    page.get_by_text(f"Labelled {n} frames as surprise.").wait_for(timeout=30_000)
    assert labels.counts(w)["surprise"] == n

    # Your axes: the sample's stored smile direction against time; every frame is placed on them.
    page.get_by_text("Your axes").click()
    page.get_by_text("x: smile · y: time").wait_for(timeout=30_000)
    page.wait_for_function("() => document.querySelectorAll("
                           "'.st-key-fl_map_box g.mark-symbol.role-mark path').length >= 450", timeout=30_000)
    # ... and so is each cluster's centre (6 clusters: a layer of 6 diamonds over the frames)
    page.wait_for_function("() => [...document.querySelectorAll('.st-key-fl_map_box g.mark-symbol.role-mark')]"
                           ".some(g => g.querySelectorAll('path').length === 6)", timeout=30_000)

    # The timeline under the map: a label's probability over the video; a span dragged on it rings
    # that stretch's frames on the map.
    line = page.locator(".st-key-fl_timeline_box [data-testid='stVegaLiteChart']")
    line.wait_for(timeout=30_000)
    line.scroll_into_view_if_needed()
    drag(page, line, (0.3, 0.5), (0.6, 0.5), steps=8)
    ringed = page.get_by_text(re.compile(r"^\d+ frames from \d+\.\d s to \d+\.\d s are ringed on the map\.$"))
    ringed.wait_for(timeout=30_000)
    n_ringed = int(ringed.inner_text().split()[0])
    assert n_ringed > 0
    page.wait_for_function("() => document.querySelectorAll("
                           f"'.st-key-fl_map_box g.mark-symbol.role-mark path').length >= 450 + {n_ringed}",
                           timeout=30_000)  # the rings are drawn over the frames

    page.locator("[data-testid='stSidebarNav']").get_by_role("link", name="Label").click()
    page.get_by_text("Label counts").wait_for(timeout=30_000)
    metric = page.locator("[data-testid='stMetric']").filter(has_text="surprise")
    metric.wait_for(timeout=30_000)
    assert metric.locator("[data-testid='stMetricValue']").inner_text().strip() == str(n)


def test_shift_slider_and_two_point_interpolation(page, sample_app) -> None:
    url, _ = sample_app
    page.goto(f"{url}/shift")
    wait_for_app(page, 90_000)
    judge = page.locator(".st-key-fl_shift_judge")
    judge.get_by_text("Independent judge").wait_for(timeout=60_000)

    def judged_shifted() -> float:
        return float(re.search(r"shifted (\d\.\d\d)", judge.inner_text()).group(1))

    before = judged_shifted()
    move_slider_until_face_changes(page, "smile (", steps=20)  # 0 -> 2.0 (twice your average smile), the end
    page.get_by_text(re.compile(r"Probe P\(smile\)")).wait_for(timeout=30_000)
    # the independent judge (pixels only) sees the face on screen become a smile
    page.wait_for_function("() => { const e = document.querySelector('.st-key-fl_shift_judge');"
                           " const m = e && e.innerText.match(/shifted (\\d\\.\\d\\d)/);"
                           f" return m && parseFloat(m[1]) > {before} + 0.15; }}", timeout=30_000)
    assert judged_shifted() > before + 0.15  # "mouth" moves less than the plain normal, and only the mouth

    page.get_by_role("tab", name="Interpolate frames").click()
    _, points = map_points(page, "fl_interp_box")
    click_point(page, points, 3)
    page.get_by_text("1 of 2 points picked.").wait_for(timeout=30_000)
    click_point(page, points, 300)
    page.get_by_text(re.compile(r"^frame \d+ → frame \d+, 10 decoded steps")).wait_for(timeout=30_000)
    wait_for_app(page)
    click_point(page, points, 150)  # a third: the path goes on through it
    page.get_by_text(re.compile(r"^frame \d+ → frame \d+ → frame \d+, 10 decoded steps")).wait_for(timeout=30_000)
    page.get_by_role("button", name="Download animation (GIF)").wait_for(timeout=30_000)
    wait_for_app(page)  # a click during a rerun can be lost with the button it pressed
    with page.expect_download() as got:
        page.get_by_role("button", name="Download video (MP4)").click()
    video = Path(got.value.path()).read_bytes()
    assert video[4:8] == b"ftyp" and len(video) > 10_000  # an MP4 of the whole path
