"""Explore: the latent map of every frame, clusters, and what the model sees in each face."""

from facelab.ui.warm import chart_code_early

chart_code = chart_code_early()  # first: the browser loads its chart code while the page imports

import altair as alt
import numpy as np
import streamlit as st

from facelab.data import labels, preview
from facelab.edits import directions as dr
from facelab.space import clusters as cl
from facelab.space import projection as pj
from facelab.space.generative_map import MapInverse
from facelab.space.latent_map import PALETTE, cluster_title, find_frames, map_chart, nearest, selected_ids, swatch
from facelab.ui import state
from facelab.ui.cache import codec, model_stamp
from facelab.ui.explore import (
    AXES,
    MAX_HOVER_THUMBNAILS,
    METHOD_NAMES,
    axes_projection,
    decoded_places,
    focus_frame,
    focused_frame,
    k_sweep,
    send_to_label,
    table_for,
    timeline,
    timeline_span,
    wait_for_map,
    with_centres,
)
from facelab.ui.runs import open_run_page
from facelab.ui.text import HELP, count, md

w, run_id, lat, ids, mu = open_run_page("Explore")
if len(ids) < 3:
    st.warning("A map needs at least 3 faces.")
    st.stop()

c1, c2, c3, c4 = st.columns([2, 2, 2, 3])
method = c1.radio("Map", [*pj.METHODS, AXES], horizontal=True, key="fl_map_method",
                  format_func=METHOD_NAMES.get, help="Your axes: two stored directions (or one and time) as x and y.")
colour_options = ["cluster", "label", "time", "source"] + [f"z{i}" for i in range(mu.shape[1])]
colour = c2.selectbox("Colour by", colour_options, key="fl_map_colour", help=HELP["z"])
cluster_method = c3.radio("Clusters", list(cl.METHODS), horizontal=True, key="fl_cluster_method",
                          format_func={"kmeans": "K-means", "gmm": "Gaussian mixture"}.get)
k_max, k_default = cl.k_range(len(ids))
k = c4.slider("Number of clusters k", 2, k_max, k_default, key="fl_k")
st.session_state[state.LAST_CLUSTERING] = (cluster_method, k)  # the Label page filters by it

if st.toggle("Help me choose k (elbow, BIC and silhouette for k = 2…12)", key="fl_k_help"):
    sweep = k_sweep(lat.key, mu)
    advice, offer = cl.k_advice([cl.SweepRow(**r) for r in sweep.to_dict("records")])
    a, b = st.columns([4, 1], vertical_alignment="center")
    a.caption(advice)
    b.button(f"Use k = {offer}", key="fl_k_use", disabled=offer == k or offer > k_max,
             on_click=lambda: st.session_state.update(fl_k=offer))  # before the slider is drawn again
    base = alt.Chart(sweep).encode(x=alt.X("k:O"))
    l, m, r = st.columns(3)
    l.altair_chart(base.mark_line(point=True).encode(y=alt.Y("inertia:Q", scale=alt.Scale(zero=False)))
                   .properties(title="Elbow (K-means inertia)", height=180), width="stretch")
    m.altair_chart(base.mark_line(point=True).encode(y=alt.Y("bic:Q", scale=alt.Scale(zero=False)))
                   .properties(title="BIC (Gaussian mixture)", height=180), width="stretch")
    r.altair_chart(base.mark_bar().encode(y="silhouette:Q").properties(title="Silhouette", height=180),
                   width="stretch")

if method == AXES:
    axes = axes_projection(w, run_id, lat.key, ids, mu,
                           dr.moves_of(dr.load_directions(w, run_id)))
    if axes is None:
        st.stop()
    proj, map_key, axes = axes
    linear = axes.linear
else:
    settings = pj.ProjectionSettings(method=method)
    if method == "umap" and not pj.umap_available():
        st.warning(pj.UMAP_HINT)
        st.stop()
    if settings.is_slow:
        status = pj.projection_state(w, run_id, settings)
        if status.state != "ready":
            if status.state == "failed":
                st.error(md(status.message))
                if st.button("Try again"):
                    pj.start_projection(w, run_id, settings)
                    st.rerun()
                st.stop()
            if status.state == "missing":
                pj.start_projection(w, run_id, settings)
            wait_for_map(w, run_id, settings)
            settings = pj.ProjectionSettings(method="pca")  # the instant map meanwhile, not an empty page
    proj = pj.get_projection(w, run_id, settings)
    map_key, linear = settings.slug, settings.method == "pca"
rc = cl.cluster_run(w, run_id, cluster_method, k)
cluster_titles = cl.cluster_names(w, run_id, cluster_method, k)
table = table_for(w, run_id, proj, rc, cluster_method, k, cluster_titles)
if colour.startswith("z"):
    dim = int(colour[1:])
    table[colour] = lat.mu[table["frame_id"].to_numpy(), dim]

st.caption("Hover a point to see the face; click one to inspect it; drag a box to select many."
           if len(table) <= MAX_HOVER_THUMBNAILS else
           f"Click a point to see its face (hover thumbnails are shown for up to {MAX_HOVER_THUMBNAILS:,} "
           "frames); drag a box to select many.")
query = st.text_input("Find", key="fl_map_find", placeholder="a frame number, a time (12.5 s), a label or cluster",
                      help="Rings the frames found on the map.")
found, said = find_frames(table, query)
if query.strip():
    st.caption(md(said))
