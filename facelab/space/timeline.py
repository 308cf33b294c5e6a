"""A label over the video's time: every frame's P(label), from a probe on the labelled frames.

Explore draws it under the map (a span dragged on it rings those frames on the map) and
`facelab timeline` writes it as a PNG: where in the clip the person smiles, at a glance.
"""

from __future__ import annotations

import io

import numpy as np
import pandas as pd

from facelab.store.workspace import Workspace

SIZE = (900, 240)  # the PNG, in pixels
MARGIN = (48, 16, 16, 36)  # left, top, right, bottom: room for the axis numbers


def label_timeline(workspace: Workspace, run_id: str, label: str) -> pd.DataFrame:
    """frame_id, source, time (s), p: every active frame in time order, source by source.

    The probe (`facelab.space.probe.probe_probabilities`) is fitted on the run's latents of the frames
    with and without the label; ProbeError when there are too few of either."""
    from facelab.data import dataset, labels
    from facelab.space.latent import active_latents, load_latents
    from facelab.space.probe import probe_probabilities

    ids, mu = active_latents(workspace, load_latents(workspace, run_id, compute=True))
    p = probe_probabilities(mu, ids, labels.labels_of(workspace), label)
    info = {int(f["id"]): f for f in dataset.faces_table(workspace)}
    rows = [(int(i), info[int(i)]["source"], float(info[int(i)]["t_seconds"]), float(q))
            for i, q in zip(ids.tolist(), p.tolist()) if int(i) in info]
    table = pd.DataFrame(rows, columns=["frame_id", "source", "time", "p"])
    return table.sort_values(["source", "time"], kind="stable").reset_index(drop=True)


def timeline_png(table: pd.DataFrame, label: str, size: tuple[int, int] = SIZE) -> bytes:
    """The timeline as a PNG (no matplotlib): P(label) from 0 to 1 against seconds, one line per
    source video, with the time axis numbered."""
    from PIL import Image, ImageDraw

    from facelab.space.projection import PALETTE

    width, height = size
    left, top, right, bottom = MARGIN
    img = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(img)
    x0, x1, y0, y1 = left, width - right, top, height - bottom
    draw.rectangle((x0, y0, x1, y1), outline=(180, 180, 180))
    t_end = float(table["time"].max()) if len(table) else 1.0
    t_end = t_end if t_end > 0 else 1.0
    px = lambda t: x0 + (x1 - x0) * np.asarray(t, float) / t_end  # noqa: E731
    py = lambda p: y1 - (y1 - y0) * np.asarray(p, float)  # noqa: E731
    for q in (0.0, 0.5, 1.0):
        draw.line((x0, py(q), x1, py(q)), fill=(230, 230, 230))
        draw.text((6, py(q) - 6), f"{q:.1f}", fill=(90, 90, 90))
    step = _tick_step(t_end)
    for t in np.arange(0, t_end + 1e-9, step):
        draw.text((px(t) - 6, y1 + 6), f"{t:g}", fill=(90, 90, 90))
    for k, (_, part) in enumerate(table.groupby("source", sort=False)):
        points = list(zip(px(part["time"]).tolist(), py(part["p"]).tolist()))
        if len(points) > 1:
            draw.line(points, fill=PALETTE[k % len(PALETTE)], width=2)
        elif points:
            draw.ellipse((points[0][0] - 2, points[0][1] - 2, points[0][0] + 2, points[0][1] + 2),
                         fill=PALETTE[k % len(PALETTE)])
    draw.text((x0 + 4, 2), f"P({label}) over the video (s)", fill=(40, 40, 40))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def _tick_step(span: float) -> float:
    """A round step giving 5 to 12 numbers along `span` seconds."""
    for step in (0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 1800, 3600):
        if span / step <= 12:
            return float(step)
    return float(np.ceil(span / 12))
