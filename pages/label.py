"""Label: give frames a label (smile first, or any you name), undo, import/export, insight."""

import numpy as np
import pandas as pd
import streamlit as st

from facelab.data import dataset, labels
from facelab.model import jobs
from facelab.space import clusters as cl
from facelab.space import probe
from facelab.space.latent import active_latents, load_latents
from facelab.store.workspace import Workspace
from facelab.ui import state
from facelab.ui.grid import label_grid, last_label
from facelab.ui.runs import learned_nothing
from facelab.ui.text import HELP, count, md

PER_PAGE = 48
COLUMNS = 8  # of the label counts
HANDED_IDS, HANDED_FROM = state.HANDED_IDS, state.HANDED_FROM  # frames another page sent here


def opening_label(w: Workspace, names: list[str]) -> str:
    """The label the person last applied, else smile (what the sample is about), else the first."""
    last = last_label(w, st.session_state)
    return last if last in names else ("smile" if "smile" in names else names[0])


def handed_ids(ids: np.ndarray) -> np.ndarray:
    """Only the frames another page handed over (Explore's box), with a way back to all of them."""
    wanted = st.session_state.get(HANDED_IDS)
    if wanted is None:
        return ids
    kept = ids[np.isin(ids, np.asarray(wanted, dtype=np.int64))]
    line, button = st.columns([4, 1], vertical_alignment="center")
    line.markdown(f"Showing {count(len(kept), 'frame')} from {md(st.session_state.get(HANDED_FROM) or 'another page')}.")
    if button.button("Show all frames", key="fl_label_show_all"):
        st.session_state.pop(HANDED_IDS, None)
        st.session_state.pop(HANDED_FROM, None)
        st.rerun()
    return kept


@st.fragment
def labelling(w: Workspace, names: list[str], ids: np.ndarray, label: str, captions: dict[int, str],
              view: str) -> None:
    """The grid, the Undo button and the counts: a click reruns only these, not the whole page."""
    hint = st.empty()  # above the grid, filled once the grid has saved this run's clicks
    if not len(ids):
        st.info("No frame matches this filter.")
    else:
        for error in label_grid(w, ids, label, captions, per_page=PER_PAGE, view=view).errors:
            st.error(md(error))
    counts = labels.counts(w)
    hint.caption(f"Click a frame, or move with the arrow keys and press Space, to give or take "
                 f"**{md(label)}** ({count(counts.get(label, 0), 'frame')} {'has' if counts.get(label, 0) == 1 else 'have'} it). Shift-click labels a range; "
                 f"n and p turn pages.")
    undo_record = st.session_state.get(state.UNDO)
    if st.button("Undo last action", disabled=not undo_record, key="fl_undo_btn"):
        st.session_state[state.UNDO] = None
        labels.undo(w, undo_record)
        state.flash(f"Undid: {'set' if undo_record.on else 'cleared'} {undo_record.label} on "
                    f"{len(undo_record.face_ids)} frame(s).")
        st.rerun()
    st.subheader("Label counts")
    for row in range(0, len(names), COLUMNS):
        for col, n in zip(st.columns(COLUMNS), names[row:row + COLUMNS]):
            col.metric(md(n), counts.get(n, 0))


st.title("Label")
w = state.require_workspace()
state.show_flash()
faces_info = dataset.faces_table(w)
if not faces_info:
    st.info("This workspace has no faces yet: build a dataset on the **Dataset** page first.")
    st.stop()

names = labels.label_names(w)
left, right = st.columns([3, 2], vertical_alignment="bottom")
# Options are the bare names: a selectbox's value travels as its option's text, so a count in
# that text would reset the choice whenever the count changes (in this tab or another one).
# A default, not a value written into the box: chosen here it stays, left for another page it
# is forgotten, and the page opens again on the label last applied.
label = left.selectbox("Label to apply", names, index=names.index(opening_label(w, names)), key="fl_label_current")
with right.popover("New label"):
    new = st.text_input("Name", key="fl_label_new", max_chars=labels.MAX_LABEL_LEN)
    if st.button("Add label", key="fl_label_add"):
        try:
            labels.add_label_name(w, new)
        except labels.LabelError as e:
            st.error(md(e))
        else:
            state.flash(f"Added the label {labels.validate_label_name(new)}.")
            st.rerun()

