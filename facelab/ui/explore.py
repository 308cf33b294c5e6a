"""Cached pieces of the Explore page: thumbnails, the k sweep, the map table."""

from __future__ import annotations

from pathlib import Path

import altair as alt
import numpy as np
import pandas as pd
import streamlit as st

from facelab.data import dataset, labels
from facelab.data.labels import MIN_EXAMPLES
from facelab.data.thumbs import data_uris
from facelab.space import clusters as cl
from facelab.space import generative_map as gm
from facelab.space import projection as pj
from facelab.space.latent_map import cluster_title, map_table
from facelab.space.probe import ProbeError
from facelab.space.timeline import label_timeline
from facelab.store.workspace import Workspace
from facelab.ui import nav, state
from facelab.ui.text import md

HOVER_PX = 96  # hover thumbnails: big enough to read an expression (40 px was not)
MAX_HOVER_THUMBNAILS = 1500  # each adds ~2.9 KB (96-px JPEG) to the chart spec sent to the browser
HOVER_CELLS = 16  # "decode anywhere": the empty cells of a 16 x 16 grid (at most ~740 KB of thumbnails)


AXES = "axes"  # the map whose two axes the user picks among stored directions and time
METHOD_NAMES = {"pca": "PCA", "tsne": "t-SNE", "umap": "UMAP", AXES: "Your axes"}


def wait_for_map(w: Workspace, run_id: str, settings: pj.ProjectionSettings) -> None:
    """While a slow map is computed in the background: a line saying the PCA map is shown
    meanwhile, polled until the slow one is ready (then the whole page reruns and shows it)."""
    name = METHOD_NAMES[settings.method]

    @st.fragment(run_every=1.5)
    def poll() -> None:
        if pj.projection_state(w, run_id, settings).state != "running":
            st.rerun(scope="app")
        st.info(f"Showing the **PCA** map (instant) while the **{name}** map is computed in the background; "
                f"it replaces this one by itself when ready.", icon="⏳")

    poll()


FOCUS, LAST_PICK = "fl_explore_focus", "fl_explore_last_pick"


def focus_frame(face_id: int) -> None:
    """Show this frame's details (a neighbour's button): a chart selection cannot be set from
    Python, so the page shows this frame until the next click on the map."""
    st.session_state[FOCUS] = int(face_id)


def focused_frame(picked: list[int]) -> int | None:
    """The frame whose details to show: a neighbour opened since the last click on the map, else
    the point last clicked."""
    last = picked[-1] if picked else None
    if last != st.session_state.get(LAST_PICK):  # a new click on the map wins
        st.session_state[LAST_PICK] = last
        st.session_state.pop(FOCUS, None)
    return st.session_state.get(FOCUS, last)


def send_to_label(face_ids: list[int], source: str) -> None:
    """Open the Label page on these frames (its grid is filtered to them, `source` says from where)."""
    st.session_state[state.HANDED_IDS] = [int(i) for i in face_ids]
    st.session_state[state.HANDED_FROM] = source
    nav.go("label")


@st.cache_data(max_entries=4, show_spinner="Making thumbnails…")
def thumbnails(ws_path: str, latents_key: str, ids: tuple[int, ...]) -> dict[int, str]:
    faces = Workspace(Path(ws_path)).faces()
    return dict(zip(ids, data_uris(faces[np.asarray(ids, dtype=np.int64)], HOVER_PX)))


@st.cache_data(max_entries=8, show_spinner="Trying k = 2…12 (K-means inertia, mixture BIC, silhouette)…")
def k_sweep(latents_key: str, _mu: np.ndarray) -> pd.DataFrame:
    """Keyed on the latents key alone (it fixes μ): hashing μ again costs up to 15 ms a run."""
    rows = cl.sweep(_mu)
    return pd.DataFrame([r.__dict__ for r in rows])


