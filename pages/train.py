"""Train: start a β-VAE / VAE / AE / PCA run in the background, watch it live, compare runs."""

import pandas as pd
import streamlit as st

from facelab.model import charts, evaluate, jobs, quality
from facelab.model.metrics import ACTIVE_KL_NATS
from facelab.model.models import ARCHS, AUGMENTS, RECONS, ModelConfig, ModelError, kind_of, kinds
from facelab.ui import nav, state
from facelab.ui.cache import evaluation_grids, model_stamp
from facelab.ui.text import HELP, db, md, when

ARCH_LABELS = {"pcares": "PCA start + learned residual", "paper": "β-VAE paper's network"}
AUGMENT_LABELS = {"none": "none", "shift": "move ±2 px", "flip": "mirror", "flip_shift": "mirror and move"}

st.title("Train")
w = state.require_workspace()
state.show_flash()
n_faces = w.summary()["faces"]
if n_faces == 0:
    st.info("This workspace has no faces yet: build a dataset on the **Dataset** page first.")
    nav.next_steps(("dataset", "Upload a video of your face"))
    st.stop()
runs = jobs.list_runs(w)

with st.expander("New run", expanded=not runs):
    with st.form("fl_new_run", border=False):
        d = ModelConfig()  # the one set of defaults, shared with `facelab train`
        c1, c2, c3, c4, c5 = st.columns(5)
        kind = c1.selectbox("Model", kinds(), index=kinds().index(d.kind),
                            format_func=lambda k: kind_of(k).label, key="fl_kind")
        arch = c2.selectbox("Network", list(ARCHS), index=list(ARCHS).index(d.arch),
                            format_func=ARCH_LABELS.get, key="fl_arch")
        beta = c3.number_input("β (β-VAE only)", 0.0, 100.0, float(d.beta), 0.5, key="fl_beta",
                               help="1 keeps the most detail; above 1 trades detail for disentangled latents")
        latent_sizes = [2, 4, 8, 16, 32, 64, 128]
        latent = c4.selectbox("Latent size", latent_sizes, index=latent_sizes.index(d.latent_dim), key="fl_latent")
        steps = c5.number_input("Training steps", 1, 1_000_000, d.steps, 100, key="fl_steps",
                                help=f"Optimizer steps of {d.batch_size} faces each, whatever the dataset's "
                                     f"size; {d.steps:,} take 3-4 minutes on 2 free CPU cores")
        c1, c2, c3, c4, c5 = st.columns(5)
        batches = [16, 32, 64, 128, 256]
        batch = c1.selectbox("Batch size", batches, index=batches.index(d.batch_size), key="fl_batch")
        recon = c2.selectbox("Reconstruction loss", list(RECONS), index=list(RECONS).index(d.recon),
                             format_func=lambda r: {"bce": "Bernoulli (BCE)", "mse": "Gaussian (MSE)"}[r],
                             key="fl_recon")
        lr = c3.number_input("Learning rate", 1e-6, 1e-1, d.lr, format="%.0e", key="fl_lr")
        augment = c4.selectbox("Augmentation", list(AUGMENTS), index=list(AUGMENTS).index(d.augment),
                               format_func=AUGMENT_LABELS.get, key="fl_augment",
                               help="Small random moves of the training crops keep a short clip from being "
                                    "learned by heart: held-out faces come out sharper")
        seed = c5.number_input("Seed", 0, 2**31 - 1, d.seed, key="fl_seed")
        name = st.text_input("Name (optional)", max_chars=64, key="fl_run_name")
        if st.form_submit_button("Start training", type="primary"):
            try:
                config = ModelConfig(kind=kind, arch=arch, latent_dim=int(latent), beta=float(beta),
                                     image_size=w.crop_size, recon=recon, lr=float(lr),
                                     batch_size=int(batch), steps=int(steps), seed=int(seed), augment=augment)
                run_id = jobs.create_run(w, config, name.strip() or None)
                jobs.start(w, run_id)
            except (ModelError, jobs.JobError) as e:
                st.error(md(e))
            else:
                st.session_state[state.RUN] = run_id
                st.rerun()

if not runs:
    st.info(f"No runs yet. {n_faces} faces are ready: start one above.")
    st.stop()

ids = [r.run_id for r in runs]
by_id = {r.run_id: r for r in runs}
current = st.session_state.get(state.RUN)
if current not in ids:
    current = ids[0]
run_id = st.selectbox(
    "Run", ids, index=ids.index(current),
    format_func=lambda i: f"{by_id[i].name} · {by_id[i].state}",
)
st.session_state[state.RUN] = run_id


