"""AppTest checks of the Explore, Label and Shift pages on the sample workspace."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from facelab import sample
from facelab.data import labels
from facelab.edits import directions
from facelab.model import jobs
from facelab.space import clusters, latent
from facelab.store import workspace as ws
from facelab.ui import state

from conftest import REPO

TIMEOUT = 120


@pytest.fixture
def w(home: Path) -> ws.Workspace:
    return sample.ensure_sample(say=lambda _: None)


def page(name: str, **session) -> AppTest:
    at = AppTest.from_file(str(REPO / "pages" / f"{name}.py"), default_timeout=TIMEOUT)
    at.session_state[state.WORKSPACE] = "sample"
    for k, v in session.items():
        at.session_state[k] = v
    return at.run()


def test_explore_map_clusters_and_naming(w: ws.Workspace) -> None:
    at = page("explore")
    assert not at.exception, at.exception
    names = [t for t in at.text_input if t.key and t.key.startswith("fl_cname_")]
    assert len(names) == 6  # k = 6 by default: one name box per cluster
    names[0].input("laughing").run()
    assert not at.exception
    assert "laughing" in clusters.cluster_names(w, sample.RUN_ID, "kmeans", 6).values()
    at.toggle(key="fl_k_help").set_value(True).run()
    assert any("BIC" in c.value and "k = " in c.value for c in at.caption) and at.button(key="fl_k_use")


def test_explore_offers_to_compute_missing_latents(w: ws.Workspace) -> None:
    latent.latents_path(w, sample.RUN_ID).unlink()
    at = page("explore")
    assert any("not encoded" in i.value for i in at.info)
    at.button(key="fl_encode").click().run()
    assert not at.exception
    assert latent.load_latents(w, sample.RUN_ID) is not None


def test_explore_needs_a_trained_model(home: Path) -> None:
    ws.create("sample")
    at = page("explore")
    assert any("No trained model yet" in i.value for i in at.info)


def grid(at: AppTest) -> dict:
    """What the Label page's grid component was given to draw (AppTest sees it as unknown)."""
    return json.loads(at.get("bidi_component")[0].proto.json)


def click(at: AppTest, *events: dict, mount: str = "test") -> AppTest:
    """Send the grid's events as the browser does (every one not yet acknowledged) and rerun."""
    at.session_state["fl_label_grid"] = {"events": {"mount": mount, "list": list(events)}}
    return at.run()


def test_label_toggle_undo_and_bad_names(w: ws.Workspace) -> None:
    at = page("label")
    assert not at.exception
    at.selectbox(key="fl_label_current").select("angry").run()
    data = grid(at)
    assert data["label"] == "angry" and len(data["cells"]) == 48 and not any(c["on"] for c in data["cells"])
    first = data["cells"][0]["id"]
    click(at, {"seq": 1, "label": "angry", "ids": [first], "on": True})
    assert not at.exception, at.exception
    assert labels.counts(w)["angry"] == 1
    assert grid(at)["cells"][0]["on"] and grid(at)["ack"] == {"test": 1}
    click(at, {"seq": 1, "label": "angry", "ids": [first], "on": True})  # sent again: applied once only
    at.button(key="fl_undo_btn").click().run()
    assert labels.counts(w)["angry"] == 0
    click(at, {"seq": 1, "label": "angry", "ids": [first], "on": True}, {"seq": 2, "page": 1})
    assert labels.counts(w)["angry"] == 0, "an event already applied was applied again after Undo"
    assert grid(at)["page"] == 1
    for bad in ["", "!!!", "x" * 40]:
        at.text_input(key="fl_label_new").input(bad)
        at.button(key="fl_label_add").click().run()
        assert at.error, f"{bad!r} should be refused"
    assert len(labels.label_names(w)) == 5


def test_label_page_opens_on_smile_then_on_the_last_label_applied(w: ws.Workspace) -> None:
    at = page("label")
    assert at.selectbox(key="fl_label_current").value == "smile" and grid(at)["label"] == "smile"
    at.selectbox(key="fl_label_current").select("neutral").run()
    assert labels.counts(w)["neutral"] == 20
    click(at, {"seq": 1, "label": "neutral", "ids": [grid(at)["cells"][0]["id"]], "on": True})
    assert labels.counts(w)["neutral"] == 21
    assert page("label").selectbox(key="fl_label_current").value == "neutral", "a new session forgot it"
    # This session's last label comes first (AppTest keeps a box's value across pages, so the
    # browser test checks that the page reopens on it after a visit to another page).
    assert page("label", fl_label_last="sad").selectbox(key="fl_label_current").value == "sad"


def test_label_page_shows_only_the_frames_explore_sent(w: ws.Workspace) -> None:
    at = page("label", fl_label_ids=[5, 7, 9], fl_label_ids_from="box on the [map](http://x/y)")
    assert [c["id"] for c in grid(at)["cells"]] == [5, 7, 9]
    shown = [m.value for m in at.markdown if m.value.startswith("Showing 3 frames from")]
    assert shown and "](" not in shown[0], shown  # the source is shown as text, not as a link
    at.button(key="fl_label_show_all").click().run()
    assert "fl_label_ids" not in at.session_state and "fl_label_ids_from" not in at.session_state
    assert len(grid(at)["cells"]) == 48


def test_label_page_sorts_by_uncertainty_and_shows_insight(w: ws.Workspace) -> None:
    at = page("label")
    at.selectbox(key="fl_label_order").select_index(1).run()
    assert not at.exception
    insight = at.dataframe[0].value
    smile = insight.loc[insight["label"] == "smile"].iloc[0]
    assert smile["probe ROC-AUC"] > 0.9  # smiles are linearly separable in the sample's latent space