def table_for(w: Workspace, run_id: str, proj, rc: cl.RunClusters | None, method: str, k: int,
              names: dict[int, str] | None = None) -> pd.DataFrame:
    """The map's rows: position, time, cluster (by name), labels and a hover thumbnail. `names`:
    the cluster names when the caller has read them already (each read loads the clusters)."""
    if names is None:
        names = cl.cluster_names(w, run_id, method, k) if rc is not None else {}
    assign = dict(zip(rc.ids.tolist(), rc.clustering.labels_.tolist())) if rc is not None else None
    ids = tuple(int(i) for i in proj.ids)
    thumbs = thumbnails(str(w.path), proj.latents_key, ids) if len(ids) <= MAX_HOVER_THUMBNAILS else None
    return map_table(
        proj.ids, proj.xy, dataset.faces_table(w), clusters=assign, cluster_names=names,
        labels_of=labels.labels_of(w), thumbnails=thumbs,
    )


@st.cache_data(max_entries=4, show_spinner="Drawing the faces between the frames…")
def decoded_places(ws_path: str, run_id: str, stamp: float, latents_key: str, map_key: str,
                   _inverse: gm.MapInverse) -> tuple[pd.DataFrame, np.ndarray, str]:
    """(the empty places' hover cells, each with the face the model draws there; the face field
    picture; how a place becomes a code) for one map, keyed on the map (its latents key and
    `map_key`, which names the method and its settings), not on its arrays."""
    from facelab.ui.cache import codec

    model, inverse = codec(Workspace(Path(ws_path)), run_id), _inverse
    hover = gm.face_field(model, inverse, HOVER_CELLS)
    x0, x1, y0, y1 = inverse.extent()
    half = np.array([(x1 - x0), (y1 - y0)]) / (HOVER_CELLS - 1) / 2
    # only cells with no frame inside: over a frame, the hover shows that frame
    inside = (np.abs(inverse.xy[None] - hover.places[:, None]) <= half).all(-1).any(1)
    empty = np.flatnonzero(~inside)
    faded = hover.faces[empty].astype(np.float32)
    far = ~hover.near[empty]
    faded[far] = faded[far] * (1 - gm.FADE) + 255 * gm.FADE
    places = hover.places[empty]
    cells = pd.DataFrame({
        "x": places[:, 0] - half[0], "x2": places[:, 0] + half[0],
        "y": places[:, 1] - half[1], "y2": places[:, 1] + half[1],
        "image": data_uris(faded.round().astype(np.uint8), HOVER_PX),
        "note": np.where(far, "the model's guess here: no frame is near", "the model's face here"),
    })
    return cells, gm.face_field(model, inverse).picture(), inverse.how


def axes_projection(w: Workspace, run_id: str, latents_key: str, ids: np.ndarray, mu: np.ndarray,
                    directions: dict) -> tuple[pj.Projection, str, gm.Axes] | None:
    """The map on two axes the user picks (stored directions or time), with the pickers: (the map,
    its cache key, the fitted axes that place any other face); None (after saying why) with no
    direction."""
    if not directions:
        st.info("Your axes are stored directions: make one on the **Shift** page (tab *Make a direction*) "
                "from a few labelled frames, then come back to place every frame along it.")
        return None
    names = list(directions)
    a, b = st.columns(2)
    x = a.selectbox("x axis", names, key="fl_axes_x")  # options are shown as plain text, never Markdown
    y = b.selectbox("y axis", [gm.TIME_AXIS, *names], key="fl_axes_y",
                    help="Time: seconds into the video, so the map reads as the direction over the clip.")
    axis = lambda n: n if n == gm.TIME_AXIS else directions[n]  # noqa: E731
    axes = gm.Axes(axis(x), axis(y)).fit(mu)
    xy = axes.transform(mu, dataset.face_times(w, ids))
    st.caption(md(f"x: {x} · y: {y}") + (" (seconds)" if y == gm.TIME_AXIS else "") +
               ", directions in spreads from the average face; ◇ marks each cluster's centre")
    key = f"{AXES}:{x}:{y}"
    return pj.Projection(ids=ids, xy=xy, settings=pj.ProjectionSettings(), latents_key=latents_key), key, axes