@st.fragment(run_every=1.0 if by_id[run_id].active else None)
def live(run_id: str, was_active: bool) -> None:
    """Progress, buttons and curves of one run; polls SQLite every second while it trains."""
    s = jobs.status(w, run_id)
    if was_active and not s.active:
        st.rerun(scope="app")  # finished: refresh the runs table and stop polling
    eta = f" · about {s.eta_s:.0f} s left" if s.eta_s else ""
    st.progress(s.fraction, text=f"{s.state} · {s.budget}{eta}")
    if s.error and s.state in ("failed", "dead"):
        st.error(md(s.error))
    b1, b2, b3 = st.columns([1, 1, 6])
    if s.active and b1.button("Cancel", key="fl_cancel"):
        jobs.cancel(w, run_id)
        st.rerun(scope="app")
    if s.state in ("cancelled", "failed", "dead") and b1.button("Resume", key="fl_resume"):
        jobs.resume(w, run_id)
        st.rerun(scope="app")
    epochs = jobs.epoch_metrics(w, run_id)
    if not epochs:
        st.caption(f"Waiting for the first evaluation (every {s.config.eval_every} steps)…")
        return
    last = epochs[-1]
    m = st.columns(4)
    m[0].metric("Held-out PSNR", db(last.get("val_psnr")), help=HELP["held-out PSNR"])
    m[1].metric("Held-out SSIM", f"{last.get('val_ssim', 0):.3f}")
    m[2].metric("Active latent units", last.get("active_units", "–"))
    m[3].metric("Images / s", f"{last.get('images_per_s', 0):,.0f}")
    q = quality.run_report(w, s)
    if q["mean_crop_psnr"] is not None:
        st.caption(f"On the same held-out faces: the mean crop {db(q['mean_crop_psnr'])}, "
                   f"PCA with 32 components {db(q['pca32_psnr'])}.")
    if q["warning"]:
        st.warning(q["warning"], icon="⚠️")
    left, right = st.columns(2)
    left.altair_chart(charts.loss_curves(epochs), width="stretch")
    right.altair_chart(charts.metric_curves({s.name: epochs}, "val_psnr", "Held-out PSNR (dB)"),
                       width="stretch")
    if last.get("kl_per_dim"):
        st.altair_chart(charts.kl_per_dim(last["kl_per_dim"], ACTIVE_KL_NATS), width="stretch")
        st.caption(f"KL per latent dimension: {HELP['KL per latent dimension']}")


live(run_id, by_id[run_id].active)
if by_id[run_id].state == "done":
    nav.next_steps(("explore", "See every face on the map"), ("label", "Label expressions"))

st.subheader("All runs")
reports = {r.run_id: quality.run_report(w, r) for r in runs}
table = pd.DataFrame([
    {
        "run": r.name, "model": r.config.spec.label, "β": r.config.effective_beta,
        "latent": r.config.latent_dim, "progress": r.budget, "state": r.state,
        "held-out PSNR": db(r.metrics.get("val_psnr")), "mean crop PSNR": db(reports[r.run_id]["mean_crop_psnr"]),
        "PCA-32 PSNR": db(reports[r.run_id]["pca32_psnr"]), "active units": r.metrics.get("active_units"),
        "learned nothing": bool(reports[r.run_id]["warning"]), "started": when(r.created_at),
    }
    for r in runs
])
st.dataframe(table, hide_index=True, width="stretch", column_config={
    "active units": st.column_config.NumberColumn(help=HELP["active units"]),
    "held-out PSNR": st.column_config.TextColumn(help=HELP["held-out PSNR"])})
compare = st.multiselect("Compare runs", ids, default=ids[: min(3, len(ids))],
                         format_func=lambda i: by_id[i].name)
curves = {by_id[i].name: jobs.epoch_metrics(w, i) for i in compare}
if not any(curves.values()):  # e.g. the only run is still before its first evaluation
    st.caption("Here the held-out PSNR and loss of the chosen runs are drawn side by side, one line a run, "
               "from each run's first evaluation on"
               + ("." if len(runs) > 1 else "; start another run (another β or latent size, say) to compare it "
                  "with this one."))
else:
    left, right = st.columns(2)
    left.altair_chart(charts.metric_curves(curves, "val_psnr", "Held-out PSNR (dB)"), width="stretch")
    right.altair_chart(charts.metric_curves(curves, "val_loss", "Held-out loss"), width="stretch")

st.subheader("Evaluate")
selected = by_id[run_id]
if selected.state != "done":
    st.caption("Reconstructions, samples and traversals appear here when the run is done.")
else:
    grids = evaluation_grids(str(w.path), run_id, model_stamp(w, run_id), 0, w.crops_key())
    tabs = st.tabs(["Reconstructions", "Random samples", "Three-point check", "Traversals", "Compression curve"])
    tabs[0].image(grids["reconstructions"], width=640,
                  caption=f"Held-out frames (rows 1, 3) and their reconstructions · PSNR {db(float(grids['psnr']))}")
    tabs[1].image(grids["samples"], width=640, caption="Faces decoded from random latents (the prior)")
    tabs[2].image(grids["triangle"], width=480, caption=(
        "Three random latents at the corners, blends between them inside: the same face "
        "everywhere means mode collapse"))
    tabs[3].image(grids["traversals"], width=480, caption=(
        "Rows: latent dimensions " + ", ".join(map(str, grids["traversal_dims"].tolist()))
        + " (most used first); columns: −3σ … +3σ"))
    with tabs[4]:
        st.caption("How many latent variables does your face's expression need? Trains small PCA, "
                   "autoencoder and β-VAE models (32 px crops, 10 epochs each) for several latent sizes "
                   "and compares their held-out PSNR. Takes a minute or two.")
        if st.button("Compute the compression curve", key="fl_compression"):
            bar = st.progress(0.0, text="Starting…")
            points = evaluate.workspace_compression_curve(w, progress=lambda p: bar.progress(
                p["done"] / p["total"], text=(f"Training {p['kind']} with {p['latent_dim']} latents…"
                                              if "kind" in p else "Done")))
            bar.empty()
            st.session_state["fl_compression_points"] = points
        points = st.session_state.get("fl_compression_points")
        if points:
            st.altair_chart(charts.compression_curve(points), width="stretch")
with st.expander("Delete this run"):
    sure = st.checkbox(f"Yes, delete **{md(selected.name)}**: its model, curves and files",
                       key=f"fl_delete_run_sure_{run_id}")
    if st.button("Delete this run", type="primary", disabled=not sure, key="fl_delete_run",
                 help="Removes its model, curves and files; there is no undo."):
        jobs.delete_run(w, run_id)
        st.session_state.pop(state.RUN, None)
        state.flash(f"Deleted run {selected.name}.")
        st.rerun()
