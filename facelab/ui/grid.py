"""A paged grid of face crops, optionally with a checkbox under each to pick some, and the
Label page's tick boxes that stay true to the database."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import streamlit as st


def pager(total: int, per_page: int, key: str) -> tuple[int, int]:
    """Prev / next buttons and a page number; returns the [start, stop) slice of this page."""
    pages = max(1, -(-total // per_page))
    page = min(st.session_state.get(key, 0), pages - 1)
    left, mid, right = st.columns([1, 3, 1], vertical_alignment="center")
    if left.button("◀ Previous", key=f"{key}_prev", disabled=page == 0):
        page -= 1
    if right.button("Next ▶", key=f"{key}_next", disabled=page >= pages - 1):
        page += 1
    st.session_state[key] = page
    start = page * per_page
    mid.caption(f"Page {page + 1} of {pages} · crops {start + 1}–{min(total, start + per_page)} of {total}")
    return start, min(total, start + per_page)


def thumbnail_grid(
    images: np.ndarray,
    ids: Sequence[int],
    captions: Sequence[str],
    *,
    columns: int = 8,
    pick_label: str | None = None,
    key: str = "grid",
) -> list[int]:
    """Draw crops in rows of `columns`; with `pick_label`, a checkbox under each. Returns picked ids."""
    picked: list[int] = []
    for row_start in range(0, len(ids), columns):
        cols = st.columns(columns)
        for col, i in zip(cols, range(row_start, min(len(ids), row_start + columns))):
            with col:
                st.image(images[i], caption=captions[i], width="stretch")
                if pick_label and st.checkbox(pick_label, key=f"{key}_{ids[i]}"):
                    picked.append(int(ids[i]))
    return picked


def label_box_key(label: str, face_id: int, ticked: bool) -> str:
    """A Label-page box's key names the stored state it shows.

    When the database changes (in this tab or another), the key changes and the box is drawn
    afresh from it, so the page never writes a box's value itself. Writing it (and catching
    clicks with on_change callbacks) lost labels: a value the server pushed could overwrite a
    click still on its way, and quick clicks outran reruns (tests/test_faults.py, two tabs).
    """
    return f"fl_lab_{label}_{face_id}_{'on' if ticked else 'off'}"


def label_box_changes(session: Mapping, label: str, face_ids: Iterable[int],
                      tags: Mapping[int, set[str]]) -> tuple[list[int], list[int]]:
    """(frames to label, frames to unlabel): boxes the person set differently from what they showed.

    Level, not edge: every rerun compares each box with the database, so a click is applied
    however many reruns it shares with other clicks."""
    on, off = [], []
    for fid in face_ids:
        has = label in tags.get(int(fid), ())
        ticked = session.get(label_box_key(label, int(fid), has), has)
        if ticked != has:
            (on if ticked else off).append(int(fid))
    return on, off
