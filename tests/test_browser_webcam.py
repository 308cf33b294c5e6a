"""The Webcam page in real Chromium with a fake camera playing a real face clip.

The Streamlit server, its health check and Chromium must all be inside a network namespace
(see tests/fakecam.py), so that part runs in a child Python process (`ip netns exec NS python
tests/test_browser_webcam.py HOME Y4M OUT`, the `__main__` block below) that prints what it saw
as JSON and saves screenshots; the test prepares the workspace before and asserts on the results after.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from conftest import ARTIFACTS, CHROMIUM, LOCAL_PREFIXES, streamlit_server, wait_for_app
from fakecam import fake_camera_args, namespaces_possible, network_namespace, start_camera, write_y4m, y4m_frames
from media import media_file

pytestmark = pytest.mark.browser
GREEN_RGB = (80, 220, 80)  # facelab.live.BOX_COLOUR (BGR (80, 220, 80)) as RGB


def green_pixels(rgb: np.ndarray, tol: int = 45) -> int:
    """Pixels near the face box's colour (video coding blurs thin lines: a loose match)."""
    d = np.abs(rgb[..., :3].astype(int) - np.array(GREEN_RGB)).max(axis=-1)
    return int((d <= tol).sum())


def test_webcam_streams_processed_frames_and_places_the_face_on_the_map(home, tmp_path) -> None:
    if why := namespaces_possible():
        pytest.skip(f"the webcam test needs a network namespace: {why}")
    from facelab import sample
    from facelab.data import dataset

    w = sample.ensure_sample(say=lambda _: None)  # crops, an imported β-VAE, labels, the smile direction
    y4m = write_y4m(media_file("WolfgangLanger_Pexels.mp4"), tmp_path / "face.y4m")
    ARTIFACTS.mkdir(exist_ok=True)
    with network_namespace("fl_cam") as inside:
        child = subprocess.run(
            [*inside, sys.executable, __file__, str(home), str(y4m), str(ARTIFACTS)],
            capture_output=True, text=True, timeout=300,
        )
    assert child.returncode == 0, f"the browser script failed:\n{child.stdout[-3000:]}\n{child.stderr[-3000:]}"
    seen = json.loads(child.stdout.strip().splitlines()[-1])

    assert not seen["outside"], f"the page sent requests off this machine: {seen['outside'][:5]}"
    assert seen["errors"] == [], f"the page showed errors: {seen['errors']}"
    # processed frames arrive and keep coming
    assert seen["video_width"] > 0 and seen["video_height"] > 0
    assert seen["times"][-1] > seen["times"][0], f"the output video did not advance: {seen['times']}"
    # the face box (drawn only by the pipeline) is in the output video, not in the camera's frames
    shot = cv2.cvtColor(cv2.imread(str(ARTIFACTS / "webcam-video.png")), cv2.COLOR_BGR2RGB)
    source_green = max(green_pixels(cv2.cvtColor(f, cv2.COLOR_BGR2RGB)) for f in y4m_frames(y4m, 10))
    assert source_green < 20, "the camera's own frames should not hold the box colour"
    assert green_pixels(shot) > 100, "no face box in the processed video"
    # the map shows the live face as a ring with a predicted expression, and the point moves
    assert seen["rings"] >= 1
    live = [t.split(" · ") for t in seen["captions"] if t.startswith("Predicted expression:")]
    assert live, f"no live caption: {seen['captions']}"
    names = {parts[0].removeprefix("Predicted expression:").strip() for parts in live}
    assert names and not names & {"", "no cluster"}, f"no predicted expression: {live}"
    places = [parts[1] for parts in live]
    assert all(p.startswith("map position (") for p in places)
    assert len(set(places)) >= 2, f"the live point did not move across {len(places)} reads: {live}"
    # the sample's own face is familiar to its model: no "trained on another face" note
    assert seen["unfamiliar_notes"] == 0
    # the sliders sit beside the video (right of it, level with it), not below it
    v, s = seen["video_box"], seen["slider_box"]
    assert s["x"] >= v["x"] + v["width"], f"the slider is not right of the video: {s} {v}"
    assert s["y"] < v["y"] + v["height"] and s["y"] + s["height"] > v["y"], f"not level with the video: {s} {v}"
    # a slider moved without error and frames kept coming after it
    assert seen["slider_value"] == "2.00"
    assert seen["times_after_slider"][-1] > seen["times_after_slider"][0]
    # The snapshot fallback (st.camera_input) is not driven here: while the live stream holds the
    # fake camera, its "Take Photo" button sometimes never became clickable (2 of ~6 runs). Its
    # processing is tested in test_webcam_support.py (process_snapshot).
    # "Record to dataset": a few seconds of camera became crops of a new source
    assert seen.get("recorded")
    # ...and the page stays whole after it (it once went blank: a map redraw raced the rerun)
    assert seen.get("whole_after_add"), "no map with the live face after adding the recording"
    assert not [e for e in seen["console_errors"] if "setIn" in e or "delta path" in e], seen["console_errors"]
    recorded = [f for f in dataset.faces_table(w) if f["source"].startswith("webcam recording ")]
    assert len(recorded) >= 5, f"only {len(recorded)} crops came from the recording"


