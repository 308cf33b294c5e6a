"""The 2D latent map: one row per frame (position, time, cluster, labels, thumbnail) and its chart.

Every point carries a `frame_id` field: a chart selection returns field values, not row numbers,
so clicks and box selections come back as face ids.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import altair as alt
import numpy as np
import pandas as pd

COLOUR_TYPES = {"cluster": "N", "label": "N", "time": "Q", "source": "N"}
UNLABELLED = "(none)"
# Cluster and label colours: twelve hues no two of which pass for each other (Vega's category10
# and tableau10 pair dark/light blue, red/pink, teal/light green). No red: red rings mark faces.
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2",
           "#17becf", "#bcbd22", "#08306b", "#7f7f7f", "#ffd92f", "#000000")
UNLABELLED_COLOUR = "#d0d0d0"


def category_colours(values: Sequence[str]) -> dict[str, str]:
    """A colour per category, in the given order (cluster 0 first), PALETTE repeating past 12;
    "no label" is light grey so the labelled frames stand out."""
    out, k = {}, 0
    for v in values:
        if v == UNLABELLED:
            out[v] = UNLABELLED_COLOUR
        elif v not in out:
            out[v] = PALETTE[k % len(PALETTE)]
            k += 1
    return out


def map_table(
    ids: np.ndarray,
    xy: np.ndarray,
    faces: Sequence[Mapping],
    *,
    clusters: Mapping[int, int] | None = None,
    cluster_names: Mapping[int, str] | None = None,
    labels_of: Mapping[int, set[str]] | None = None,
    thumbnails: Mapping[int, str] | None = None,
) -> pd.DataFrame:
    """One row per mapped frame. `faces` are `facelab.data.dataset.faces_table` rows."""
    info = {int(f["id"]): f for f in faces}
    rows = []
    for fid, (x, y) in zip(ids.tolist(), xy.tolist()):
        f = info.get(fid)
        if f is None:  # deleted since the map was made
            continue
        c = None if clusters is None else clusters.get(fid)
        tags = sorted((labels_of or {}).get(fid, ()))
        rows.append({
            "frame_id": fid, "x": x, "y": y, "time": round(float(f["t_seconds"]), 2),
            "source": f.get("source", ""),
            "cluster": "" if c is None else cluster_title(c, cluster_names),
            "label": ", ".join(tags) if tags else UNLABELLED,
            "image": (thumbnails or {}).get(fid, ""),
        })
    return pd.DataFrame(rows, columns=["frame_id", "x", "y", "time", "source", "cluster", "label", "image"])


def find_frames(table: pd.DataFrame, query: str) -> tuple[list[int], str]:
    """(frame ids, what was found, in words) for a search on the map: "123" is frame 123,
    "12.5 s" (or "12.5s", "12.5") the frame nearest that time, anything else a label or a
    cluster name (whole, case-insensitive)."""
    q = query.strip()
    if not q or table.empty:
        return [], ""
    if q.isdigit():
        hit = table.loc[table["frame_id"] == int(q), "frame_id"].tolist()
        return hit, f"frame {q}" if hit else f"no frame {q} on this map"
    number = q.lower().removesuffix("s").strip()
    try:
        t = float(number)
    except ValueError:
        pass
    else:
        row = table.iloc[int((table["time"] - t).abs().argmin())]
        return [int(row["frame_id"])], f"the frame nearest {t:g} s (frame {int(row['frame_id'])}, {row['time']:.2f} s)"
    want = q.casefold()
    has = table["label"].map(lambda v: want in {p.strip().casefold() for p in str(v).split(",")})
    hit = table.loc[has | (table["cluster"].str.casefold() == want), "frame_id"].astype(int).tolist()
    n = len(hit)
    return hit, f"{n} frame{'s' if n != 1 else ''} labelled or clustered as “{q}”" if hit else f"nothing labelled or clustered as “{q}”"


def cluster_title(c: int, names: Mapping[int, str] | None) -> str:
    """How the map and its legend call cluster c: its name, or "cluster c"."""
    return (names or {}).get(c) or f"cluster {c}"


def swatch(colour: str, size: int = 16) -> np.ndarray:
    """A size x size RGB square of `colour` ("#rrggbb"), to tie a card to its points."""
    rgb = [int(colour[i:i + 2], 16) for i in (1, 3, 5)]
    return np.broadcast_to(np.array(rgb, np.uint8), (size, size, 3)).copy()


def map_chart(
    table: pd.DataFrame,
    colour: str = "cluster",
    *,
    multi_pick: bool = False,
    box: bool = True,
    marked: pd.DataFrame | None = None,
    height: int = 520,
    order: Sequence[str] | None = None,
    cells: pd.DataFrame | None = None,
) -> alt.Chart:
    """Scatter of the frames; click picks (with `multi_pick`, each click adds a point), drag boxes.

    `marked` (rows with x, y and a `note`) are drawn on top as large rings, e.g. a shifted face
    or the live webcam face (a `shape` column, e.g. "diamond", draws other marks); they carry
    no frame_id and cannot be picked. `order`: the
    categories of `colour` in the order their colours are given (e.g. clusters 0..k-1, so a
    cluster card's swatch matches), default sorted. `cells` (x, x2, y, y2, image, note): faint
    rectangles over empty places whose hover shows the face the model draws there.
    """
    pick = alt.selection_point(name="pick", fields=["frame_id"], toggle="true" if multi_pick else "event.shiftKey")
    params = [pick]
    if box:
        params.append(alt.selection_interval(name="box", encodings=["x", "y"]))
    kind = COLOUR_TYPES.get(colour, "Q")
    scale = alt.Scale(scheme="viridis") if kind == "Q" else alt.Undefined
    opacity = alt.value(0.75)
    if kind == "N":
        values = order if order is not None else sorted(table[colour].unique(), key=lambda v: (v == UNLABELLED, v))
        colours = category_colours(list(values))  # all of `order`, so colour i stays cluster i's
        scale = alt.Scale(domain=list(colours), range=list(colours.values()))
        if colour == "label":  # labelled frames opaque on top of faint unlabelled ones
            opacity = alt.condition(f"datum.label == '{UNLABELLED}'", alt.value(0.3), alt.value(0.95))
    tooltip = [alt.Tooltip("image:N", title="image"), alt.Tooltip("time:Q", title="time (s)", format=".2f"),
               alt.Tooltip("cluster:N"), alt.Tooltip("label:N"), alt.Tooltip("frame_id:Q", title="frame")]
    points = (
        alt.Chart(table)
        .mark_circle(size=40)
        .encode(
            opacity=opacity,
            x=alt.X("x:Q", axis=None), y=alt.Y("y:Q", axis=None),
            color=alt.Color(f"{colour}:{kind}", scale=scale, title=colour),
            size=alt.condition(pick, alt.value(90), alt.value(40), empty=False),
            stroke=alt.condition(pick, alt.value("black"), alt.value(None), empty=False),
            tooltip=tooltip,
        )
        .add_params(*params)
    )
    # The frames' layer comes first: Streamlit draws nothing when a selection's layer is not the first.
    layers = [points]
    if cells is not None and len(cells):  # empty places only, so they never hide a frame's hover
        layers.append(
            alt.Chart(cells)
            .mark_rect(color="#888888", opacity=0.05)
            .encode(x="x:Q", x2="x2:Q", y="y:Q", y2="y2:Q",
                    tooltip=[alt.Tooltip("image:N", title="image"), alt.Tooltip("note:N", title="decoded")])
        )
    if marked is not None and len(marked):
        shape = alt.Shape("shape:N", scale=None, legend=None) if "shape" in marked else alt.value("circle")
        layers.append(
            alt.Chart(marked)
            .mark_point(size=400, strokeWidth=3, color="#d62728", filled=False)
            .encode(x="x:Q", y="y:Q", shape=shape, tooltip=["note:N"])
        )
    chart = alt.layer(*layers) if len(layers) > 1 else points
    return chart.properties(height=height)


def selected_ids(event, table: pd.DataFrame) -> tuple[list[int], list[int]]:
    """(picked frame ids in click order, frame ids inside the box) from an st.altair_chart event."""
    selection = (event or {}).get("selection", {}) if isinstance(event, Mapping) else getattr(event, "selection", {})
    picked = [int(p["frame_id"]) for p in selection.get("pick", []) or []
              if p.get("frame_id") is not None]  # a click on an empty place's cell picks no frame
    boxed: list[int] = []
    bounds = selection.get("box") or {}
    if "x" in bounds and "y" in bounds:
        (x0, x1), (y0, y1) = sorted(bounds["x"]), sorted(bounds["y"])
        inside = table["x"].between(x0, x1) & table["y"].between(y0, y1)
        boxed = table.loc[inside, "frame_id"].astype(int).tolist()
    return picked, boxed


def nearest(mu: np.ndarray, ids: np.ndarray, face_id: int, k: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """(the k face ids nearest to `face_id` in latent space, their Euclidean distances on μ),
    itself excluded, nearest first."""
    ids = np.asarray(ids)
    row = int(np.flatnonzero(ids == face_id)[0])
    d = ((mu - mu[row]) ** 2).sum(1)
    d[row] = np.inf
    order = np.argsort(d, kind="stable")[:k]
    return ids[order], np.sqrt(d[order])


def plain_map_table(xy: np.ndarray, ids: np.ndarray, times: np.ndarray) -> pd.DataFrame:
    """A light map table (no thumbnails, clusters or labels) for charts redrawn often."""
    return pd.DataFrame({"frame_id": np.asarray(ids, int), "x": xy[:, 0], "y": xy[:, 1],
                         "time": np.asarray(times, float), "source": "", "cluster": "", "label": "",
                         "image": ""})
