"""`facelab train`, `facelab runs`, `facelab eval`.

`facelab train --workspace W --run R` is also the command the background job runner starts,
so a run behaves the same from a shell and from the app.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

from facelab.cli import CliError, add_workspace_arg, resolve_workspace

MODEL_OPTIONS = {  # flag: (ModelConfig field, type); the defaults are ModelConfig's
    "kind": ("kind", str), "arch": ("arch", str), "beta": ("beta", float),
    "latent": ("latent_dim", int), "steps": ("steps", int), "eval_every": ("eval_every", int),
    "batch": ("batch_size", int), "lr": ("lr", float), "lr_schedule": ("lr_schedule", str),
    "lr_warmup": ("lr_warmup_steps", int), "recon": ("recon", str), "seed": ("seed", int),
    "image_size": ("image_size", int), "warmup": ("kl_warmup_steps", int),
    "grad_clip": ("grad_clip", float), "augment": ("augment", str), "compile": ("compile", bool),
    "precision": ("precision", str),
}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a model (in the foreground; a line per evaluation)")
    add_workspace_arg(p)
    p.add_argument("--run", help="id of an existing run to train or resume (default: a new run)")
    p.add_argument("--name", help="display name of a new run")
    from facelab.model.model_config import (  # no torch
        ARCHS,
        AUGMENTS,
        LR_SCHEDULES,
        PRECISIONS,
        RECONS,
        ModelConfig,
        kinds,
    )

    d = ModelConfig()  # the one set of defaults, shared with the Train page
    g = p.add_argument_group("model options (for a new run; defaults in brackets)")
    g.add_argument("--kind", choices=kinds(), help=f"[{d.kind}]")
    g.add_argument("--arch", choices=ARCHS, help=f"network: pcares = mean + PCA basis + learned "
                   f"residual, paper = the β-VAE paper's [{d.arch}]")
    g.add_argument("--beta", type=float, help=f"β; above 1 trades detail for disentangling [{d.beta:g}]")
    g.add_argument("--latent", type=int, help=f"latent size [{d.latent_dim}]")
    g.add_argument("--steps", type=int, help=f"training length in optimizer steps [{d.steps}]")
    g.add_argument("--eval-every", dest="eval_every", type=int,
                   help=f"steps between held-out evaluations [{d.eval_every}]")
    g.add_argument("--epochs", type=int, help=argparse.SUPPRESS)  # gone: a clear message below
    g.add_argument("--batch", type=int, help=f"batch size [{d.batch_size}]")
    g.add_argument("--lr", type=float, help=f"learning rate [{d.lr:g}]")
    g.add_argument("--lr-schedule", dest="lr_schedule", choices=LR_SCHEDULES, help=f"[{d.lr_schedule}]")
    g.add_argument("--lr-warmup", dest="lr_warmup", type=int, help=f"learning-rate warm-up steps [{d.lr_warmup_steps}]")
    g.add_argument("--recon", choices=RECONS, help=f"mse = Gaussian, bce = Bernoulli [{d.recon}]")
    g.add_argument("--seed", type=int, help=f"[{d.seed}]")
    g.add_argument("--image-size", dest="image_size", type=int, choices=[32, 64, 128], help=f"[{d.image_size}]")
    g.add_argument("--warmup", type=int, help=f"KL warm-up steps [{d.kl_warmup_steps}]")
    g.add_argument("--grad-clip", dest="grad_clip", type=float, help=f"gradient-norm clip, 0 = none [{d.grad_clip:g}]")
    g.add_argument("--augment", choices=AUGMENTS, help=f"training-crop augmentation: shift = move each crop "
                   f"a pixel or two, flip = mirror half [{d.augment}]")
    g.add_argument("--compile", action="store_true", default=None, help="use torch.compile")
    g.add_argument("--precision", choices=PRECISIONS, help=f"training arithmetic: auto = bf16 on a CPU that "
                   f"computes it natively (faster), else fp32 [{d.precision}]")
    p.add_argument("--background", action="store_true",
                   help="start it as a background job and return (see `facelab runs`)")
    p.set_defaults(func=_train)

    p = sub.add_parser("runs", help="list a workspace's runs, with the mean crop's and PCA-32's held-out PSNR")
    add_workspace_arg(p)
    p.add_argument("--json", action="store_true", help="print a JSON list, one object per run")
    p.set_defaults(func=_runs)

    p = sub.add_parser("eval", help="held-out figures and PNG grids of a trained run")
    add_workspace_arg(p)
    p.add_argument("run")
    p.add_argument("--out", help="folder for the PNG grids (default: runs/<run>/eval)")
    p.set_defaults(func=_eval)

    p = sub.add_parser("compression", help="held-out PSNR against latent size for PCA, AE and β-VAE")
    add_workspace_arg(p)
    p.add_argument("--sizes", default="2,4,8,16,32", help="latent sizes, comma-separated")
    p.add_argument("--epochs", type=int, default=10, help="epochs per small model")
    p.set_defaults(func=_compression)


def _config_from_args(args: argparse.Namespace):
    from facelab.model.models import ModelConfig

    if getattr(args, "epochs", None) is not None:
        raise CliError("training length is counted in optimizer steps now: use --steps "
                       f"(default {ModelConfig().steps}) instead of --epochs")
    given = {field: typ(getattr(args, flag)) for flag, (field, typ) in MODEL_OPTIONS.items()
             if getattr(args, flag) is not None}
    return ModelConfig(**given), given


def _train(args: argparse.Namespace) -> int:
    from facelab.model import jobs

    w = resolve_workspace(args.workspace, args.home)
    config, given = _config_from_args(args)
    run_id = args.run
    if run_id is None:
        if "image_size" not in given:  # the workspace's crops, as the Train page does
            config = replace(config, image_size=w.crop_size)
        run_id = jobs.create_run(w, config, args.name)
        print(f"run {run_id}: {config.to_json()}", flush=True)
    else:
        if given:
            raise CliError(f"run {run_id!r} already has its settings; leave out "
                           + ", ".join("--" + f.replace("_", "-") for f in given))
        jobs.status(w, run_id)  # a clear error for an unknown run
    if args.background:
        jobs.start(w, run_id)
        st = jobs.status(w, run_id)
        print(f"run {run_id}: {st.state}" + (f" (pid {st.pid})" if st.pid else ""))
        return 0
    summary = jobs.run_job(w, run_id, echo=_echo)
    state = summary.get("state")
    if state == "failed":
        raise CliError(f"run {run_id} failed: {summary.get('error')}")
    if state == "cancelled":
        print(f"run {run_id}: cancelled; `facelab train --workspace {args.workspace} --run {run_id}` resumes it")
        return 1
    if summary.get("split_note"):
        print(f"note: {summary['split_note']}")
    from facelab.model.quality import run_report

    report = run_report(w, jobs.status(w, run_id))
    print(f"run {run_id}: done" + _versus_baselines(report))
    if report["warning"]:
        print(f"warning: {report['warning']}")
    return 0


def _fmt(v, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def _echo(p: dict) -> None:
    phase = p.get("phase")
    if phase == "start" and p.get("note"):
        print(p["note"], flush=True)
    if phase in ("epoch", "done") and p.get("metrics") and (phase == "epoch" or p.get("epochs") == 1):
        m = p["metrics"]
        d = len(m.get("kl_per_dim") or [])
        where = (f"step {m['step']}/{p['total_steps']}" if "step" in m and p.get("total_steps")
                 else f"epoch {m['epoch']}/{p['epochs']}")  # PCA, and rows of older runs
        print(
            f"{where}  loss {_fmt(m.get('train_loss'), '.1f')}  "
            f"val {_fmt(m.get('val_loss'), '.1f')}  PSNR {m['val_psnr']:.2f} dB  SSIM {m['val_ssim']:.3f}  "
            f"active {m['active_units']}/{d}  {m['seconds']:.1f} s",
            flush=True,
        )
    if phase == "cancelled":
        print(f"stopped at step {p['global_step']} of {p['total_steps']}; checkpoint saved", flush=True)


def _versus_baselines(report: dict) -> str:
    """' · held-out PSNR X dB (mean crop Y, PCA-32 Z)', or '' before any figure."""
    if report["val_psnr"] is None:
        return ""
    return (f" · held-out PSNR {report['val_psnr']:.2f} dB (mean crop {_fmt(report['mean_crop_psnr'], '.2f')}, "
            f"PCA-32 {_fmt(report['pca32_psnr'], '.2f')})")


def _runs(args: argparse.Namespace) -> int:
    import json

    from facelab.model import jobs
    from facelab.model.quality import run_report

    w = resolve_workspace(args.workspace, args.home)
    runs = jobs.list_runs(w)
    reports = [run_report(w, r) for r in runs]
    if args.json:
        print(json.dumps(reports, indent=1))
        return 0
    if not runs:
        print(f"no runs in workspace {w.name}")
        return 0
    print(f"{'run':<34} {'name':<20} {'state':<10} {'progress':>13} {'val PSNR':>9} {'mean crop':>9} "
          f"{'PCA-32':>7} {'active':>7}")
    for r, q in zip(runs, reports):
        print(f"{r.run_id:<34} {r.name[:20]:<20} {r.state:<10} {r.budget:>13} "
              f"{_fmt(q['val_psnr'], '.2f'):>9} {_fmt(q['mean_crop_psnr'], '.2f'):>9} "
              f"{_fmt(q['pca32_psnr'], '.2f'):>7} {_fmt(q['active_units'], 'd'):>7}")
    for q in reports:
        if q["warning"]:
            print(f"warning: run {q['id']}: {q['warning']}")
    return 0


def _eval(args: argparse.Namespace) -> int:
    from facelab.model.evaluate import evaluate_run

    w = resolve_workspace(args.workspace, args.home)
    out = Path(args.out) if args.out else w.run_dir(args.run) / "eval"
    r = evaluate_run(w, args.run, out)
    print(f"{'figure':<16} value")
    print(f"{'kind':<16} {r['kind']}")
    print(f"{'held-out faces':<16} {r['n']}")
    print(f"{'PSNR':<16} {r['psnr']:.2f} dB")
    print(f"{'SSIM':<16} {r['ssim']:.3f}")
    print(f"{'active units':<16} {r['active_units']}/{r['latent_dim']}")
    if r["split_note"]:
        print(f"note: {r['split_note']}")
    for name, path in r["files"].items():
        print(f"wrote {path}")
    return 0


def _compression(args: argparse.Namespace) -> int:
    from facelab.model.evaluate import workspace_compression_curve

    w = resolve_workspace(args.workspace, args.home)
    try:
        sizes = [int(x) for x in args.sizes.split(",") if x.strip()]
    except ValueError:
        raise CliError(f"--sizes must be whole numbers separated by commas, not {args.sizes!r}") from None

    def progress(p: dict) -> None:
        if "kind" in p:
            print(f"  training {p['kind']} with {p['latent_dim']} latents ({p['done'] + 1}/{p['total']})",
                  file=sys.stderr, flush=True)

    points = workspace_compression_curve(w, latent_sizes=sizes, epochs=args.epochs, progress=progress)
    print(f"{'model':<8} {'latents':>7} {'PSNR dB':>8} {'SSIM':>6} {'active':>6}")
    for p in points:
        print(f"{p['kind']:<8} {p['latent_dim']:>7} {p['val_psnr']:>8.2f} {p['val_ssim']:>6.3f} {p['active_units']:>6}")
    return 0
