"""`facelab encode | map | timeline | clusters | labels export|import|counts | project` (latent space and labels)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from facelab.cli import CliError, add_workspace_arg, check_out, resolve_workspace
from facelab.data import labels as lb
from facelab.space import clusters as cl
from facelab.space import projection as pj
from facelab.space.latent import Latents, load_latents
from facelab.store.workspace import Workspace


def _workspace(args: argparse.Namespace) -> Workspace:
    return resolve_workspace(args.workspace, args.home)


def _latents(w: Workspace, run_id: str) -> Latents:
    """The run's latents, encoded now (with a progress line) if the cache is missing or stale."""
    if not w.run_dir(run_id).is_dir():
        raise CliError(f"no run {run_id!r} in workspace {w.name!r}")
    cached = load_latents(w, run_id)
    if cached is not None:
        return cached

    def progress(done: int, total: int) -> None:
        print(f"\rencoding {done}/{total} crops", end="", file=sys.stderr, flush=True)

    try:
        import facelab.model.models  # noqa: F401  (torch)
    except ModuleNotFoundError as e:
        raise CliError(f"cannot encode: {e.name} is not available") from None
    lat = load_latents(w, run_id, compute=True, progress=progress)
    print(file=sys.stderr)
    return lat


def _add_projection(p: argparse.ArgumentParser) -> None:
    p.add_argument("--method", choices=pj.METHODS, default="pca", help="map method (default pca)")
    p.add_argument("--perplexity", type=float, default=30.0, help="t-SNE perplexity")
    p.add_argument("--n-neighbors", type=int, default=15, help="UMAP neighbours")
    p.add_argument("--min-dist", type=float, default=0.1, help="UMAP minimum distance")
    p.add_argument("--seed", type=int, default=0)


def _settings(args: argparse.Namespace) -> pj.ProjectionSettings:
    return pj.ProjectionSettings(
        method=args.method, perplexity=args.perplexity, n_neighbors=args.n_neighbors,
        min_dist=args.min_dist, seed=args.seed,
    )


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("encode", help="encode every crop of a run (cached beside the run)")
    add_workspace_arg(p)
    p.add_argument("run")
    p.set_defaults(func=_encode)

    p = sub.add_parser("map", help="draw a run's latent map as a PNG")
    add_workspace_arg(p)
    p.add_argument("run")
    _add_projection(p)
    p.add_argument("--out", default="map.png", help="PNG file to write (default map.png)")
    p.add_argument("--k", type=int, help="colour by this many clusters (default: colour by capture order)")
    p.add_argument("--cluster-method", choices=cl.METHODS, default="kmeans")
    p.add_argument("--size", type=int, default=800, help="image side in pixels")
    p.set_defaults(func=_map)

    p = sub.add_parser("timeline", help="a label's probability over the video's time, as a PNG (or CSV)",
                       description="A probe learnt from the labelled frames scores every frame; the PNG "
                                   "draws P(LABEL) against seconds into the video, one line per video.")
    add_workspace_arg(p)
    p.add_argument("run")
    p.add_argument("--label", required=True)
    p.add_argument("--out", type=Path, required=True, help="output .png, or .csv for the numbers")
    p.set_defaults(func=_timeline)

    p = sub.add_parser("clusters", help="cluster a run's latents; print sizes (and a k sweep)")
    add_workspace_arg(p)
    p.add_argument("run")
    p.add_argument("--k", type=int, default=6)
    p.add_argument("--method", choices=cl.METHODS, default="kmeans")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sweep", action="store_true", help="also print inertia, BIC and silhouette for k = 2..12")
    p.set_defaults(func=_clusters)

    p = sub.add_parser("labels", help="export, import or count labels")
    actions = p.add_subparsers(dest="action", required=True)
    a = actions.add_parser("export", help="write labels as CSV (face_id,label,t_seconds,source)")
    add_workspace_arg(a)
    a.add_argument("--out", help="file to write (default: standard output)")
    a.set_defaults(func=_labels_export)
    a = actions.add_parser("import", help="add the labels of a CSV (all or nothing)")
    add_workspace_arg(a)
    a.add_argument("file")
    a.set_defaults(func=_labels_import)
    a = actions.add_parser("counts", help="frames per label")
    add_workspace_arg(a)
    a.set_defaults(func=_labels_counts)

    p = sub.add_parser("project", help="compute and cache a map (the app runs this in the background)")
    add_workspace_arg(p)
    p.add_argument("--run", required=True)
    _add_projection(p)
    p.set_defaults(func=_project)