# --- the browser part: runs inside the namespace, in its own process ----------------------
def drive_browser(url: str, y4m: str, out: Path) -> dict:
    from playwright.sync_api import sync_playwright

    seen: dict = {"outside": [], "errors": [], "captions": [], "console_errors": []}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=fake_camera_args(y4m))
        page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
        page.set_default_timeout(30_000)
        page.on("request", lambda r: None if r.url.startswith(LOCAL_PREFIXES) else seen["outside"].append(r.url))
        # On a failure the traceback alone does not say why the page went blank: keep the browser's side.
        page.on("console", lambda m: (print(f"console {m.type}: {m.text[:300]}", file=sys.stderr),
                                      seen["console_errors"].append(m.text[:300])) if m.type == "error" else None)
        page.on("crash", lambda _: print("the page crashed", file=sys.stderr))
        try:
            page.goto(f"{url}/webcam")
            wait_for_app(page, 90_000)
            webrtc, video = start_camera(page)
            seen["video_width"], seen["video_height"] = video.evaluate("v => [v.videoWidth, v.videoHeight]")
            seen["times"] = []
            for _ in range(3):
                seen["times"].append(video.evaluate("v => v.currentTime"))
                page.wait_for_timeout(500)
            video.screenshot(path=str(out / "webcam-video.png"))

            text = page.locator(".st-key-fl_webcam_live_text")
            page.get_by_text("Predicted expression:").wait_for(timeout=30_000)
            # The fragment redraws every 0.5 s. A busy CI machine once showed one position for 8
            # reads (5.6 s), so read on, up to 30 reads, until the point has moved.
            places: set[str] = set()
            for i in range(30):
                caption = text.inner_text().strip()
                seen["captions"].append(caption)
                places.add(caption.split(" · ")[1] if caption.count(" · ") >= 2 else caption)
                if i >= 7 and len(places) >= 2:
                    break
                page.wait_for_timeout(700)
            seen["rings"] = page.locator(".st-key-fl_webcam_map_box path[stroke='#d62728']").count()

            smile = page.locator("[data-testid='stSlider']").filter(has_text="smile (")
            seen["video_box"], seen["slider_box"] = video.bounding_box(), smile.bounding_box()
            seen["unfamiliar_notes"] = page.get_by_text("This model was trained on another face").count()
            smile.get_by_role("slider").focus()
            for _ in range(20):
                page.keyboard.press("ArrowRight")
            page.wait_for_timeout(1500)
            seen["slider_value"] = smile.locator("[data-testid='stSliderThumbValue']").inner_text().strip()
            seen["times_after_slider"] = []
            for _ in range(3):
                seen["times_after_slider"].append(video.evaluate("v => v.currentTime"))
                page.wait_for_timeout(500)
            video.screenshot(path=str(out / "webcam-video-shifted.png"))
            page.screenshot(path=str(out / "webcam-page-live.png"))

            page.get_by_text("Record to dataset").click()
            page.get_by_text("Record while the camera runs").click()
            add = page.get_by_role("button", name=re.compile(r"^Add [1-9]\d+ recorded frames to the dataset$"))
            add.wait_for(timeout=60_000)  # a busy machine redraws this panel seldom
            add.click()
            page.get_by_text(re.compile(r"^webcam recording .*: kept \d+ of \d+ sampled frames")).wait_for(timeout=60_000)
            seen["recorded"] = True
            # That full rerun keeps the page whole: the map is redrawn (not the faded one left from before
            # the rerun) and shows the live face again.
            ring = page.locator(".st-key-fl_webcam_map_box [data-testid='stElementContainer']"
                                ":not([data-stale='true']) path[stroke='#d62728']")
            ring.first.wait_for(timeout=60_000)
            page.wait_for_timeout(2000)  # a few more redraws of the map, which once blanked the page
            ring.first.wait_for(timeout=30_000)
            seen["whole_after_add"] = True
        finally:
            seen["errors"] = [e.inner_text()[:300] for e in page.locator("[data-testid='stException']").all()]
            page.screenshot(path=str(out / "webcam-page.png"), full_page=True)
            browser.close()
    return seen


