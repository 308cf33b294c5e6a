"""Shift: move a face along a label direction or toward a centre, and interpolate two frames."""

import numpy as np
import pandas as pd
import streamlit as st

from facelab.data import labels
from facelab.data.dataset import sharp_faces
from facelab.data.photo import PhotoError, faces_in_photo, photo_face_crop
from facelab.edits import edit
from facelab.edits import directions as dr
from facelab.edits.animate import for_display
from facelab.space import clusters as cl
from facelab.space import projection as pj
from facelab.space.generative_map import path_frames
from facelab.space.latent_map import map_chart, selected_ids
from facelab.ui import state
from facelab.ui.cache import codec
from facelab.ui.explore import table_for
from facelab.ui.runs import open_run_page
from facelab.ui.shift import (
    bounds,
    judge_caption,
    judge_of,
    light_map,
    path_files,
    probe,
    ringed_map_spec,
    run_plane,
    slider_edit,
    with_ring,
)
from facelab.ui.text import count, md

w, run_id, lat, ids, mu = open_run_page("Shift")
model = codec(w, run_id)
faces = w.faces()
limits = bounds(lat.key, mu)
stored = dr.load_directions(w, run_id)
counts = labels.counts(w)

shift_tab, interp_tab, make_tab = st.tabs(["Shift a face", "Interpolate frames", "Make a direction"])

with make_tab:
    st.caption("A direction is learnt from labelled frames (label some on the **Label** page); "
               "a centre is a place to move toward: a cluster's or a label's mean face.")
    usable = [n for n in labels.label_names(w) if counts.get(n, 0)]
    c1, c2, c3 = st.columns(3)
    label = c1.selectbox("From label", usable or ["(no labels yet)"], key="fl_dir_label",  # bare names:
                         help=", ".join(f"{md(n)}: {count(counts[n], 'frame')}" for n in usable) or None)  # see pages/label.py
    method = c2.selectbox("Method", list(dr.METHOD_NAMES), key="fl_dir_method", format_func=dr.METHOD_NAMES.get,
                          help="Mouth only: the classifier's normal bent away from what changes the face "
                               "outside the mouth (measured through the decoder). For the same change to the "
                               "rest of the face it moved the judged smile most, on the sample and on "
                               "another person's clip.")
    without = c3.selectbox("…without the part along", ["(nothing)", *dr.moves_of(stored)],
                           key="fl_dir_without", help="E.g. smile without opening the mouth, when both are stored.")
    if st.button("Learn direction", disabled=not usable, key="fl_dir_fit"):
        try:
            d = dr.fit_label_direction(w, run_id, label, method, codec=model)
            if without != "(nothing)":
                zl, yl, _ = dr.labelled_latents(w, run_id, label, codec=model)
                d = dr.ConditionalDirection(d, [stored[without]]).fit(mu, positives=zl[yl]).to_direction(
                    f"{label} without {without}", label=label)
            dr.save_direction(w, run_id, d)
        except dr.DirectionError as e:
            st.error(md(e))
        else:
            state.flash(f"Stored the direction {d.name}.")
            st.rerun()
    method_k = state.last_clustering()
    c1, c2 = st.columns([3, 1], vertical_alignment="bottom")
    rc = cl.cluster_run(w, run_id, *method_k)
    names = cl.cluster_names(w, run_id, *method_k)
    targets = [f"label:{n}" for n in usable] + [f"cluster:{c}" for c in range(rc.clustering.k)]
    target = c1.selectbox("Centre of", targets, key="fl_centre_of", format_func=lambda t: (
        f"label {t[6:]}" if t.startswith("label:") else names.get(int(t[8:]), f"cluster {t[8:]}")))
    if c2.button("Store centre", key="fl_centre_fit", disabled=not targets):
        if target.startswith("label:"):
            members = np.isin(ids, labels.faces_with(w, target[6:]))
            name = f"{target[6:]} centre"
        else:
            members = rc.clustering.labels_ == int(target[8:])
            name = names.get(int(target[8:]), f"cluster {target[8:]}") + " centre"
        try:
            dr.save_direction(w, run_id, dr.CentreTarget(label=name).fit(mu, members).to_direction(name))
        except dr.DirectionError as e:
            st.error(md(e))
        else:
            state.flash(f"Stored the centre {name}.")
            st.rerun()
    if stored:
        st.dataframe(pd.DataFrame([{"name": n, "made from": dr.describe(d)} for n, d in stored.items()]),
                     hide_index=True)
        gone = st.selectbox("Delete a direction", ["(keep all)", *stored], key="fl_dir_delete")
        if gone != "(keep all)" and st.button(f"Delete {md(gone)}", key="fl_dir_delete_btn"):
            dr.delete_direction(w, run_id, gone)
            st.rerun()