def test_shift_slider_probe_and_too_few_examples(w: ws.Workspace) -> None:
    at = page("shift", **{state.RUN: sample.RUN_ID})
    assert not at.exception, at.exception
    at.slider(key=f"fl_alpha_{sample.RUN_ID}_smile").set_value(2.0).run()
    probe = [c.value for c in at.caption if c.value.startswith("Probe P(smile)")]
    assert probe, "the shift's effect on the smile probe is shown"
    before, after = (float(x) for x in probe[0].split("Probe P(smile) ")[1].split(" (")[0].split(" → "))
    assert after > before
    assert at.toggle(key="fl_shift_detail").value, "detail-preserving by default"
    at.toggle(key="fl_shift_detail").set_value(False).run()
    assert not at.exception, at.exception

    labels.set_labels(w, [1, 2, 3], "angry")
    at.run()
    at.selectbox(key="fl_dir_label").select("angry").run()
    at.button(key="fl_dir_fit").click().run()
    assert any("more" in e.value for e in at.error), [e.value for e in at.error]
    assert "angry" not in directions.load_directions(w, sample.RUN_ID)


def test_shift_page_uses_the_default_method_the_unit_and_the_sharp_crop(
        w: ws.Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    """The page learns a direction with the default ("mouth") method, labels its slider in the
    unit a person reads, and draws the shift on the frame's 128-px crop."""
    from facelab.data import dataset

    shown = []
    real = dataset.sharp_faces

    def spy(workspace, ids):
        out = real(workspace, ids)
        shown.append(out)
        return out

    monkeypatch.setattr(dataset, "sharp_faces", spy)
    at = page("shift", **{state.RUN: sample.RUN_ID})
    assert not at.exception, at.exception
    assert shown and shown[0].shape == (1, dataset.SHARP_SIZE, dataset.SHARP_SIZE, 3)
    assert at.selectbox(key="fl_dir_method").value == directions.DEFAULT_METHOD == "mouth"
    at.selectbox(key="fl_dir_label").select("smile").run()
    at.button(key="fl_dir_fit").click().run()
    assert not at.exception, at.exception
    smile = directions.load_direction(w, sample.RUN_ID, "smile")
    assert smile.kind == "mouth" and smile.label_mean is not None
    slider = at.slider(key=f"fl_alpha_{sample.RUN_ID}_smile")
    assert "1 = your average smile" in slider.label.replace("\\", "") and slider.max == 2.0


def test_detail_preserving_faces_with_the_sample_model(w: ws.Workspace) -> None:
    """With a real decoder: no move shows the original crop exactly, a move changes it, and an
    interpolation between two real frames starts and ends on them exactly."""
    from facelab.edits import edit
    from facelab.edits.directions import load_direction
    from facelab.model.models import load_codec
    from facelab.ui.shift import slider_edit

    codec = load_codec(w.run_dir(sample.RUN_ID))
    ids, mu = latent.active_latents(w, latent.load_latents(w, sample.RUN_ID))
    faces = w.faces()
    smile = load_direction(w, sample.RUN_ID, "smile")
    bounds = edit.LatentBounds.from_latents(mu)
    a, b = int(ids[0]), int(ids[-1])
    z0 = mu[0]
    z, recon, shown = slider_edit(codec, faces[a], z0, {"smile": smile}, {"smile": 0.0}, None, 0.0, bounds)
    np.testing.assert_array_equal(z, z0)
    np.testing.assert_array_equal(shown, faces[a])
    _, _, moved = slider_edit(codec, faces[a], z0, {"smile": smile}, {"smile": 2.0}, None, 0.0, bounds)
    _, _, plain = slider_edit(codec, faces[a], z0, {"smile": smile}, {"smile": 2.0}, None, 0.0, bounds, False)
    assert np.abs(moved.astype(int) - faces[a]).mean() > 0.5
    # the plain face is the decoded one; the kept one is the crop plus the same change
    alone = codec.decode(edit.compose(z0, [(smile, 2.0)], bounds=bounds)[None])[0]
    assert np.abs(plain.astype(int) - alone).max() <= 1  # decoded in a batch of two: rounding at most
    np.testing.assert_array_equal(moved, edit.with_change(faces[a], recon, plain))
    frames = edit.interpolation_strip(codec, mu[0], mu[-1], 6, "slerp", ends=(faces[a], faces[b]))
    np.testing.assert_array_equal(frames[0], faces[a])
    np.testing.assert_array_equal(frames[-1], faces[b])
    assert not np.array_equal(frames[2], frames[3])


def test_shift_photo_with_several_faces_asks_which(w: ws.Workspace) -> None:
    # AppTest cannot upload files: the page's photo path is the shared facelab.data.photo code,
    # tested here directly on the group photo.
    from facelab.data.photo import PhotoError, choose_face, photo_detector, read_image

    from media import media_file

    frame = read_image(media_file("multi_face.jpg"))
    boxes = photo_detector().detect(frame)
    assert len(boxes) >= 2
    with pytest.raises(PhotoError, match="pick one"):
        choose_face(boxes, 0.5)
    assert choose_face(boxes, 0.5, face=2) == boxes[1]
    with pytest.raises(PhotoError, match="not an image"):
        read_image(b"not a picture")
    assert jobs.status(w, sample.RUN_ID).state == "done"
