"""AppTest checks of the Train page: start a run from the form, watch it finish, evaluate it."""

from __future__ import annotations

import time
from pathlib import Path

from streamlit.testing.v1 import AppTest

from facelab.data import dataset
from facelab.model import jobs
from facelab.store import workspace as ws
from facelab.ui import state

from conftest import REPO
from media import media_file

TIMEOUT = 120


def train_page(name: str) -> AppTest:
    at = AppTest.from_file(str(REPO / "pages" / "train.py"), default_timeout=TIMEOUT)
    at.session_state[state.WORKSPACE] = name
    return at.run()


def wait_done(w: ws.Workspace, run_id: str, timeout: float = 180) -> jobs.RunStatus:
    deadline = time.monotonic() + timeout
    while (s := jobs.status(w, run_id)).active:
        assert time.monotonic() < deadline, f"run still {s.state} after {timeout} s"
        time.sleep(0.5)
    return s


def test_needs_faces_first(home: Path) -> None:
    ws.create("empty")
    at = train_page("empty")
    assert not at.exception
    assert any("no faces yet" in i.value for i in at.info)


def test_start_from_form_then_evaluate(home: Path) -> None:
    w = ws.create("t")
    dataset.build(w, media_file("single_face.mp4"))
    at = train_page("t")
    assert not at.exception
    at.number_input(key="fl_steps").set_value(20)
    at.selectbox(key="fl_latent").select(8)
    at.button(key="FormSubmitter:fl_new_run-Start training").click().run()
    assert not at.exception, at.exception
    run_id = at.session_state[state.RUN]
    s = wait_done(w, run_id)
    assert s.state == "done", s.error
    assert s.metrics["step"] == 20 and s.config.latent_dim == 8

    at = train_page("t")
    assert not at.exception
    labels = {m.label: m.value for m in at.metric}
    assert labels["Held-out PSNR"].endswith("dB") and float(labels["Held-out PSNR"].split()[0]) > 5
    assert [t.label for t in at.tabs] == ["Reconstructions", "Random samples", "Three-point check", "Traversals",
                                         "Compression curve"]
    assert at.dataframe[0].value["state"].tolist() == ["done"]


def test_cancel_and_resume_buttons(home: Path) -> None:
    w = ws.create("c")
    dataset.build(w, media_file("single_face.mp4"))
    from facelab.model.models import ModelConfig

    run_id = jobs.create_run(w, ModelConfig(steps=100_000, latent_dim=4))
    jobs.start(w, run_id)
    at = train_page("c")
    at.button(key="fl_cancel").click().run()
    s = wait_done(w, run_id, timeout=60)
    assert s.state == "cancelled"
    at = train_page("c")
    at.button(key="fl_resume").click().run()
    assert jobs.status(w, run_id).state in ("running", "done")
    at.checkbox(key=f"fl_delete_run_sure_{run_id}").check().run()  # asked first (issue 13)
    at.button(key="fl_delete_run").click().run()
    assert jobs.list_runs(w) == []
    assert not w.run_dir(run_id).exists()
