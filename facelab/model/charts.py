"""Altair chart specs the pages draw (no streamlit here, so they can be tested and benchmarked)."""

from __future__ import annotations

from collections.abc import Sequence

import altair as alt
import pandas as pd

LOSS_KEYS = {"train_loss": "train", "val_loss": "held-out"}


def _x(row: dict) -> int:
    """Where a metrics row was taken: its training step (runs before step budgets: its epoch)."""
    return row.get("step", row["epoch"])


def _x_title(rows: Sequence[dict]) -> str:
    return "step" if rows and all("step" in r for r in rows) else "epoch"


def loss_curves(epochs: Sequence[dict], run_label: str = "run") -> alt.Chart:
    """Train and held-out loss per evaluation (one line each), against the training step."""
    rows = [
        {"epoch": _x(e), "loss": e[k], "split": name, "run": run_label}
        for e in epochs for k, name in LOSS_KEYS.items() if e.get(k) is not None
    ]
    return (
        alt.Chart(pd.DataFrame(rows, columns=["epoch", "loss", "split", "run"]))
        .mark_line(point=True)
        .encode(
            x=alt.X("epoch:Q", axis=alt.Axis(tickMinStep=1), title=_x_title(epochs)),
            y=alt.Y("loss:Q", scale=alt.Scale(zero=False), title="loss per image"),
            color=alt.Color("split:N", title=None),
            tooltip=["epoch:Q", "split:N", alt.Tooltip("loss:Q", format=".2f")],
        )
        .properties(height=220, title="Loss")
    )


def metric_curves(runs: dict[str, Sequence[dict]], key: str, title: str) -> alt.Chart:
    """One line per run of an evaluation metric (e.g. held-out PSNR), to compare runs."""
    rows = [
        {"epoch": _x(e), "value": e[key], "run": run}
        for run, epochs in runs.items() for e in epochs if e.get(key) is not None
    ]
    return (
        alt.Chart(pd.DataFrame(rows, columns=["epoch", "value", "run"]))
        .mark_line(point=True)
        .encode(
            x=alt.X("epoch:Q", axis=alt.Axis(tickMinStep=1),
                    title=_x_title([e for r in runs.values() for e in r])),
            y=alt.Y("value:Q", scale=alt.Scale(zero=False), title=title),
            color=alt.Color("run:N"),
            tooltip=["run:N", "epoch:Q", alt.Tooltip("value:Q", format=".3f")],
        )
        .properties(height=220, title=title)
    )


def kl_per_dim(kl: Sequence[float], active_threshold: float) -> alt.Chart:
    """Mean KL of each latent dimension, sorted, with inactive ones greyed: how many are used."""
    rows = sorted(
        ({"dim": i, "kl": float(v), "active": v > active_threshold} for i, v in enumerate(kl)),
        key=lambda r: -r["kl"],
    )
    return (
        alt.Chart(pd.DataFrame(rows))
        .mark_bar()
        .encode(
            x=alt.X("dim:N", sort=None, title="latent dimension (sorted by KL)"),
            y=alt.Y("kl:Q", title="KL (nats)"),
            color=alt.Color("active:N", scale=alt.Scale(domain=[True, False], range=["#4c78a8", "#bbbbbb"]),
                            title="active"),
            tooltip=["dim:N", alt.Tooltip("kl:Q", format=".3f")],
        )
        .properties(height=180, title="KL per latent dimension (last epoch)")
    )


def compression_curve(points: Sequence[dict]) -> alt.Chart:
    """Held-out PSNR against latent size, one line per model kind."""
    return (
        alt.Chart(pd.DataFrame(points))
        .mark_line(point=True)
        .encode(
            x=alt.X("latent_dim:Q", scale=alt.Scale(type="log", base=2), title="latent variables"),
            y=alt.Y("val_psnr:Q", scale=alt.Scale(zero=False), title="held-out PSNR (dB)"),
            color=alt.Color("kind:N", title="model"),
            tooltip=["kind:N", "latent_dim:Q", alt.Tooltip("val_psnr:Q", format=".2f"), "active_units:Q"],
        )
        .properties(height=260, title="Compression curve")
    )
