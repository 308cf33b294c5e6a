"""Browser timings on the sample workspace, in real Chromium against a real `streamlit run`:

- Explore: from navigation to the map's points drawn (target ≤ 3 s), cold and warm (caches filled);
- Shift: from a slider key press to the new shifted face shown (target ≤ 300 ms);
- Explore on a large workspace (`--large N`, default 15,000 crops: the clip's frames, jittered,
  encoded by the sample's model): first visit (map computed) and later visits, to the map drawn,
  and a click on a point to its face shown.
Baseline measured in the same run: a page with no chart (Dataset) from navigation to drawn.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "benchmarks"))

from conftest import CHROMIUM, CHROMIUM_ARGS, streamlit_server, wait_for_app  # noqa: E402


def timed_load(page, url: str, selector: str) -> float:
    t = time.perf_counter()
    page.goto(url)
    page.locator(selector).first.wait_for(timeout=120_000)
    return time.perf_counter() - t


def large_explore(n: int, repeats: int) -> dict:
    """Explore timings on a workspace of n crops, in its own home and server."""
    from playwright.sync_api import sync_playwright

    from explore_speed import fake_workspace, real_crops
    from facelab import latent, transfer
    from facelab.sample import MODEL_DIR, RUN_ID

    w, home = fake_workspace(real_crops(n))  # its random-weight model stays unregistered
    transfer.import_run(w, MODEL_DIR, RUN_ID)
    latent.encode_run(w, RUN_ID)
    # Vega draws a map this large on a canvas, so "drawn" is the canvas (or SVG points) showing.
    drawn_map = ".st-key-fl_map_box canvas, .st-key-fl_map_box g.mark-symbol.role-mark path"
    with streamlit_server(home) as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        first = timed_load(page, f"{url}/explore", drawn_map)
        later = [timed_load(page, f"{url}/explore", drawn_map) for _ in range(repeats)]
        wait_for_app(page, 120_000)
        box = page.locator(".st-key-fl_map_box [data-testid='stVegaLiteChart']").bounding_box()
        clicks = []
        # Points cannot be located on a canvas: click along a diagonal until one lands on a point.
        for fx in [0.1 + 0.02 * i for i in range(40)]:
            if len(clicks) == repeats:
                break
            t = time.perf_counter()
            page.mouse.click(box["x"] + box["width"] * fx * 0.85, box["y"] + box["height"] * fx)
            shown = page.get_by_text("nearest neighbours in latent space").first
            try:
                shown.wait_for(timeout=15_000)
            except Exception:
                continue  # missed: empty background
            wait_for_app(page, 120_000)
            clicks.append(time.perf_counter() - t)
            page.goto(f"{url}/explore")
            page.locator(drawn_map).first.wait_for(timeout=120_000)
            wait_for_app(page, 120_000)
        drawn = "canvas" if page.locator(".st-key-fl_map_box canvas").count() else "svg"
        browser.close()
    return {"n": n, "drawn": drawn, "first": first, "later": statistics.median(later),
            "click": statistics.median(clicks) if clicks else float("nan")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--large", type=int, default=15_000, help="crops in the large workspace (0: skip it)")
    args = ap.parse_args()
    import os

    from playwright.sync_api import sync_playwright

    home = Path(tempfile.mkdtemp(prefix="facelab-bench-"))
    os.environ["FACELAB_HOME"] = str(home)
    from facelab import sample

    sample.ensure_sample(say=lambda _: None)
    with streamlit_server(home) as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        base = [timed_load(page, f"{url}/dataset", "text=Contact sheet") for _ in range(args.repeats)]
        cold = timed_load(page, f"{url}/explore", ".st-key-fl_map_box g.mark-symbol.role-mark path")
        warm = [timed_load(page, f"{url}/explore", ".st-key-fl_map_box g.mark-symbol.role-mark path")
                for _ in range(args.repeats)]
        points = page.locator(".st-key-fl_map_box g.mark-symbol.role-mark path").count()

        page.goto(f"{url}/shift")
        wait_for_app(page, 120_000)
        shifted = page.locator("[data-testid='stImage']").filter(has_text="shifted").locator("img")
        shifted.wait_for(timeout=120_000)
        slider = page.locator("[data-testid='stSlider']").filter(has_text="smile (α").get_by_role("slider")
        slider.focus()
        updates = []
        for _ in range(args.repeats * 2):
            before = shifted.get_attribute("src")
            t = time.perf_counter()
            page.keyboard.press("ArrowRight")
            while shifted.get_attribute("src") == before:
                page.wait_for_timeout(5)
            updates.append(time.perf_counter() - t)
        browser.close()

    print(f"sample workspace: {points} points on the map; Chromium headless, 2 cores")
    print(f"{'measure':<44}{'median':>9}{'target':>10}")
    print(f"{'baseline: Dataset page drawn (no chart)':<44}{statistics.median(base):>8.2f}s")
    print(f"{'Explore map drawn, first visit (cold)':<44}{cold:>8.2f}s{'≤ 3 s':>10}")
    print(f"{'Explore map drawn, later visits':<44}{statistics.median(warm):>8.2f}s{'≤ 3 s':>10}")
    print(f"{'ratio later visits / baseline':<44}{statistics.median(warm) / statistics.median(base):>8.2f}x")
    print(f"{'Shift slider press → new face shown':<44}{statistics.median(updates) * 1000:>7.0f}ms"
          f"{'≤ 300 ms':>10}   (max {max(updates) * 1000:.0f} ms)")
    if args.large:
        big = large_explore(args.large, args.repeats)
        print(f"large workspace: {big['n']:,} crops, drawn on {big['drawn']}")
        print(f"{'Explore map drawn, first visit (map made)':<44}{big['first']:>8.2f}s")
        print(f"{'Explore map drawn, later visits':<44}{big['later']:>8.2f}s{'≤ 3 s':>10}")
        print(f"{'ratio later visits / baseline':<44}{big['later'] / statistics.median(base):>8.2f}x")
        print(f"{'click a point → its face and neighbours':<44}{big['click']:>8.2f}s")


if __name__ == "__main__":
    main()
