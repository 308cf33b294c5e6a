"""Names a person typed or imported are shown as text on every page, never run as Markdown: a
label named like an image must not make the browser fetch it, one named like a link must not
become a link (issue 12, item 10)."""

from __future__ import annotations

import pytest

from facelab import sample
from facelab.data import labels as lb
from facelab.edits import directions as dr
from facelab.space import clusters as cl

from conftest import choose, click_point, free_port, map_points, wait_for_app

pytestmark = pytest.mark.browser


def test_user_names_are_shown_literally_on_every_page(page, home, app_url) -> None:
    trap = free_port()  # nothing listens there: only a request to it would tell
    host = f"127.0.0.1:{trap}"
    image, link, html = f"![](http://{host}/l)", f"[c](http://{host}/x)", f"<img src=//{host}/i>"
    bare, math = f"http://{host}/u", "$x^2$ **b**"
    w = sample.ensure_sample(say=lambda _: None)
    ids = w.active_face_ids()
    for i, name in enumerate((image, link, html, bare, math)):
        lb.set_labels(w, ids[i * 20:(i + 1) * 20], name)
    # A direction named after a label: its slider is labelled with the name (Shift, Webcam).
    dr.save_direction(w, sample.RUN_ID, dr.fit_label_direction(w, sample.RUN_ID, image, "mean_diff"))
    for c in range(6):  # the Explore page's default clustering (K-means, k = 6)
        cl.set_cluster_name(w, sample.RUN_ID, "kmeans", 6, c, f"{c} ![](http://{host}/c) [c](http://{host}/y)")
    with w.connect(write=True) as c:
        c.execute("UPDATE runs SET name = ?", (f"run [c](http://{host}/r)",))
        c.execute("UPDATE sources SET name = ?", (f"![](http://{host}/s).mp4",))

    trapped: list[str] = []
    page.on("request", lambda r: trapped.append(r.url) if host in r.url else None)

    def no_markup(where: str) -> None:
        assert page.locator(f"a[href*='{host}'], img[src*='{host}']").count() == 0, f"{where}: a name became markup"
        assert page.locator("[data-testid='stException']").count() == 0, f"{where} shows an error"

    def shows(selector: str, text: str) -> None:
        """Wait until an element of `selector` shows `text` as typed (md() adds invisible word joiners)."""
        page.wait_for_function(
            "([sel, text]) => [...document.querySelectorAll(sel)]"
            ".some(e => e.innerText.replaceAll('\\u2060', '').includes(text))", arg=[selector, text], timeout=60_000)

    def visit(path: str, marker: str) -> None:
        page.goto(f"{app_url}/{path}")
        wait_for_app(page, 90_000)
        page.locator(marker).first.wait_for(timeout=120_000)  # slow under a shared 2-core load
        wait_for_app(page, 90_000)
        no_markup(path)

    visit("label", "text=Label counts")
    for name in (image, link, html, bare, math):  # the counts' labels show every name as typed
        shows("[data-testid='stMetricLabel']", name)
    choose(page, "Label to apply", image)
    page.locator(".fl-label-grid .cell .mark").filter(has_text=image).first.wait_for()  # as typed
    no_markup("label, a label chosen")

    visit("explore", ".st-key-fl_map_box g.mark-symbol.role-mark path")
    _, points = map_points(page, "fl_map_box")
    click_point(page, points, 0)
    shows("h3", f"![](http://{host}/c) [c](http://{host}/y)")
    no_markup("explore, a frame picked")

    visit("shift", "text=shifted")
    shows("[data-testid='stSlider']", f"{image} (0 = as is, 1 = your average {image})")
    visit("train", "text=All runs")
    visit("dataset", "text=Contact sheet")
    visit("webcam", "iframe[title*='streamlit_webrtc']")
    shows("[data-testid='stSlider']", f"{image} (0 = as is, 1 = your average {image})")
    no_markup("webcam")
    page.wait_for_timeout(500)  # any image a name asked for would have been requested by now
    assert not trapped, f"names made the browser fetch: {trapped[:5]}"
