"""A paged grid of face crops, optionally with a checkbox under each to pick some, and the
Label page's grid: a custom component (label_grid.js) where a click or key labels a frame at
once in the browser and only the grid's fragment reruns to save it."""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import streamlit as st

from facelab.data import labels
from facelab.data.thumbs import data_uris
from facelab.store.workspace import Workspace
from facelab.ui import state


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


# --- the Label page's grid -----------------------------------------------------------------
_HERE = Path(__file__).resolve().parent
LABEL_GRID = "facelab.label_grid"
# Registered once, when this module is first imported (the JS and CSS ship beside this file).
_label_grid_component = st.components.v2.component(
    LABEL_GRID,
    css=(_HERE / "label_grid.css").read_text(encoding="utf-8"),
    js=(_HERE / "label_grid.js").read_text(encoding="utf-8"),
)
APPLIED = "fl_label_grid_applied"  # {mount id: last event number applied}: a tab's grid per mount
LAST_LABEL = "fl_label_last"  # the label the person last gave or took
LAST_LABEL_META = "label_last"  # the same, remembered in the workspace across sessions
MAX_MOUNTS = 8  # acks kept: a reload makes a new mount, older ones are gone for good


@dataclass
class GridChanges:
    """What one run of the grid applied: labelling actions (each undoable) and a page turn."""

    records: list[labels.UndoRecord] = field(default_factory=list)
    page: int | None = None
    errors: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.records) or self.page is not None


def new_events(session: Mapping[str, Any], events: Any) -> tuple[str | None, list[dict]]:
    """(mount id, events not applied yet, in order) of the grid's state.

    The browser sends every change it has not seen acknowledged, so a list usually repeats
    changes already applied: only numbers above the mount's last applied one are new."""
    if not isinstance(events, Mapping) or not isinstance(events.get("mount"), str):
        return None, []
    mount = events["mount"]
    done = session.get(APPLIED, {}).get(mount, 0)
    fresh = [e for e in events.get("list") or () if isinstance(e, Mapping) and isinstance(e.get("seq"), int)]
    return mount, sorted((dict(e) for e in fresh if e["seq"] > done), key=lambda e: e["seq"])


def apply_events(w: Workspace, session: MutableMapping[str, Any], events: Any, pages: int, page_key: str) -> GridChanges:
    """Apply the grid's new events to the database and the page number; record them as applied.

    Only known labels and whole-number ids are applied: a label event must never add a label
    name (set_labels would), and the state comes from the browser."""
    mount, fresh = new_events(session, events)
    out = GridChanges()
    if mount is None:
        return out
    names = set(labels.label_names(w))
    for e in fresh:
        if "page" in e and isinstance(e["page"], int):
            out.page = max(0, min(pages - 1, e["page"]))
            session[page_key] = out.page
        elif e.get("label") in names and isinstance(e.get("ids"), list):
            out.records.append(_apply_label(w, session, e, out.errors))
        _mark_applied(session, mount, e["seq"])
    out.records = [r for r in out.records if r]
    return out


def _apply_label(w: Workspace, session: MutableMapping[str, Any], event: Mapping, errors: list[str]) -> labels.UndoRecord:
    """One click or range: saved, made the action Undo reverts, and its label remembered."""
    label = event["label"]
    try:
        ids = [i for i in event["ids"] if isinstance(i, int) and not isinstance(i, bool)]
        record = labels.set_labels(w, ids, label, on=bool(event.get("on")))
    except labels.LabelError as e:
        errors.append(str(e))
        return labels.UndoRecord(label, (), bool(event.get("on")))
    if record.face_ids:  # another tab may have done it already: nothing of this one to undo
        session[state.UNDO] = record
    remember_label(w, session, label)
    return record


def _mark_applied(session: MutableMapping[str, Any], mount: str, seq: int) -> None:
    """Reassigned, not mutated in place: a session-state dict changed in place may not be kept."""
    applied = dict(session.get(APPLIED, {}))
    applied.pop(mount, None)
    applied[mount] = seq
    session[APPLIED] = dict(list(applied.items())[-MAX_MOUNTS:])


def remember_label(w: Workspace, session: MutableMapping[str, Any], label: str) -> None:
    """The label last applied, so the page opens on it again (this session and the next)."""
    if session.get(LAST_LABEL) != label:
        session[LAST_LABEL] = label
        w.set_meta(LAST_LABEL_META, label)


def last_label(w: Workspace, session: Mapping[str, Any]) -> str | None:
    """The label last applied in this session, else the one the workspace remembers."""
    return session.get(LAST_LABEL) or w.get_meta(LAST_LABEL_META)


def grid_data(w: Workspace, page_ids: Sequence[int], label: str, captions: Sequence[str], *,
              page: int, pages: int, info: str, view: str, ack: Mapping[str, int]) -> dict:
    """What the browser draws: each cell's crop as a data URI at its own size, and its state."""
    tags = labels.labels_of(w)
    crops = w.faces()[np.asarray(page_ids, dtype=np.int64)]
    srcs = data_uris(crops, size=int(crops.shape[1]))  # no resize: the cells are wider than a crop
    cells = [{"id": int(fid), "src": src, "caption": cap, "on": label in tags.get(int(fid), ())}
             for fid, src, cap in zip(page_ids, srcs, captions)]
    return {"cells": cells, "label": label, "page": page, "pages": pages, "info": info, "view": view,
            "ack": dict(ack)}


def label_grid(w: Workspace, ids: Sequence[int], label: str, captions: Mapping[int, str], *,
               per_page: int = 48, key: str = "fl_label_grid", view: str = "") -> GridChanges:
    """The Label page's grid of `ids` for `label`; returns what this run applied.

    Call it inside an @st.fragment: a click then reruns only the grid. Events are applied
    before the cells are drawn, so the cells always show what the database holds."""
    page_key = f"{key}_page"
    pages = max(1, -(-len(ids) // per_page))
    grid_state = st.session_state.get(key) or {}
    changes = apply_events(w, st.session_state, grid_state.get("events"), pages, page_key)
    page = min(int(st.session_state.get(page_key, 0)), pages - 1)
    st.session_state[page_key] = page
    start, stop = page * per_page, min(len(ids), (page + 1) * per_page)
    page_ids = [int(i) for i in ids[start:stop]]
    info = f"Page {page + 1} of {pages} · frames {start + 1}–{stop} of {len(ids)}"
    data = grid_data(w, page_ids, label, [captions[i] for i in page_ids], page=page, pages=pages,
                     info=info, view=f"{view}|{label}|{page}", ack=st.session_state.get(APPLIED, {}))
    _label_grid_component(key=key, data=data, default={"events": None}, on_events_change=lambda: None)
    return changes
