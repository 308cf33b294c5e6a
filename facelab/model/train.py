"""Training: the β-VAE loop, exact checkpoints, and `train_run` that trains a workspace's run.

Budget: `config.steps` optimizer steps, whatever the dataset's size, evaluated on the held-out
crops every `config.eval_every` steps (one metrics row each; the database calls a row an
"epoch"). A loss that turns NaN or infinite stops the run with a TrainError.

Speed: the whole dataset sits on the device as one uint8 N×S×S×3 tensor; a batch is one index
into it, converted to float channels_last in one op (NHWC memory *is* channels_last NCHW).
The loop never calls `.item()` per step (losses are summed on the device and read once per
interval); validation runs under `inference_mode` in batches of 512.

Exact resume: every random number comes from generators the `Trainer` owns (batch order, a
seeded generator per pass over the data; reparameterisation noise); a checkpoint holds the
noise generator with the model, the optimizer, the step and the loss sums so far, so a run
stopped anywhere and resumed ends with the same weights and metrics as one never stopped.
"""

from __future__ import annotations

import io
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from facelab.errors import FacelabError
from facelab.model import metrics
from facelab.model.device import pick_device, train_dtype
from facelab.model.evaluate import heldout_figures
from facelab.model.models import (
    MSE_SIGMA,
    SHIFT_PX,
    ModelConfig,
    PCABaseline,
    build_model,
    resize_images,
    save_model,
    to_float_images,
)
from facelab.store.db import now_iso
from facelab.store.storage import make_folder, write_atomic
from facelab.store.workspace import Workspace, WorkspaceError

CHECKPOINT_FILE = "checkpoint.pt"
VAL_BATCH = 512

Progress = Callable[[dict], None]
ShouldStop = Callable[[], bool]


class TrainError(FacelabError):
    """Training cannot start or go on; the message is for the user."""


def train_threads() -> int:
    """Threads for training: every core this process may use, or FACELAB_THREADS."""
    env = os.environ.get("FACELAB_THREADS", "").strip()
    if env.isdigit() and int(env) > 0:
        return int(env)
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


# --- data ----------------------------------------------------------------------------------
@dataclass
class Split:
    train_ids: np.ndarray
    val_ids: np.ndarray
    note: str = ""  # set when the held-out set is not the dataset's own 'val' split


def split_ids(workspace: Workspace) -> Split:
    """Crops to train on and to hold out (`Workspace.held_out_split`), or a `TrainError`
    saying why training cannot start."""
    train, val, note = workspace.held_out_split()
    if len(train) + len(val) == 0:
        raise TrainError(
            f"workspace {workspace.name!r} has no faces: build a dataset from a video first"
        )
    if len(train) + len(val) < 2:
        raise TrainError("training needs at least 2 faces (one to learn from, one to check)")
    if len(train) == 0:
        raise TrainError("every face is in the held-out ('val') split: nothing left to train on")
    return Split(train, val, note)


def load_images(workspace: Workspace, ids: np.ndarray, size: int) -> np.ndarray:
    """The crops with these ids, uint8 N×size×size×3, in memory."""
    faces = workspace.faces()
    if len(ids) and ids.max() >= len(faces):
        raise WorkspaceError(f"workspace {workspace.name!r} is damaged: a face id has no crop")
    return resize_images(np.ascontiguousarray(faces[ids]), size)