def main(home: str, y4m: str, out: str) -> None:
    """In the namespace: the app (whose health check must come from inside it too) and Chromium."""
    with streamlit_server(Path(home)) as url:
        print(json.dumps(drive_browser(url, y4m, Path(out))))


if __name__ == "__main__":
    main(*sys.argv[1:4])


def test_snapshot_fallback_without_webrtc(pw, home, tmp_path) -> None:
    """No WebRTC (so no namespace): the snapshot camera takes a still of the fake camera and the
    page shows it boxed, through the model, with a predicted expression."""
    from facelab import sample

    sample.ensure_sample(say=lambda _: None)
    y4m = write_y4m(media_file("WolfgangLanger_Pexels.mp4"), tmp_path / "face.y4m", frames=30)
    outside: list[str] = []
    with streamlit_server(home) as url:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=fake_camera_args(y4m))
        page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
        page.on("request", lambda r: None if r.url.startswith(LOCAL_PREFIXES) else outside.append(r.url))
        try:
            page.goto(f"{url}/webcam")
            wait_for_app(page, 90_000)
            page.get_by_text("No live video? Take a snapshot instead").click()
            page.get_by_text("Open the snapshot camera").click()
            take = page.get_by_role("button", name=re.compile("Take photo", re.I))
            take.wait_for(timeout=30_000)
            playing = ("() => [...document.querySelectorAll('[data-testid=stCameraInput] video')]"
                       ".some(v => v.videoWidth > 0 && v.currentTime > 0.2)")
            try:
                page.wait_for_function(playing, timeout=60_000)
            except PlaywrightTimeout:  # the fake camera did not start (twice in CI, under a full suite): once more
                opener = page.get_by_text("Open the snapshot camera")
                opener.click()
                wait_for_app(page, 60_000)
                opener.click()
                take.wait_for(timeout=30_000)
                page.wait_for_function(playing, timeout=90_000)
            take.click()
            result = page.locator("[data-testid='stImage']").filter(has_text="Predicted expression:")
            result.wait_for(timeout=60_000)
            caption = result.inner_text().strip()
            assert page.locator("[data-testid='stException']").count() == 0
            src = result.locator("img").get_attribute("src")  # the processed still, as the server sent it
            body = page.request.get(src if src.startswith("http") else url + src).body()
            (ARTIFACTS / "webcam-snapshot.img").write_bytes(body)
        finally:
            page.screenshot(path=str(ARTIFACTS / "webcam-snapshot-page.png"), full_page=True)
            browser.close()
    assert not outside, f"the page sent requests off this machine: {outside[:5]}"
    assert re.fullmatch(r"Predicted expression: \S.*", caption), caption
    still = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR)
    assert green_pixels(cv2.cvtColor(still, cv2.COLOR_BGR2RGB)) > 30, "no face box on the snapshot"