with shift_tab:
    source = st.radio("Face to shift", ["A frame of the dataset", "A photo"], horizontal=True, key="fl_src")
    if source == "A frame of the dataset":
        fid = st.select_slider("Frame", options=ids.tolist(), value=int(ids[len(ids) // 2]), key="fl_src_frame")
        original, z0 = sharp_faces(w, [fid])[0], lat.mu[fid]  # the 128-px crop: the change is drawn on it
    else:
        photo = st.file_uploader("Photo (JPEG or PNG)", type=["jpg", "jpeg", "png", "webp"], key="fl_src_photo")
        if photo is None:
            st.stop()
        try:
            frame, boxes = faces_in_photo(photo.getvalue(), photo.name)
            if len(boxes) > 1:
                pick = st.radio("Several faces found: which one?", range(1, len(boxes) + 1), horizontal=True,
                                key="fl_src_face", format_func=lambda i: f"face {i} ({boxes[i - 1].w} px)")
            else:
                pick = None
            original = photo_face_crop(w, frame, boxes, pick, photo.name, model.config.image_size)
        except PhotoError as e:
            st.error(md(e))
            st.stop()
        z0 = model.encode(original[None])[0][0]

    moves = dr.moves_of(stored)
    centres = {n: d for n, d in stored.items() if d.kind == "centre"}
    hint = st.empty()  # drawn on every run: see state.show_flash (the fragment below keeps its place)
    if not stored:
        hint.info("No direction yet: make one in the **Make a direction** tab.")

    @st.fragment
    def shifter() -> None:
        """Sliders and the result; reruns alone when a slider moves."""
        cols = st.columns(max(1, min(3, len(moves) + bool(centres))))
        alphas = {}
        for i, (name, d) in enumerate(moves.items()):
            alphas[name] = cols[i % len(cols)].slider(f"{md(name)} ({md(edit.unit_of(d))})", -edit.SLIDER_END,
                                                      edit.SLIDER_END, 0.0, 0.1, key=f"fl_alpha_{run_id}_{name}")
        target, strength = None, 0.0
        if centres:
            with cols[len(moves) % len(cols)]:
                target = st.selectbox("Shift toward", list(centres), key="fl_toward")
                strength = st.slider("strength", 0.0, 1.0, 0.0, 0.05, key="fl_toward_s")
        detail = st.toggle("Keep my detail", value=True, key="fl_shift_detail", help=(
            "On: the original face plus what the shift changes in the decoded face, so your own "
            "detail stays and only the expression moves. Off: the plain decoded face."))
        centre = centres[target].vector if target else None
        z, recon, shifted = slider_edit(model, original, z0, moves, alphas, centre, strength, limits, detail)
        a, b, c = st.columns(3)
        a.image(for_display(original[None])[0], caption="original")
        b.image(for_display(recon[None])[0], caption="reconstruction")
        c.image(for_display(shifted[None])[0], caption="shifted" if detail else "shifted (plain decoded)")
        xy = run_plane(lat.key, mu).transform(np.stack([z0, z]).astype(np.float32))
        marked = pd.DataFrame({"x": xy[:, 0], "y": xy[:, 1], "note": ["original", "shifted"]})
        spec = ringed_map_spec(str(w.path), lat.key, "", 220, light_map(str(w.path), lat.key, ids, mu))
        st.vega_lite_chart(spec=with_ring(spec, marked), width="stretch", key="fl_shift_map")
        if moves:
            along = st.selectbox("A strip along", list(moves), key="fl_strip_dir")
            steps = np.linspace(-edit.FULL_ALPHA, edit.SLIDER_END, 7)
            path = np.stack([edit.compose(z0, [(moves[along], s)], bounds=limits) for s in steps])
            _, strip = edit.shift_faces(model, original, z0, path, detail)
            st.image(list(for_display(strip)), caption=[f"{s:+g}" for s in steps])
            d = moves[along]
            lab = d.spec.get("label")
            version = labels.version(w)
            judge = judge_of(str(w.path), lab, version) if lab else None
            if judge is not None:
                with st.container(key="fl_shift_judge"):
                    st.markdown(judge_caption(judge, lab, original, recon, shifted))
            p = probe(str(w.path), run_id, lab, version) if lab else None
            if p is not None and alphas.get(along):
                q = edit.shift_quality(model, z0[None], d, p, alphas[along], limits)
                st.caption(
                    f"Probe P({md(lab)}) {q.probe_before:.2f} → {q.probe_after:.2f} (decoded and re-encoded: "
                    f"{q.image_probe_before:.2f} → {q.image_probe_after:.2f}); pixels changed "
                    f"{q.pixel_inside:.1f} inside the mouth region vs {q.pixel_outside:.1f} outside; "
                    f"the code moved {q.latent_along:+.2f} along the direction and {q.latent_orthogonal:.2f} in other "
                    "directions (small: little else in the face should change).")

    shifter()

with interp_tab:
    st.caption("Click frames on the map in the order to pass through them (two or more; each click adds "
               "one, a click on a picked frame drops it).")
    c1, c2 = st.columns(2)
    steps = c1.slider("Steps from frame to frame", 3, 24, 10, key="fl_interp_steps")
    how = c2.radio("Path", ["linear", "slerp"], horizontal=True, key="fl_interp_method",
                   format_func={"linear": "straight line", "slerp": "spherical (slerp)"}.get)
    method_k = state.last_clustering()
    table = table_for(w, run_id, pj.get_projection(w, run_id, pj.ProjectionSettings()),
                      cl.cluster_run(w, run_id, *method_k), *method_k)
    with st.container(key="fl_interp_box"):
        event = st.altair_chart(map_chart(table, "cluster", multi_pick=True, box=False), on_select="rerun",
                                selection_mode=["pick"], key="fl_interp_map", width="stretch")
    picked, _ = selected_ids(event, table)
    if len(picked) < 2:
        st.info(f"{len(picked)} of 2 points picked.")
    else:
        detail = st.toggle("Keep the real frames' detail", value=True, key="fl_interp_detail", help=(
            "On: each step blends the real frames on either side plus what the decoded face changes on the "
            "way, so the path passes through the real frames. Off: the plain decoded faces."))
        frames = path_frames(model, lat.mu[picked], steps, sharp_faces(w, picked) if detail else None, how)
        ends = None if detail else (faces[picked[0]], faces[picked[-1]])
        shown = frames if detail else np.concatenate([ends[0][None], frames, ends[1][None]])
        route = " → ".join(f"frame {i}" for i in picked)
        st.caption(f"{route}, {steps} decoded steps from frame to frame, " + (
            "each the real frames plus the decoded change: the path passes through the real frames" if detail
            else "real frames at the ends"))
        st.image(list(for_display(shown)))  # 192 px each: at 64 px an expression change is invisible
        name = "path-" + "-".join(map(str, picked))
        png, gif, mp4 = path_files(frames, ends)
        d1, d2, d3 = st.columns(3)
        d1.download_button("Download strip (PNG)", png, file_name=f"{name}.png", mime="image/png")
        d2.download_button("Download animation (GIF)", gif, file_name=f"{name}.gif", mime="image/gif")
        d3.download_button("Download video (MP4)", mp4, file_name=f"{name}.mp4", mime="video/mp4")
