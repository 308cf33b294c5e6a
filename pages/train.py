"""Train: start a β-VAE / VAE / AE / PCA run in the background, watch it live, compare runs."""

import pandas as pd
import streamlit as st

from facelab import charts, evaluate, jobs
from facelab.metrics import ACTIVE_KL_NATS
from facelab.models import ModelConfig, ModelError
from facelab.ui import state
from facelab.ui.cache import evaluation_grids, model_stamp

KIND_LABELS = {
    "betavae": "β-VAE", "vae": "VAE (β = 1)", "ae": "Autoencoder (deterministic)", "pca": "PCA baseline",
}

st.title("Train")
w = state.require_workspace()
state.show_flash()
n_faces = w.summary()["faces"]
if n_faces == 0:
    st.info("This workspace has no faces yet: build a dataset on the **Dataset** page first.")
    st.stop()
runs = jobs.list_runs(w)

with st.expander("New run", expanded=not runs):
    with st.form("fl_new_run", border=False):
        c1, c2, c3, c4 = st.columns(4)
        kind = c1.selectbox("Model", list(KIND_LABELS), format_func=KIND_LABELS.get, key="fl_kind")
        beta = c2.number_input("β (β-VAE only)", 0.0, 100.0, 4.0, 0.5, key="fl_beta")
        latent = c3.selectbox("Latent size", [2, 4, 8, 16, 32, 64, 128], index=4, key="fl_latent")
        epochs = c4.number_input("Epochs", 1, 10_000, 50, key="fl_epochs")
        c1, c2, c3, c4 = st.columns(4)
        batch = c1.selectbox("Batch size", [16, 32, 64, 128, 256], index=2, key="fl_batch")
        recon = c2.selectbox("Reconstruction loss", ["bce", "mse"], format_func=lambda r: {
            "bce": "Bernoulli (BCE)", "mse": "Gaussian (MSE)"}[r], key="fl_recon")
        lr = c3.number_input("Learning rate", 1e-6, 1e-1, 1e-4, format="%.0e", key="fl_lr")
        seed = c4.number_input("Seed", 0, 2**31 - 1, 0, key="fl_seed")
        name = st.text_input("Name (optional)", max_chars=64, key="fl_run_name")
        if st.form_submit_button("Start training", type="primary"):
            try:
                config = ModelConfig(kind=kind, latent_dim=int(latent), beta=float(beta),
                                     image_size=w.get_meta("crop_size", 64), recon=recon, lr=float(lr),
                                     batch_size=int(batch), epochs=int(epochs), seed=int(seed))
                run_id = jobs.create_run(w, config, name.strip() or None)
                jobs.start(w, run_id)
            except (ModelError, jobs.JobError) as e:
                st.error(str(e))
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
    st.progress(s.fraction, text=f"{s.state} · epoch {s.epoch}/{s.epochs}{eta}")
    if s.error and s.state in ("failed", "dead"):
        st.error(s.error)
    b1, b2, b3 = st.columns([1, 1, 6])
    if s.active and b1.button("Cancel", key="fl_cancel"):
        jobs.cancel(w, run_id)
        st.rerun(scope="app")
    if s.state in ("cancelled", "failed", "dead") and b1.button("Resume", key="fl_resume"):
        jobs.resume(w, run_id)
        st.rerun(scope="app")
    epochs = jobs.epoch_metrics(w, run_id)
    if not epochs:
        st.caption("Waiting for the first epoch…")
        return
    last = epochs[-1]
    m = st.columns(4)
    m[0].metric("Held-out PSNR", f"{last.get('val_psnr', 0):.2f} dB")
    m[1].metric("Held-out SSIM", f"{last.get('val_ssim', 0):.3f}")
    m[2].metric("Active latent units", last.get("active_units", "–"))
    m[3].metric("Images / s", f"{last.get('images_per_s', 0):,.0f}")
    left, right = st.columns(2)
    left.altair_chart(charts.loss_curves(epochs), width="stretch")
    right.altair_chart(charts.metric_curves({s.name: epochs}, "val_psnr", "Held-out PSNR (dB)"),
                       width="stretch")
    if last.get("kl_per_dim"):
        st.altair_chart(charts.kl_per_dim(last["kl_per_dim"], ACTIVE_KL_NATS), width="stretch")


live(run_id, by_id[run_id].active)

st.subheader("All runs")
table = pd.DataFrame([
    {
        "run": r.name, "model": KIND_LABELS.get(r.kind, r.kind), "β": r.config.effective_beta,
        "latent": r.config.latent_dim, "epochs": f"{r.epoch}/{r.epochs}", "state": r.state,
        "held-out PSNR": r.metrics.get("val_psnr"), "active units": r.metrics.get("active_units"),
        "started": r.created_at,
    }
    for r in runs
])
st.dataframe(table, hide_index=True, width="stretch")
compare = st.multiselect("Compare runs", ids, default=ids[: min(3, len(ids))],
                         format_func=lambda i: by_id[i].name)
if compare:
    curves = {by_id[i].name: jobs.epoch_metrics(w, i) for i in compare}
    left, right = st.columns(2)
    left.altair_chart(charts.metric_curves(curves, "val_psnr", "Held-out PSNR (dB)"), width="stretch")
    right.altair_chart(charts.metric_curves(curves, "val_loss", "Held-out loss"), width="stretch")

st.subheader("Evaluate")
selected = by_id[run_id]
if selected.state != "done":
    st.caption("Reconstructions, samples and traversals appear here when the run is done.")
else:
    grids = evaluation_grids(str(w.path), run_id, model_stamp(w, run_id), 0)
    tabs = st.tabs(["Reconstructions", "Random samples", "Three-point check", "Traversals", "Compression curve"])
    tabs[0].image(grids["reconstructions"], width=640,
                  caption=f"Held-out frames (rows 1, 3) and their reconstructions · PSNR {float(grids['psnr']):.2f} dB")
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
if st.button("Delete this run", key="fl_delete_run", help="Removes its model, curves and files."):
    jobs.delete_run(w, run_id)
    st.session_state.pop(state.RUN, None)
    state.flash(f"Deleted run {selected.name}.")
    st.rerun()
