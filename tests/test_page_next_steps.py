"""AppTest checks that no page ends in a dead end (issue 13 items 6-10): next-step links, a
confirmation for a new workspace, "Compare runs" before any curve, the PCA map while t-SNE
computes, the Compute-latents prompt gone once latents exist, and the Explore → Label hand-over."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from facelab import sample
from facelab.model import jobs
from facelab.model.models import ModelConfig
from facelab.space import latent
from facelab.space import projection as pj
from facelab.store import workspace as ws
from facelab.ui import state

from builders import blob_images, training_workspace
from conftest import REPO

TIMEOUT = 120


def page(name: str, workspace: str, **session) -> AppTest:
    at = AppTest.from_file(str(REPO / "pages" / f"{name}.py"), default_timeout=TIMEOUT)
    at.session_state[state.WORKSPACE] = workspace
    for k, v in session.items():
        at.session_state[k] = v
    return at.run()


def links(at: AppTest) -> list[str]:
    """The pages the page links to (st.page_link), by URL path."""
    return [e.proto.page for e in at.get("page_link")]


@pytest.fixture
def sample_ws(home: Path) -> ws.Workspace:
    return sample.ensure_sample(say=lambda _: None)


def test_dataset_offers_training_and_train_offers_explore(home: Path, sample_ws: ws.Workspace) -> None:
    training_workspace("fresh", blob_images(30))
    at = page("dataset", "fresh")
    assert not at.exception, at.exception
    assert links(at) == ["train"]  # faces and no run yet: the next step is Train
    at = page("train", "sample")  # its run is done
    assert not at.exception, at.exception
    assert links(at) == ["explore", "label"]
    ws.create("empty")
    assert links(page("train", "empty")) == ["dataset"]


def test_creating_a_workspace_is_confirmed(home: Path) -> None:
    def app() -> None:
        from facelab.ui import state
        from facelab.ui.sidebar import workspace_picker

        workspace_picker()
        state.show_flash()

    at = AppTest.from_function(app, default_timeout=TIMEOUT).run()
    at.text_input(key="fl_ws_new_name").input("alice")
    at.button(key="FormSubmitter:fl_ws_create-Create").click().run()
    shown = [s.value.replace("\\", "") for s in at.success]  # the message is Markdown-escaped
    assert shown == ["Created the workspace alice. Next: upload a video of your face on the Dataset page."]


def test_compare_runs_says_what_it_will_show_before_any_curve(home: Path) -> None:
    w = training_workspace("one", blob_images(30))
    jobs.create_run(w, ModelConfig(image_size=32, latent_dim=4, steps=8))  # queued: no curve yet
    at = page("train", "one")
    assert not at.exception, at.exception
    assert any("start another run" in c.value for c in at.caption)
    assert len(at.get("vega_lite_chart")) == 0, "an empty comparison chart"


def test_the_latents_prompt_goes_once_they_exist(sample_ws: ws.Workspace) -> None:
    latent.latents_path(sample_ws, sample.RUN_ID).unlink()
    at = page("explore", "sample")
    assert any("not encoded" in i.value for i in at.info)
    at.button(key="fl_encode").click().run()
    assert not at.exception, at.exception
    assert not any("not encoded" in i.value for i in at.info), "the prompt stayed above the map"
    assert not at.get("button") or not any(b.key == "fl_encode" for b in at.button)
    assert at.get("vega_lite_chart"), "no map"


def test_tsne_computing_shows_the_pca_map_meanwhile(sample_ws: ws.Workspace, monkeypatch) -> None:
    started = []
    monkeypatch.setattr(pj, "start_projection", lambda *a, **k: started.append(a))  # no worker: it never ends
    real = pj.projection_state
    monkeypatch.setattr(pj, "projection_state", lambda w, r, s: (
        pj.ProjectionState("running", "computing tsne map") if s.is_slow and started else real(w, r, s)))
    at = page("explore", "sample", fl_map_method="tsne")
    assert not at.exception, at.exception
    assert started, "the t-SNE map was not started"
    assert any("Showing the **PCA** map" in i.value and "**t-SNE** map is computed" in i.value for i in at.info)
    assert at.get("vega_lite_chart"), "no map while t-SNE computes"


def test_send_a_box_selection_to_the_label_page(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from facelab.ui import nav

    went: list[str] = []
    monkeypatch.setattr(nav, "go", went.append)  # AppTest of one script has no other page to open

    def app() -> None:
        import streamlit as st

        from facelab.ui.explore import send_to_label

        if st.button("send"):
            send_to_label([5, 7, 9], "box on the Explore map (3 frames)")

    at = AppTest.from_function(app, default_timeout=TIMEOUT).run()
    at.button[0].click().run()
    assert not at.exception, at.exception
    assert at.session_state["fl_label_ids"] == [5, 7, 9]
    assert at.session_state["fl_label_ids_from"] == "box on the Explore map (3 frames)"
    assert went == ["label"]


def test_neighbours_show_time_and_distance_and_open_on_click(sample_ws: ws.Workspace) -> None:
    import base64
    import re

    import cv2
    import numpy as np

    from facelab.ui.explore import FOCUS, HOVER_PX, thumbnails

    at = page("explore", "sample", **{FOCUS: 5})  # as if frame 5 had been opened
    assert not at.exception, at.exception
    assert any(h.value.startswith("Frame 5 ·") for h in at.subheader)
    near = [b for b in at.button if str(b.key).startswith("fl_near_")]
    assert len(near) == 8 and all(re.fullmatch(r"\d+\.\d\d s · \d+\.\d", b.label) for b in near)
    first = int(near[0].key.removeprefix("fl_near_"))
    near[0].click().run()
    assert any(h.value.startswith(f"Frame {first} ·") for h in at.subheader), "the neighbour did not open"
    uri = thumbnails(str(sample_ws.path), "k", (0,))[0]
    jpeg = np.frombuffer(base64.b64decode(uri.split(",", 1)[1]), np.uint8)
    assert cv2.imdecode(jpeg, cv2.IMREAD_COLOR).shape[:2] == (HOVER_PX, HOVER_PX) and HOVER_PX >= 96
    at.text_input(key="fl_map_find").input("smile").run()
    assert not at.exception, at.exception
    assert any(re.match(r"\d+ frames labelled or clustered as", c.value) for c in at.caption)


def test_plain_words_and_one_number_format(sample_ws: ws.Workspace) -> None:
    """Issue 13 item 15: no raw dicts or ISO stamps on screen, one PSNR format, "1 frame"."""
    import re

    from facelab.edits import directions as dr
    from facelab.ui.text import count, db, when

    assert (count(1, "frame"), count(1200, "frame"), db(19.387), db(None)) == ("1 frame", "1,200 frames", "19.4 dB", "–")
    assert when("2026-12-03T07:19:35") == "3 Dec 2026, 07:19"
    smile = dr.load_direction(sample_ws, sample.RUN_ID, "smile")
    assert "{" not in dr.describe(smile) and "frames labelled “smile”" in dr.describe(smile)
    at = page("train", "sample")
    assert not at.exception, at.exception
    runs = at.dataframe[0].value
    assert all(re.fullmatch(r"\d+\.\d dB", v) for v in runs["held-out PSNR"])
    assert not any(re.search(r"\d{4}-\d\d-\d\dT", str(v)) for v in runs["started"])
    at = page("shift", "sample")
    assert not at.exception, at.exception
    shown = [str(v) for df in at.dataframe for v in df.value.to_numpy().ravel()]
    assert shown and not any("{" in v for v in shown), shown