# A trained run (optional) adds cluster filters, uncertainty order and the probe's insight.
done = [r for r in jobs.list_runs(w) if r.state == "done"]
run_id = st.session_state.get(state.RUN) if st.session_state.get(state.RUN) in {r.run_id for r in done} else (
    done[0].run_id if done else None)
if run_id and learned_nothing(w, next(r for r in done if r.run_id == run_id)):
    run_id = None  # its clusters and uncertainty would be noise: label without them
lat = load_latents(w, run_id) if run_id else None
tags = labels.labels_of(w)

c1, c2, c3 = st.columns(3)
show = c1.selectbox("Show", ["all frames", "unlabelled", f"with '{label}'", f"without '{label}'", "by cluster"],
                    key="fl_label_filter")
order = c2.selectbox("Order", ["time", "model uncertainty (label these next)"], key="fl_label_order",
                     disabled=lat is None, help=None if lat else "Needs a trained model with latents (Explore page).")
ids = handed_ids(np.array([f["id"] for f in faces_info], dtype=np.int64))
if show == "unlabelled":
    ids = ids[[not tags.get(int(i)) for i in ids]]
elif show.startswith("with "):
    ids = ids[[label in tags.get(int(i), ()) for i in ids]]
elif show.startswith("without "):
    ids = ids[[label not in tags.get(int(i), ()) for i in ids]]
elif show == "by cluster":
    if lat is None:
        st.info("Clusters need a trained model with latents: open the Explore page first.")
        st.stop()
    method, k = state.last_clustering()
    rc = cl.cluster_run(w, run_id, method, k)
    cnames = cl.cluster_names(w, run_id, method, k)
    cluster = c3.selectbox(f"Cluster ({method}, k = {k})", range(k), key="fl_label_cluster",
                           format_func=lambda c: f"{cnames.get(c, f'cluster {c}')} ({int(rc.clustering.sizes[c])})")
    ids = np.intersect1d(ids, rc.members(cluster))
if order.startswith("model") and lat is not None and len(ids):
    act_ids, mu = active_latents(w, lat)
    try:
        u = probe.uncertainty(mu, act_ids, tags)
    except probe.ProbeError as e:
        st.caption(md(e))
    else:
        score = dict(zip(act_ids.tolist(), u.tolist()))
        ids = np.array(sorted(ids.tolist(), key=lambda i: -score.get(i, 0.0)), dtype=np.int64)

captions = {f["id"]: f"{f['t_seconds']:.2f} s" for f in faces_info}
cluster_shown = st.session_state.get("fl_label_cluster") if show == "by cluster" else None
labelling(w, names, ids, label, captions, f"{show}|{order}|{cluster_shown}|{st.session_state.get(HANDED_FROM)}")

if lat is not None:
    st.subheader("Are labelled faces close in the latent space?")
    insights = probe.run_insights(w, run_id)
    if insights:
        st.dataframe(pd.DataFrame(probe.insight_rows(insights)), hide_index=True, column_config={
            k: st.column_config.Column(help=HELP[k]) for k in ("probe ROC-AUC", "within / overall distance")})
        for i in insights:
            if i.estimate is not None:
                (st.caption if i.estimate.trustworthy else st.warning)(md(i.guidance))
        st.caption("ROC-AUC near 1: a straight line in latent space separates the label; the 95 % "
                   "interval says how far that figure can be off with this many labels (more labels, "
                   "narrower). A distance ratio below 1: its frames sit closer together than frames "
                   "in general.")
    else:
        st.caption("Label some frames to see how well the model's latent space separates them.")

with st.expander("Import / export labels (CSV)"):
    st.download_button("Export labels.csv", labels.export_csv(w), file_name=f"{w.name}-labels.csv",
                       mime="text/csv")
    upload = st.file_uploader("Import a CSV with face_id,label columns", type=["csv"], key="fl_label_csv")
    if upload is not None and st.button("Import", key="fl_label_import"):
        try:
            n = labels.import_csv(w, upload.getvalue().decode("utf-8", errors="replace"))
        except labels.LabelError as e:
            st.error(f"Nothing imported: {md(e)}")
        else:
            state.flash(f"Imported {n} new labels.")
            st.rerun()