span = timeline_span()
in_span = table["time"].between(*span) if span else False
rings = table.loc[table["frame_id"].isin(found) | in_span, ["x", "y", "frame_id", "time"]].assign(
    note=lambda d: [f"frame {i} · {t:.2f} s" for i, t in zip(d["frame_id"], d["time"])])[["x", "y", "note"]]
if method == AXES:  # a linear map: the centres have their place on it too
    rings = with_centres(rings, axes, rc, table, cluster_titles)
decode_anywhere = st.toggle("Faces between the frames", key="fl_map_decode",
                            help="Hover an empty place on the map to see the face the model draws there, "
                                 "and see a grid of them (a face field) under the map.")
cells = field = None
if decode_anywhere:
    inverse = MapInverse.of_map(proj.ids, proj.xy, ids, mu, linear=linear)
    cells, field, how = decoded_places(str(w.path), run_id, model_stamp(w, run_id), proj.latents_key, map_key,
                                       inverse)
with st.container(key="fl_map_box"):
    order = [cluster_title(c, cluster_titles) for c in range(k)] if colour == "cluster" else None
    event = st.altair_chart(map_chart(table, colour, order=order, marked=rings, cells=cells),
                            on_select="rerun", selection_mode=["pick", "box"], key="fl_map", width="stretch")
chart_code.empty()
if field is not None:
    st.image(field, width=min(720, field.shape[1] * 2), caption=md(
        f"The face the model draws at each place of a 10 × 10 grid over the map ({how}); faded where no "
        "frame of the video is near, since there the model guesses."))
with st.container(key="fl_timeline_box"):
    timeline(w, run_id, lat.key, len(ids))
if span:
    st.caption(f"{count(int(in_span.sum()), 'frame')} from {span[0]:.1f} s to {span[1]:.1f} s are ringed on the map.")
picked, boxed = selected_ids(event, table)
fid = focused_frame(picked)

if fid is not None and fid in set(table["frame_id"]):
    row = table.loc[table["frame_id"] == fid].iloc[0]
    st.subheader(f"Frame {fid} · {row['time']:.2f} s · {md(row['cluster'])}")
    model = codec(w, run_id)
    faces = w.faces()
    left, right = st.columns([1, 2])
    with left:
        a, b = st.columns(2)
        a.image(faces[fid], caption="original", width="stretch")
        b.image(model.decode(lat.mu[fid][None])[0], caption="reconstruction", width="stretch")
        if (at := preview.moment(w, fid)) is not None:  # only when the user kept a preview of the video
            with st.container(key="fl_moment"):
                st.video(str(at[0]), start_time=int(at[1]), muted=True)  # Streamlit seeks to whole seconds
                st.caption(f"The video from {int(at[1])} s (its kept preview; this frame is at {at[1]:.2f} s)")
    with right:
        near, dist = nearest(mu, ids, fid, 8)
        st.caption("8 nearest neighbours in latent space (time in the video, distance between codes); "
                   "open one to inspect it")
        cols = st.columns(8)
        t_of = dict(zip(table["frame_id"], table["time"]))
        for col, n, d in zip(cols, near.tolist(), dist.tolist()):
            col.image(faces[n], width="stretch")
            col.button(f"{t_of.get(n, 0):.2f} s · {d:.1f}", key=f"fl_near_{n}", width="stretch",
                       help=f"Frame {n}: open it here", on_click=focus_frame, args=(n,))

if boxed:
    st.subheader(f"{count(len(boxed), 'frame')} in the box")
    faces = w.faces()
    st.image([faces[i] for i in boxed[:24]], width=64)
    labels.ensure_default_labels(w)
    l, r, o = st.columns([2, 1, 1], vertical_alignment="bottom")
    label = l.selectbox("Label them as", labels.label_names(w), key="fl_box_label")
    if r.button(f"Label {count(len(boxed), 'frame')}", type="primary", key="fl_box_apply"):
        st.session_state[state.UNDO] = labels.set_labels(w, boxed, label)
        state.flash(f"Labelled {count(len(boxed), 'frame')} as {label}.")
        st.rerun()
    if o.button("Label these frames", key="fl_box_to_label",
                help="Open them on the Label page, to label them one by one."):
        send_to_label(boxed, f"box on the Explore map ({len(boxed)} frame{'s' if len(boxed) != 1 else ''})")

st.subheader("Clusters")
names = cluster_titles
model = codec(w, run_id)
centres = model.decode(rc.clustering.cluster_centers_)
medoid_ids = rc.medoid_face_ids()
sizes = rc.clustering.sizes
faces = w.faces()
for c in np.argsort(-sizes):
    c = int(c)
    with st.container(border=True):
        cols = st.columns([0.25, 1, 1, 6, 2], vertical_alignment="center")
        cols.pop(0).image(swatch(PALETTE[c % len(PALETTE)]), width=16,  # its colour on the map (by cluster)
                          caption=None)
        if medoid_ids[c] >= 0:
            cols[0].image(faces[medoid_ids[c]], caption="medoid", width="stretch")
        cols[1].image(centres[c], caption="decoded centre", width="stretch")
        members = rc.members(c)
        cols[2].image([faces[i] for i in members[:: max(1, len(members) // 10)][:10]], width=56,
                      caption=None)
        with cols[3]:
            new = st.text_input(f"Name of cluster {c} ({count(int(sizes[c]), 'frame')})", value=names.get(c, ""),
                                key=f"fl_cname_{run_id}_{cluster_method}_{k}_{c}", max_chars=cl.MAX_NAME_LEN)
            if new != names.get(c, ""):
                cl.set_cluster_name(w, run_id, cluster_method, k, c, new)
                st.rerun()