# --- the loop ------------------------------------------------------------------------------
class Trainer:
    """Trains one network on in-memory crops for `config.steps` optimizer steps, evaluating
    every `config.eval_every`; `state_dict()` is an exact checkpoint.

    Steps, not epochs: the data is cycled in shuffled passes, each pass's order drawn from its
    own seeded generator, so where a step's batch comes from depends only on the step number.
    """

    def __init__(
        self,
        config: ModelConfig,
        train_images: np.ndarray,
        val_images: np.ndarray,
        device: torch.device | None = None,
    ):
        if len(train_images) == 0:
            raise TrainError("no training images")
        if config.legacy_epochs:
            raise TrainError("this run was made by an older facelab (its budget is in epochs) and "
                             "cannot be trained further: start a new run")
        self.config = config
        self.device = device or pick_device()
        model = build_model(config)
        model.init_from_data(train_images)
        self.model = model.to(self.device).to(memory_format=torch.channels_last)
        self.net = torch.compile(self.model) if config.compile else self.model
        fused = self.device.type in ("cpu", "cuda")
        self.opt = torch.optim.Adam(self.model.parameters(), lr=config.lr, fused=fused)
        self.train_data = torch.from_numpy(np.ascontiguousarray(train_images)).to(self.device)
        self.val_data = torch.from_numpy(np.ascontiguousarray(val_images)).to(self.device)
        self.noise_gen = torch.Generator(device=self.device).manual_seed(config.seed + 1)
        self.amp = train_dtype(config.precision, self.device)  # None: fp32
        self.interval = 0  # evaluation intervals completed
        self.step = 0  # optimizer steps done in all
        self._perm: tuple[int, torch.Tensor] | None = None  # (pass, its order)
        self._sums = torch.zeros(3, dtype=torch.float64, device=self.device)  # loss, recon, kl
        self._seconds = 0.0  # training seconds spent in the current interval

    @property
    def precision(self) -> str:
        """What the training steps compute in, for the run's summary: "bf16" or "fp32"."""
        return "bf16" if self.amp == torch.bfloat16 else "fp32"

    @property
    def n_train(self) -> int:
        return len(self.train_data)

    @property
    def steps_per_pass(self) -> int:
        return math.ceil(self.n_train / self.config.batch_size)

    @property
    def done(self) -> bool:
        return self.step >= self.config.steps

    def beta_at(self, step: float) -> float:
        """β with the optional linear KL warm-up (from 0 to β over kl_warmup_steps)."""
        beta = self.config.effective_beta
        warm = self.config.kl_warmup_steps
        return beta if warm <= 0 else beta * min(1.0, step / warm)

    def lr_at(self, step: int) -> float:
        """The learning rate of optimizer step `step` (0-based): linear warm-up, then cosine
        decay to 0 at the end of the run (or constant)."""
        c = self.config
        lr = c.lr * min(1.0, (step + 1) / c.lr_warmup_steps) if c.lr_warmup_steps > 0 else c.lr
        if c.lr_schedule == "cosine":
            lr *= 0.5 * (1.0 + math.cos(math.pi * min(step, c.steps) / c.steps))
        return lr

    def _batch_ids(self, step: int) -> torch.Tensor:
        p, i = divmod(step, self.steps_per_pass)
        if self._perm is None or self._perm[0] != p:
            gen = torch.Generator().manual_seed(self.config.seed * 1_000_003 + p)
            self._perm = (p, torch.randperm(self.n_train, generator=gen).to(self.device))
        bs = self.config.batch_size
        return self._perm[1][i * bs : (i + 1) * bs]

    # -- checkpoint -----------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {
            "model": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            "optimizer": self.opt.state_dict(),
            "interval": self.interval,
            "step": self.step,
            "noise_state": self.noise_gen.get_state(),
            "sums": self._sums.cpu(),
            "seconds": self._seconds,
            "n_train": self.n_train,
        }

    def load_state_dict(self, state: dict) -> None:
        if "interval" not in state:
            raise TrainError("this checkpoint was written by an older facelab (epochs): start a new run")
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["optimizer"])
        self.interval, self.step = int(state["interval"]), int(state["step"])
        self.noise_gen.set_state(state["noise_state"])
        self._sums = state["sums"].to(self.device)
        self._seconds = float(state["seconds"])

    # -- one evaluation interval ----------------------------------------------------------
    def _recon(self, out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """The reconstruction term, summed (divide by the batch size for a per-image loss)."""
        if self.config.recon == "bce":
            if self.model.logits:
                return F.binary_cross_entropy_with_logits(out, x, reduction="sum")
            return F.binary_cross_entropy(out.clamp(1e-4, 1 - 1e-4), x, reduction="sum")
        y = torch.sigmoid(out) if self.model.logits else out
        return F.mse_loss(y, x, reduction="sum") / (2 * MSE_SIGMA**2)

    def _augment(self, x: torch.Tensor, step: int) -> torch.Tensor:
        """Move each crop by a few pixels (edges repeated) and/or mirror about half the batch,
        as `config.augment` says. Why: a clip of a few dozen crops is learned by heart within a few
        hundred steps and its held-out faces get worse from then on; mirrored and slightly moved
        copies are faces the person could have shown. Drawn from a generator seeded by the step,
        so a resumed run sees the same batches without keeping any state."""
        mode = self.config.augment
        if mode == "none":
            return x
        gen = torch.Generator().manual_seed(self.config.seed * 1_000_003 + 7_919 * (step + 1))
        n, _, h, w = x.shape
        if "flip" in mode:
            flip = (torch.rand(n, generator=gen) < 0.5).to(x.device)
            x = torch.where(flip[:, None, None, None], x.flip(-1), x)
        if "shift" in mode:
            reach = max(1, round(SHIFT_PX * w / 64))
            moves = torch.randint(-reach, reach + 1, (n, 2), generator=gen).to(x.device, x.dtype)
            theta = torch.zeros(n, 2, 3, device=x.device, dtype=x.dtype)
            theta[:, 0, 0] = theta[:, 1, 1] = 1.0
            theta[:, 0, 2] = 2.0 * moves[:, 0] / w  # whole pixels: bilinear sampling is exact
            theta[:, 1, 2] = 2.0 * moves[:, 1] / h
            grid = F.affine_grid(theta, list(x.shape), align_corners=False)
            x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
        return x.contiguous(memory_format=torch.channels_last)

    def _loss(self, x: torch.Tensor, beta: float):
        noise = None
        if not self.config.deterministic:
            noise = torch.randn(
                (len(x), self.config.latent_dim), generator=self.noise_gen, device=self.device
            )
        with torch.autocast(self.device.type, dtype=self.amp, enabled=self.amp is not None):
            out, mu, logvar = self.net(x, noise)
        out, mu, logvar = out.float(), mu.float(), logvar.float()  # the losses in fp32
        n = len(x)
        recon = self._recon(out, x) / n
        if self.config.deterministic:
            kl = torch.zeros((), device=self.device)
        else:
            kl = metrics.kl_per_dim_torch(mu, logvar).sum() / n
        return recon + beta * kl, recon, kl

    def interval_bounds(self) -> tuple[int, int]:
        """(first, end) global steps of the interval under way."""
        first = self.interval * self.config.eval_every
        return first, first + self.config.interval_steps(self.interval)

    def train_interval(
        self, should_stop: ShouldStop | None = None, on_step: Callable[[int, int], None] | None = None
    ) -> dict | None:
        """Run the rest of the current evaluation interval; its train metrics, or None when
        stopped early (at a step boundary, with the position kept for `state_dict`)."""
        self.model.train()
        first, end = self.interval_bounds()
        if self.step == first:
            self._sums.zero_()
            self._seconds = 0.0
        clip = self.config.grad_clip
        t0 = time.perf_counter()
        try:
            while self.step < end:
                if should_stop is not None and should_stop():
                    return None
                idx = self._batch_ids(self.step)
                x = self._augment(to_float_images(self.train_data[idx]), self.step)
                loss, recon, kl = self._loss(x, self.beta_at(self.step))
                for group in self.opt.param_groups:
                    group["lr"] = self.lr_at(self.step)
                self.opt.zero_grad(set_to_none=True)
                loss.backward()
                if clip > 0:
                    torch.nn.utils.clip_grad_norm_(self.model.parameters(), clip)
                self.opt.step()
                self._sums += torch.stack((loss.detach(), recon.detach(), kl.detach())).double() * len(idx)
                self.step += 1
                if on_step is not None:
                    on_step(self.step - first, end - first)
        finally:
            self._seconds += time.perf_counter() - t0
        seen = sum(min(self.config.batch_size, self.n_train - (s % self.steps_per_pass) * self.config.batch_size)
                   for s in range(first, end))
        sums = self._sums / seen
        if not torch.isfinite(sums).all():
            bad = "NaN" if torch.isnan(sums).any() else "infinite"
            raise TrainError(
                f"training diverged: the loss became {bad} between steps {first + 1} and {end}; "
                "the run stopped (try a lower learning rate, or gradient clipping)"
            )
        loss, recon, kl = sums.tolist()
        return {"train_loss": loss, "recon": recon, "kl": kl, "beta": self.beta_at(end),
                "lr": self.lr_at(end - 1)}

    @torch.inference_mode()
    def validate(self, images: torch.Tensor | None = None) -> dict:
        """Held-out figures: the reconstruction decodes μ (no sampling, so it spends no random
        numbers and is the same every time)."""
        self.model.eval()
        data = self.val_data if images is None else images
        n, d = len(data), self.config.latent_dim
        recon_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        psnr_sum = torch.zeros_like(recon_sum)
        ssim_sum = torch.zeros_like(recon_sum)
        kl_dims = torch.zeros(d, dtype=torch.float64, device=self.device)
        mus = []
        for i in range(0, n, VAL_BATCH):
            x = to_float_images(data[i : i + VAL_BATCH])
            mu, logvar = self.model.encode(x)
            out = self.model.decode(mu)
            y = metrics.to_8bit(self.model.image(out)) / 255.0  # as shown: heldout_figures' PSNR
            recon_sum += self._recon(out, x).double()
            if not self.config.deterministic:
                kl_dims += metrics.kl_per_dim_torch(mu, logvar).double().sum(0)
            mus.append(mu)
            psnr_sum += metrics.psnr_torch(y, x).double().sum()
            ssim_sum += metrics.ssim_torch(y, x).double().sum()
        if self.config.deterministic:  # no posterior: a stand-in, and no KL term in the loss
            kl_dims = torch.from_numpy(metrics.kl_stand_in(torch.cat(mus).float().cpu().numpy()))
            kl_total = 0.0
        else:
            kl_dims = kl_dims / n
            kl_total = float(kl_dims.sum())
        recon = float(recon_sum) / n
        kl_list = [float(v) for v in kl_dims.cpu()]
        return {
            "val_loss": recon + self.config.effective_beta * kl_total,
            "val_recon": recon,
            "val_kl": kl_total,
            "val_psnr": float(psnr_sum) / n,
            "val_ssim": float(ssim_sum) / n,
            "kl_per_dim": kl_list,
            "active_units": metrics.active_units(kl_list),
        }

    def run_interval(self, should_stop: ShouldStop | None = None, on_step=None) -> dict | None:
        """Train the rest of this interval and validate; its metrics row, or None if stopped.
        The row's "epoch" is the interval's number (1-based; the database's name for it) and
        "step" the optimizer steps done by its end."""
        row = self.train_interval(should_stop, on_step)
        if row is None:
            return None
        first, end = self.interval_bounds()
        seconds = self._seconds
        t0 = time.perf_counter()
        row.update(self.validate())
        self.interval += 1
        row["epoch"] = self.interval
        row["step"] = self.step
        row["seconds"] = seconds + (time.perf_counter() - t0)
        row["images_per_s"] = (end - first) * self.config.batch_size / seconds if seconds > 0 else None
        return row

    def run(self, should_stop: ShouldStop | None = None) -> dict | None:
        """Train to the end of the budget; the last interval's row (None if stopped)."""
        row = None
        while not self.done:
            row = self.run_interval(should_stop)
            if row is None:
                return None
        return row


# --- a workspace's run -------------------------------------------------------------------
def load_run_config(workspace: Workspace, run_id: str) -> ModelConfig:
    with workspace.connect() as c:
        row = c.execute("SELECT config FROM runs WHERE id = ?", (run_id,)).fetchone()
    if row is None:
        raise TrainError(f"no run {run_id!r} in workspace {workspace.name!r}")
    return ModelConfig.from_json(row["config"])


def _save_checkpoint(path: Path, trainer: Trainer) -> None:
    state = trainer.state_dict()
    write_atomic(path, lambda f: torch.save(state, f))


def _load_checkpoint(path: Path) -> dict:
    return torch.load(io.BytesIO(path.read_bytes()), map_location="cpu", weights_only=True)


def _write_epoch(workspace: Workspace, run_id: str, row: dict) -> None:
    with workspace.connect(write=True) as c:
        c.execute(
            "INSERT OR REPLACE INTO epochs(run_id, epoch, metrics) VALUES(?, ?, ?)",
            (run_id, row["epoch"], json.dumps(row)),
        )
        c.execute("UPDATE runs SET updated_at = ? WHERE id = ?", (now_iso(), run_id))


def _write_summary(workspace: Workspace, run_id: str, summary: dict) -> None:
    with workspace.connect(write=True) as c:
        c.execute(
            "UPDATE runs SET summary = ?, updated_at = ? WHERE id = ?",
            (json.dumps(summary), now_iso(), run_id),
        )


def _drop_epochs_after(workspace: Workspace, run_id: str, epoch: int) -> None:
    """Rows of intervals the checkpoint does not hold (written just before a crash) go."""
    with workspace.connect(write=True) as c:
        c.execute("DELETE FROM epochs WHERE run_id = ? AND epoch > ?", (run_id, epoch))


def _summary(config: ModelConfig, last: dict | None, split: Split, state: str, **extra) -> dict:
    last = last or {}
    keys = ("train_loss", "val_loss", "val_psnr", "val_ssim", "active_units")
    return {
        "state": state,
        "steps": 0 if config.spec.fitted else config.steps,
        "steps_done": last.get("step", 0),
        **{k: last.get(k) for k in keys},
        "n_train": int(len(split.train_ids)),
        "n_val": int(len(split.val_ids)),
        "split_note": split.note,
        **extra,
    }


def train_run(
    workspace: Workspace,
    run_id: str,
    *,
    progress: Progress | None = None,
    should_stop: ShouldStop | None = None,
) -> dict:
    """Train (or resume) the run to `config.steps`; returns the final summary.

    Each evaluation interval writes its metrics row, then an atomic checkpoint; `should_stop()`
    is checked at every step and, when true, the position is checkpointed and the summary says
    state 'cancelled'. A loss that turns NaN or infinite raises TrainError (the job runner marks
    the run 'failed' with its message; the last good checkpoint stays). `progress(dict)` gets
    at most about one update a second plus one per interval.
    """
    config = load_run_config(workspace, run_id)
    run_dir = make_folder(workspace.run_dir(run_id))  # never recreates a deleted workspace
    torch.set_num_threads(train_threads())
    split = split_ids(workspace)
    train_images = load_images(workspace, split.train_ids, config.image_size)
    val_images = load_images(workspace, split.val_ids, config.image_size)
    if config.spec.fitted:
        return _fit_pca(workspace, run_id, config, split, train_images, val_images, progress)

    device = pick_device()
    trainer = Trainer(config, train_images, val_images, device)
    ckpt_path = run_dir / CHECKPOINT_FILE
    note = ""
    if ckpt_path.exists():
        state = _load_checkpoint(ckpt_path)
        if state["n_train"] != trainer.n_train:
            raise TrainError(
                f"the dataset changed since this run's checkpoint ({state['n_train']} training "
                f"faces then, {trainer.n_train} now): start a new run instead of resuming"
            )
        trainer.load_state_dict(state)
        note = f"resumed at step {trainer.step + 1} of {config.steps}"
    _drop_epochs_after(workspace, run_id, trainer.interval)

    t_start = time.monotonic()
    last_report = 0.0
    last_row: dict | None = None
    step_s: float | None = None  # seconds per step, from the last interval

    def report(phase: str, **fields) -> None:
        if progress is not None:
            first, end = trainer.interval_bounds()
            progress({"phase": phase, "epoch": trainer.interval, "epochs": config.intervals,
                      "step": trainer.step - first, "steps": max(1, end - first),
                      "global_step": trainer.step, "total_steps": config.steps, **fields})

    def on_step(step: int, steps: int) -> None:
        nonlocal last_report
        now = time.monotonic()
        if progress is None or now - last_report < 1.0:
            return
        last_report = now
        eta = step_s * (config.steps - trainer.step) if step_s is not None else None
        report("train", eta_s=eta)

    report("start", note=note)
    while not trainer.done:
        row = trainer.run_interval(should_stop, on_step)
        if row is None:
            _save_checkpoint(ckpt_path, trainer)
            summary = _summary(config, last_row, split, "cancelled", device=str(device),
                               precision=trainer.precision, stopped_at={"step": trainer.step})
            _write_summary(workspace, run_id, summary)
            report("cancelled")
            return summary
        _write_epoch(workspace, run_id, row)
        _save_checkpoint(ckpt_path, trainer)
        last_row = row
        step_s = row["seconds"] / max(1, config.interval_steps(trainer.interval - 1))
        report("epoch", metrics=row, eta_s=step_s * (config.steps - trainer.step))

    if last_row is None:  # already trained to the end: read the last row back
        rows = _epoch_rows(workspace, run_id)
        last_row = rows[-1] if rows else None
    save_model(run_dir, trainer.model, config)
    summary = _summary(config, last_row, split, "done", device=str(device), precision=trainer.precision,
                       seconds=round(time.monotonic() - t_start, 2))
    _write_summary(workspace, run_id, summary)
    report("done", metrics=last_row)
    return summary


def _epoch_rows(workspace: Workspace, run_id: str) -> list[dict]:
    with workspace.connect() as c:
        rows = c.execute(
            "SELECT metrics FROM epochs WHERE run_id = ? ORDER BY epoch", (run_id,)
        ).fetchall()
    return [json.loads(r["metrics"]) for r in rows]


def pca_metrics(pca: PCABaseline, val_images: np.ndarray) -> dict:
    """The same held-out figures as `Trainer.validate`, for a PCA baseline."""
    figs = heldout_figures(pca, val_images)
    return {"val_psnr": figs["psnr"], "val_ssim": figs["ssim"], "kl_per_dim": figs["kl_per_dim"],
            "active_units": figs["active_units"]}


def _fit_pca(workspace, run_id, config, split, train_images, val_images, progress) -> dict:
    t0 = time.perf_counter()
    pca = PCABaseline(config).fit(train_images)
    row = {"epoch": 1, "train_loss": None, "val_loss": None, "recon": None, "kl": None,
           **pca_metrics(pca, val_images), "seconds": time.perf_counter() - t0}
    _write_epoch(workspace, run_id, row)
    save_model(workspace.run_dir(run_id), pca, config)
    summary = _summary(config, row, split, "done", device="cpu")
    _write_summary(workspace, run_id, summary)
    if progress is not None:
        progress({"phase": "done", "epoch": 1, "epochs": 1, "metrics": row})
    return summary