def _encode(args: argparse.Namespace) -> int:
    lat = _latents(_workspace(args), args.run)
    print(f"{lat.mu.shape[0]} crops encoded, {lat.mu.shape[1] if lat.mu.ndim == 2 else 0} latent dimensions")
    return 0


def _map(args: argparse.Namespace) -> int:
    w = _workspace(args)
    lat = _latents(w, args.run)
    settings = _settings(args)
    proj = pj.load_projection(w, args.run, settings, lat.key)
    if proj is None:
        if settings.is_slow:
            print(f"computing the {settings.method} map (this can take minutes)", file=sys.stderr)
        proj = pj.compute_projection(w, args.run, settings)
    if args.k:
        rc = cl.cluster_run(w, args.run, args.cluster_method, args.k, args.seed)
        by_id = dict(zip(rc.ids.tolist(), rc.clustering.labels_.tolist()))
        values, categorical = np.array([by_id[int(i)] for i in proj.ids]), True
        title = f"{args.run} · {settings.method} · {args.cluster_method} k={args.k}"
    else:
        # face ids grow with capture time (crops are appended source after source, in order)
        values, categorical = proj.ids.astype(np.float64), False
        title = f"{args.run} · {settings.method} · colour = capture order"
    png = pj.scatter_png(proj.xy, values, categorical=categorical, size=args.size, title=title)
    Path(args.out).write_bytes(png)
    print(f"wrote {args.out} ({len(proj.ids)} frames)")
    return 0


def _timeline(args: argparse.Namespace) -> int:
    from facelab.space.timeline import label_timeline, timeline_png
    from facelab.store.storage import write_bytes_atomic

    check_out(args.out, ".png", ".csv")
    w = _workspace(args)
    _latents(w, args.run)  # encoded now, with progress, if the cache is stale
    table = label_timeline(w, args.run, args.label)
    png = args.out.suffix.lower() == ".png"
    data = timeline_png(table, args.label) if png else table.to_csv(index=False).encode()
    write_bytes_atomic(args.out, data)
    top = table.loc[table["p"].idxmax()]
    print(f"wrote {args.out}: P({args.label}) of {len(table)} frames; highest {top['p']:.2f} at "
          f"{top['time']:.2f} s (frame {int(top['frame_id'])})")
    return 0


def _clusters(args: argparse.Namespace) -> int:
    w = _workspace(args)
    lat = _latents(w, args.run)
    rc = cl.cluster_run(w, args.run, args.method, args.k, args.seed)
    names = cl.cluster_names(w, args.run, args.method, args.k)
    medoids = rc.medoid_face_ids()
    print(f"{'cluster':>7} {'frames':>7} {'medoid':>7}  name")
    for c, size in enumerate(rc.clustering.sizes.tolist()):
        print(f"{c:>7} {size:>7} {int(medoids[c]):>7}  {names.get(c, '')}")
    if args.sweep:
        from facelab.space.latent import active_latents

        _, mu = active_latents(w, lat)
        rows = cl.sweep(mu, seed=args.seed)
        print(f"\n{'k':>3} {'inertia':>12} {'BIC':>12} {'silhouette':>10}")
        for r in rows:
            sil = f"{r.silhouette:.3f}" if r.silhouette is not None else "-"
            print(f"{r.k:>3} {r.inertia:>12.1f} {r.bic:>12.1f} {sil:>10}")
        print(f"suggested k: {cl.suggest_k(rows, 'bic')} (lowest BIC), {cl.suggest_k(rows, 'elbow')} (elbow)")
    return 0


def _labels_export(args: argparse.Namespace) -> int:
    text = lb.export_csv(_workspace(args))
    if args.out:
        Path(args.out).write_text(text)
        print(f"wrote {args.out} ({text.count(chr(10)) - 1} labels)")
    else:
        sys.stdout.write(text)
    return 0


def _labels_import(args: argparse.Namespace) -> int:
    w = _workspace(args)
    try:
        text = Path(args.file).read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise CliError(f"{args.file} is not a UTF-8 text file") from None
    print(f"{lb.import_csv(w, text)} labels added")
    return 0


def _labels_counts(args: argparse.Namespace) -> int:
    for name, n in lb.counts(_workspace(args)).items():
        print(f"{name:<32} {n:>7}")
    return 0


def _project(args: argparse.Namespace) -> int:
    w = _workspace(args)
    proj = pj.run_projection_job(w, args.run, _settings(args))
    print(f"{proj.settings.method} map of {len(proj.ids)} frames cached")
    return 0
