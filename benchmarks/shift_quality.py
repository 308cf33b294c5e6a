"""Does a label direction move the *picture*? The independent judge on every direction method.

For one workspace (default: the bundled sample with its labels) and one label (default smile),
for every way `facelab.edits.directions` fits a label direction (mouth, mean_diff, logistic, svm) and
for the run's stored direction of that label, `facelab.edits.judge.judge_shifts` shifts held-out
frames without the label by a few slider settings (1 = the labelled faces' mean projection,
"your average smile") and shows them three ways: detail (the original plus the decoded change),
masked (the same through a feathered mouth-box mask) and decoded (the plain decoded face). It
reports

  judge AUC       the pixel judge's cross-validated AUC on the labelled crops (95 % interval)
  before/recon    the judge's mean P(label) on the originals / their plain reconstructions
  after           ... on the shifted faces as shown (detail-preserving, and plain decoded)
  gain            after - before (target at the full setting: >= 0.3)
  in / out        mean absolute pixel change inside / outside the mouth box (0-255)
  out/in          their ratio (target <= 0.5); low/up: lower half over upper half of the face
  PSNR out        the shown face against the original outside the mouth box (target >= 30 dB)

then, for each way of showing, every method's judged gain at the same change outside the mouth
(the default's at "full"): which direction moves the picture most for what it costs the rest
of the face; and the ceiling of any edit of the mouth alone (`judge.mouth_ceiling`: each
held-out face given its own nearest real smiling mouth, no model), which says whether the
targets can be met with this judge on these labels at all.

and, with --out, two PNGs to look at: the mouth box on some of the workspace's crops, and the
held-out faces as the default method shows them at each setting (originals on the left).

    .venv/bin/python benchmarks/shift_quality.py [--out bench-out/shift_quality.json]
    .venv/bin/python benchmarks/shift_quality.py --clip lp_d13 --methods mouth --alphas 1,2
    .venv/bin/python benchmarks/shift_quality.py --workspace ~/.facelab/workspaces/me --run RUN --label smile

--clip takes a clip of ../shared/data that has hand-made labels in benchmarks/labels/ (lp_d13
and lp_d12, by the frames' time stamps; its README says what they hold): it builds the clip as
`train_quality.py` does, trains the default recipe once (about 90 s) and sets the labels, in a
workspace kept in the temp folder for the next call.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import typing
from dataclasses import asdict
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


LABELS = REPO / "benchmarks" / "labels"  # <clip>.csv: face_id,label,t_seconds,source


def labelled_clip(name: str):
    """(workspace, run id) for a shared clip with labels in `LABELS`: built, trained with the
    default recipe and labelled once, then reused."""
    import csv

    from train_quality import clip_workspace  # benchmarks/: the clips, built as it builds them

    from facelab.data import dataset, labels
    from facelab.model import jobs
    from facelab.model.models import ModelConfig

    file = LABELS / f"{name}.csv"
    if not file.exists():
        raise SystemExit(f"no labels for {name!r}: have {', '.join(p.stem for p in sorted(LABELS.glob('*.csv')))}")
    w = clip_workspace(name, Path(tempfile.gettempdir()) / "facelab-bench-shift-clips")
    if not any(labels.counts(w).values()):
        at = {round(f["t_seconds"], 3): f["id"] for f in dataset.faces_table(w)}
        by_label: dict[str, list[int]] = {}
        for row in csv.DictReader(file.read_text().splitlines()):  # matched by time: ids may differ
            by_label.setdefault(row["label"], []).append(at[round(float(row["t_seconds"]), 3)])
        for label, ids in by_label.items():
            labels.set_labels(w, ids, label)
    runs = jobs.list_runs(w)
    done = [r.run_id for r in runs if r.state == "done"]
    if done:
        return w, done[0]
    for r in runs:  # the bench's own workspace: a run an earlier call left unfinished goes
        jobs.delete_run(w, r.run_id)
    run_id = jobs.create_run(w, ModelConfig(), "default")
    print(f"training the default recipe on {name} ...", flush=True)
    jobs.run_job(w, run_id)  # as the app does: trains, encodes every crop, marks the run done
    return w, run_id


def open_target(args: argparse.Namespace):
    """(workspace, run id): the sample (made in a temp home), a labelled clip, or the workspace
    folder given."""
    from facelab import sample
    from facelab.model import jobs
    from facelab.store import workspace as ws
    from facelab.store.storage import WORKSPACES_DIR

    if args.clip:
        return labelled_clip(args.clip)
    if args.workspace is None:
        home = Path(tempfile.gettempdir()) / "facelab-bench-shift"
        return sample.ensure_sample(home, say=lambda _: None), args.run or sample.RUN_ID
    path = Path(args.workspace).expanduser()  # <home>/workspaces/<name>, as `facelab workspaces` lists it
    w = ws.open_workspace(path.name, path.parent.parent if path.parent.name == WORKSPACES_DIR else path.parent)
    if args.run:
        return w, args.run
    done = [r.run_id for r in jobs.list_runs(w) if r.state == "done"]
    if not done:
        raise SystemExit(f"{path} has no finished run: train one or pass --run")
    return w, done[0]


def low_up(q) -> str:
    """lower-half / upper-half change; '-' when the upper half hardly changed (a masked edit:
    under a tenth of a grey level the ratio says nothing)."""
    return f"{q.change_lower / q.change_upper:.2f}" if q.change_upper >= 0.1 else "-"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workspace", help="a workspace folder (default: the bundled sample)")
    ap.add_argument("--clip", help="a shared clip with labels in benchmarks/labels/ (e.g. lp_d13)")
    ap.add_argument("--methods", help="direction methods to measure, comma-separated (default: all)")
    ap.add_argument("--run", help="run id (default: the sample's, or the workspace's newest finished run)")
    ap.add_argument("--label", default="smile")
    ap.add_argument("--alphas", default="0.5,1,2", help="slider settings (1 = your average smile, the 'full' setting)")
    ap.add_argument("--out", type=Path, help="write the rows as JSON here (and the mouth-box PNG beside it)")
    args = ap.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    import torch

    torch.set_num_threads(2)
    from facelab.edits import animate, directions, edit, judge
    from facelab.model.models import load_codec

    w, run_id = open_target(args)
    codec = load_codec(w.run_dir(run_id))
    alphas = [float(a) for a in args.alphas.split(",")]
    stored = {n: d for n, d in directions.load_directions(w, run_id).items()
              if d.kind != "centre" and d.spec.get("label", n) == args.label}
    methods = args.methods.split(",") if args.methods else list(typing.get_args(directions.LabelMethod))
    candidates: list[tuple[str, dict]] = [(m, {"method": m}) for m in methods]
    candidates += [(f"stored {n}", {"direction": d}) for n, d in stored.items()]

    rows, auc_said, shown_default = [], False, None
    head = (f"{'direction':<16} {'shown':<7} {'alpha':>5} {'before':>6} {'recon':>6} {'after':>6} {'gain':>6} "
            f"{'in':>6} {'out':>6} {'out/in':>6} {'low/up':>6} {'PSNR out':>8}")
    for name, how in candidates:
        for shown, detail, masked in (("detail", True, False), ("masked", True, True), ("decoded", False, False)):
            t0 = time.perf_counter()
            pictures: dict = {}
            found = judge.judge_shifts(w, run_id, args.label, alphas, detail=detail, masked=masked, codec=codec,
                                       faces_out=pictures, **how)
            if name == directions.DEFAULT_METHOD and shown == "detail":
                shown_default = pictures
            secs = time.perf_counter() - t0
            if not auc_said:
                q = found[0]
                print(f"{w.name} / {run_id}, label {args.label!r}: judge (HOG + logistic regression on the "
                      f"labelled crops) AUC {q.judge_auc:.3f} (95 % {q.judge_auc_low:.3f}-{q.judge_auc_high:.3f}); "
                      f"{q.n} held-out frames without it from {q.held_out}\n")
                print(head)
                auc_said = True
            for q in found:
                print(f"{name:<16} {shown:<7} {q.alpha:>5g} {q.judge_before:>6.3f} {q.judge_reconstruction:>6.3f} "
                      f"{q.judge_after:>6.3f} {q.judge_gain:>+6.3f} {q.change_inside:>6.2f} {q.change_outside:>6.2f} "
                      f"{q.focus:>6.2f} {low_up(q):>6} {q.psnr_outside:>8.2f}"
                      + ("  (direction saw these frames)" if q.direction_saw_held_out else ""), flush=True)
                rows.append({**asdict(q), "method": name, "shown": shown, "focus": q.focus,
                             "judge_gain": q.judge_gain, "seconds": secs / len(found)})
    top = judge.mouth_ceiling(w, args.label)
    print(f"\nceiling of an edit of the mouth alone ({top.direction} through the feathered mouth mask; "
          f"real pixels, no model): gain {top.judge_gain:+.3f}, out/in {top.focus:.2f}, "
          f"PSNR out {top.psnr_outside:.2f}")
    rows.append({**asdict(top), "method": "ceiling", "shown": "pasted", "focus": top.focus,
                 "judge_gain": top.judge_gain, "seconds": 0.0})
    full = edit.FULL_ALPHA if edit.FULL_ALPHA in alphas else max(alphas)
    for shown in ("detail", "masked"):
        # Judged gain at the same change outside the mouth: the default's at "full". A ratio of
        # gain to change at each method's own full setting favours small moves (the judge
        # saturates), so each method's gain is read off its gain-against-change curve there.
        mine = [r for r in rows if r["shown"] == shown and not r["method"].startswith("stored")]
        ref = next((r for r in mine if r["method"] == directions.DEFAULT_METHOD and r["alpha"] == full), None)
        if ref is None:
            continue
        at = ref["change_outside"]
        said = []
        for m in methods:
            pts = sorted((r["change_outside"], r["judge_gain"]) for r in mine if r["method"] == m and r["alpha"] >= 0)
            xs, ys = [0.0] + [p[0] for p in pts], [0.0] + [p[1] for p in pts]
            said.append((float(np.interp(at, xs, ys)), m, at > xs[-1]))
        said.sort(reverse=True)
        print(f"\n{shown}: judged gain at the change outside the mouth that {directions.DEFAULT_METHOD} makes at "
              f"{full:g} ({at:.2f} grey levels): " + ", ".join(
                  f"{m} {g:+.3f}" + (" (beyond its largest setting)" if beyond else "") for g, m, beyond in said))
    print(f"default method: {directions.DEFAULT_METHOD}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"workspace": w.name, "run": run_id, "label": args.label, "rows": rows},
                                       indent=1))
        faces = w.faces()
        pick = np.linspace(0, len(faces) - 1, 16).astype(int)
        png = args.out.with_name(args.out.stem + "_mouth_box.png")
        png.write_bytes(animate.png_bytes(animate.strip_image(judge.draw_mouth_box(faces[pick]), scale=1)))
        print(f"wrote {args.out} and {png}")
        if shown_default:  # rows: up to 8 held-out faces; columns: the original, then each setting
            rows_of = np.linspace(0, len(shown_default[None]) - 1, min(8, len(shown_default[None]))).astype(int)
            columns = [shown_default[None]] + [shown_default[a] for a in alphas]
            grid = np.concatenate([np.concatenate(list(c[rows_of]), axis=0) for c in columns], axis=1)
            png = args.out.with_name(args.out.stem + "_faces.png")
            png.write_bytes(animate.png_bytes(animate.strip_image(grid[None], scale=3)))
            print(f"wrote {png}: held-out faces, the original then {directions.DEFAULT_METHOD} at {args.alphas}")


if __name__ == "__main__":
    main()