def with_centres(rings: pd.DataFrame, axes: gm.Axes, rc: cl.RunClusters, table: pd.DataFrame,
                 names: dict[int, str]) -> pd.DataFrame:
    """`rings` (x, y, note) and each cluster's centre placed on the axes as a diamond, for
    `map_chart(marked=...)`; on a time axis a centre sits at its frames' mean time."""
    members = pd.Series(rc.clustering.labels_, index=rc.ids)
    times = table.set_index("frame_id")["time"]
    k = rc.clustering.k
    mean_t = np.array([times.reindex(members.index[members == c]).mean() for c in range(k)])
    xy = axes.transform(rc.clustering.cluster_centers_, np.nan_to_num(mean_t))
    keep = np.flatnonzero(rc.clustering.sizes > 0)
    centres = pd.DataFrame({"x": xy[keep, 0], "y": xy[keep, 1], "shape": "diamond",
                            "note": [f"centre of {cluster_title(int(c), names)}" for c in keep]})
    return pd.concat([rings.assign(shape="circle"), centres], ignore_index=True)


TIMELINE = "fl_timeline"  # the timeline chart's key: its selected span rings frames on the map above it


def timeline_span() -> tuple[float, float] | None:
    """(start, end) in seconds of the span selected on the timeline, read before the map is drawn."""
    event = st.session_state.get(TIMELINE) or {}
    selection = event.get("selection", {}) if hasattr(event, "get") else {}
    times = (selection.get("span") or {}).get("time")
    return (float(min(times)), float(max(times))) if times and len(times) == 2 else None


@st.cache_data(max_entries=8, show_spinner="Fitting the probe over the whole video…")
def label_over_time(ws_path: str, run_id: str, latents_key: str, label: str, labels_version: int) -> pd.DataFrame:
    """`facelab.space.timeline.label_timeline`, once per latents and labels."""
    return label_timeline(Workspace(Path(ws_path)), run_id, label)


def timeline(w: Workspace, run_id: str, latents_key: str, n_frames: int) -> None:
    """Each label's probability over the video's time; a span dragged on it rings its frames on the map."""
    counts = labels.counts(w)
    usable = [n for n, c in counts.items() if MIN_EXAMPLES <= c <= n_frames - MIN_EXAMPLES]
    if not usable:
        st.caption(f"A timeline of a label's probability over the video appears once {MIN_EXAMPLES} frames have it "
                   f"and {MIN_EXAMPLES} do not.")
        return
    label = st.selectbox("Timeline of", usable, key="fl_timeline_label",
                         index=usable.index("smile") if "smile" in usable else 0,
                         help="A probe learnt from your labelled frames scores every frame; drag across the "
                              "timeline to ring that stretch of the video on the map.")
    try:
        df = label_over_time(str(w.path), run_id, latents_key, label, labels.version(w)).round({"p": 3})
    except ProbeError as e:
        st.caption(md(e))
        return
    span = alt.selection_interval(name="span", encodings=["x"])
    chart = (alt.Chart(df).mark_line(interpolate="monotone")
             .encode(x=alt.X("time:Q", title="time in the video (s)"),
                     y=alt.Y("p:Q", title=f"P({label})", scale=alt.Scale(domain=[0, 1])),
                     color=alt.Color("source:N", legend=None if df["source"].nunique() < 2 else alt.Undefined),
                     tooltip=[alt.Tooltip("time:Q", format=".2f"), alt.Tooltip("p:Q", format=".2f"), "frame_id:Q"])
             .add_params(span).properties(height=160))
    st.altair_chart(chart, on_select="rerun", selection_mode=["span"], key=TIMELINE, width="stretch")
