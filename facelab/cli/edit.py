"""`facelab interpolate | shift | shift-eval | decode-at | field | path`: latent edits from the shell.

    facelab interpolate -w W RUN A B --steps 10 --out strip.gif     (A, B: face ids)
    facelab shift -w W RUN photo.jpg --direction smile --alpha 1 --out out.png
    facelab shift-eval -w W RUN smile --alpha 1
    facelab decode-at -w W RUN --x 0.5 --y -1 --out face.png      (any place on the map)
    facelab field -w W RUN --map tsne --out field.png              (a grid of faces over the map)
    facelab path -w W RUN A B C --out path.gif                     (through several faces in order)

Alpha is the sliders' unit: 0 = as is, 1 = the labelled faces' average along the direction (for
the default "mouth" direction, along the classifier normal it was bent from: "your average
smile"), 2 = twice as far (`facelab.edits.edit.compose`).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np

from facelab.cli import CliError, add_workspace_arg, check_out, resolve_workspace
from facelab.data.labels import NEGATIVES
from facelab.edits import animate, edit
from facelab.edits.directions import DEFAULT_METHOD, METHOD_NAMES, DirectionError
from facelab.space import generative_map as gm
from facelab.store.storage import write_bytes_atomic

METHOD_HELP = ("how to fit the direction from labels: " + "; ".join(f"{k}: {v}" for k, v in METHOD_NAMES.items())
               + f" (default {DEFAULT_METHOD})")
ALPHA_HELP = "0 = as is, 1 = your average LABEL (the labelled faces' mean along the direction), 2 = twice as far"
NEGATIVES_HELP = ("which faces count as 'not LABEL': labelled (faces with other labels only), all "
                  "(every face without it), auto (labelled when there are 5 of them, else all)")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("interpolate", help="decode the way from one face to another (.png strip or .gif)",
                       description="Interpolate between the codes of two faces of a workspace and "
                                   "write the frames as a PNG strip or a looping GIF that goes there "
                                   "and back; each frame blends the two real faces plus the decoded "
                                   "change, so the ends are the real faces (--plain: decoded frames, "
                                   "the real faces added at the PNG's ends).")
    _common(p)
    p.add_argument("a", type=int, help="face id to start from")
    p.add_argument("b", type=int, help="face id to end at")
    p.add_argument("--steps", type=int, default=10, help="frames, both ends included (default 10)")
    p.add_argument("--method", choices=edit.METHODS, default="linear", help="linear or slerp (spherical)")
    p.add_argument("--out", type=Path, required=True, help="output file: .png, .gif or .mp4")
    _picture_options(p)
    p.add_argument("--duration", type=int, default=120, help="GIF / MP4 frame duration in ms (default 120)")
    p.add_argument("--no-ends", action="store_true", help="PNG with --plain: leave out the two real faces")
    p.set_defaults(func=_interpolate)

    p = sub.add_parser("shift", help="shift the face in a photo along stored directions",
                       description="Find the face in a photo, crop it as video frames are cropped, "
                                   "encode it, move its code along directions stored for the run "
                                   "(alpha: 0 = as is, 1 = your average smile) and write the shifted "
                                   "face: the photo's 128-px crop plus the decoded change (--plain: "
                                   "the decoded face).")
    _common(p)
    p.add_argument("image", type=Path, help="a photo (.jpg, .png, ...) with one face")
    p.add_argument("--direction", "-d", action="append", default=[],
                   help="stored direction name; repeat for several")
    p.add_argument("--alpha", "-a", type=float, action="append", default=[],
                   help=f"setting of each --direction: {ALPHA_HELP} (default {edit.FULL_ALPHA:g}; one value "
                        "applies to all)")
    p.add_argument("--toward", help="stored centre (a cluster's or label's) to move toward")
    p.add_argument("--strength", type=float, default=0.5, help="for --toward: 0 (stay) to 1 (the centre)")
    p.add_argument("--face", type=int, help="which face when the photo has several (1 = largest)")
    p.add_argument("--out", type=Path, required=True, help="output .png")
    p.add_argument("--compare", action="store_true",
                   help="write [photo crop | reconstruction | shifted] instead of the shifted face only")
    _picture_options(p)
    p.set_defaults(func=_shift)

    p = sub.add_parser("shift-eval", help="measure what a label direction changes on held-out faces",
                       description="Fit a label direction and a linear probe on the training faces, "
                                   "shift the held-out ('val') faces by alpha (1 = your average LABEL) "
                                   "and report the "
                                   "probe's P(label) before and after, how much else moved in latent "
                                   "space, and the pixel change inside vs outside the mouth region; "
                                   "then an independent judge (HOG + logistic regression trained on "
                                   "the labelled crops' pixels, never on codes) scores held-out "
                                   "frames without the label before and after the shift.")
    _common(p)
    p.add_argument("label")
    p.add_argument("--alpha", type=float, default=edit.FULL_ALPHA,
                   help=f"{ALPHA_HELP} (default {edit.FULL_ALPHA:g}, the sliders' full setting)")
    p.add_argument("--direction", help="evaluate this stored direction instead of fitting one")
    p.add_argument("--method", choices=tuple(METHOD_NAMES), default=DEFAULT_METHOD, help=METHOD_HELP)
    p.add_argument("--negatives", choices=NEGATIVES, default="auto", help=NEGATIVES_HELP)
    p.add_argument("--plain", action="store_true",
                   help="judge the plain decoded faces, not the real faces plus the decoded change")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    p.set_defaults(func=_shift_eval)

    p = sub.add_parser("decode-at", help="the face the model draws at a place on the map",
                       description="Turn a place (x, y) on the run's map into a code and decode it: "
                                   "on a PCA map exactly (every other direction at the average face), "
                                   "on t-SNE / UMAP as a blend of the frames nearest to it. `facelab "
                                   "map` prints the frames' places.")
    _common(p)
    p.add_argument("--x", type=float, required=True, help="map x")
    p.add_argument("--y", type=float, required=True, help="map y")
    _map_options(p)
    p.add_argument("--out", type=Path, required=True, help="output .png")
    p.add_argument("--scale", type=int, default=animate.DEFAULT_SCALE, help="upscale factor (default 4)")
    p.set_defaults(func=_decode_at)

    p = sub.add_parser("field", help="a grid of decoded faces over the run's map (its face field)",
                       description="Decode an N x N grid of places over the part of the map the frames "
                                   "fill, row by row from the top; places with no frame near are "
                                   "faded (what the model draws there is a guess).")
    _common(p)
    _map_options(p)
    p.add_argument("--size", type=int, default=gm.FIELD_SIZE, help=f"faces a side (default {gm.FIELD_SIZE})")
    p.add_argument("--out", type=Path, required=True, help="output .png")
    p.set_defaults(func=_field)

    p = sub.add_parser("path", help="decode the way through several faces in order (.png strip, .gif or .mp4)",
                       description="Interpolate leg by leg through the codes of the faces given, in "
                                   "order; each leg blends its two real faces plus the decoded change, "
                                   "so the animation passes through every real face (--plain: decoded "
                                   "frames).")
    _common(p)
    p.add_argument("ids", type=int, nargs="+", help="face ids, two or more, in order")
    p.add_argument("--steps", type=int, default=8, help="frames per leg, both ends included (default 8)")
    p.add_argument("--out", type=Path, required=True, help="output file: .png, .gif or .mp4")
    _picture_options(p)
    p.add_argument("--duration", type=int, default=120, help="GIF / MP4 frame duration in ms (default 120)")
    p.set_defaults(func=_path)

    p = sub.add_parser("direction", help="list, fit or delete a run's stored directions",
                       description="Directions live per run; `shift` and the app's sliders use them.")
    actions = p.add_subparsers(dest="action", required=True)
    a = actions.add_parser("list", help="the run's directions and centres")
    _common(a)
    a.set_defaults(func=_direction_list)
    a = actions.add_parser("fit", help="fit a label's direction on the training faces and store it")
    _common(a)
    a.add_argument("label")
    a.add_argument("--name", help="store it under this name (default: the label)")
    a.add_argument("--method", choices=tuple(METHOD_NAMES), default=DEFAULT_METHOD, help=METHOD_HELP)
    a.add_argument("--negatives", choices=NEGATIVES, default="auto", help=NEGATIVES_HELP)
    a.add_argument("--without", action="append", default=[],
                   help="stored direction to remove from it (Gram-Schmidt), e.g. smile --without mouth_open")
    a.set_defaults(func=_direction_fit)
    a = actions.add_parser("centre", help="store the mean code of a label's faces, to move toward")
    _common(a)
    a.add_argument("label")
    a.add_argument("--name", help="store it under this name (default: the label)")
    a.set_defaults(func=_direction_centre)
    a = actions.add_parser("delete")
    _common(a)
    a.add_argument("name")
    a.set_defaults(func=_direction_delete)


def _common(p: argparse.ArgumentParser) -> None:
    add_workspace_arg(p)
    p.add_argument("run", help="run id")


def _picture_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--scale", type=int, default=animate.DEFAULT_SCALE, help="upscale factor (default 4)")
    p.add_argument("--resample", choices=("nearest", "bicubic"), default="nearest")
    p.add_argument("--plain", action="store_true",
                   help="the plain decoded faces, instead of the real face(s) plus the decoded change")


def _map_options(p: argparse.ArgumentParser) -> None:
    from facelab.space.projection import METHODS

    p.add_argument("--map", choices=METHODS, default="pca", help="which map (default pca; "
                   "t-SNE and UMAP with their default settings, computed once and cached)")


# --- shared steps -------------------------------------------------------------------------
class _Run:
    """A workspace's trained run: its codec and the codes of its active faces."""

    def __init__(self, args: argparse.Namespace) -> None:
        from facelab.model.models import load_codec
        from facelab.space.latent import active_latents, load_latents

        self.ws = resolve_workspace(args.workspace, args.home)
        self.run_id = args.run
        run_dir = self.ws.run_dir(args.run)
        if not run_dir.is_dir():
            raise CliError(f"no run {args.run!r} in workspace {self.ws.name!r}")
        self.codec = load_codec(run_dir)
        self._load_latents = lambda: active_latents(
            self.ws, load_latents(self.ws, args.run, compute=True, codec=self.codec)
        )
        self._ids: np.ndarray | None = None
        self._mu: np.ndarray | None = None

    def latents(self) -> tuple[np.ndarray, np.ndarray]:
        """(active face ids, their μ), encoded once and cached beside the run."""
        if self._ids is None:
            self._ids, self._mu = self._load_latents()
            if len(self._ids) == 0:
                raise CliError(f"workspace {self.ws.name!r} has no faces")
        return self._ids, self._mu

    def map_inverse(self, method: str) -> gm.MapInverse:
        """The run's map of its active faces (cached, or computed now) and its way back to codes."""
        from facelab.space import projection as pj

        settings = pj.ProjectionSettings(method=method)
        proj = pj.get_projection(self.ws, self.run_id, settings)
        if proj is None:
            print(f"computing the {method} map (once: it is cached beside the run)", file=sys.stderr, flush=True)
            proj = pj.compute_projection(self.ws, self.run_id, settings)
        return gm.MapInverse.of_map(proj.ids, proj.xy, *self.latents(), linear=method == "pca")

    def bounds(self) -> edit.LatentBounds:
        return edit.LatentBounds.from_latents(self.latents()[1])

    def crops(self, ids: list[int]) -> np.ndarray:
        faces = self.ws.faces()
        active = set(self.ws.active_face_ids().tolist())
        for i in ids:
            if i not in active:
                raise CliError(f"no face {i} in workspace {self.ws.name!r} "
                               f"(ids run from 0 to {len(faces) - 1}; deleted faces cannot be used)")
        return np.ascontiguousarray(faces[ids])


# --- commands -----------------------------------------------------------------------------
def _interpolate(args: argparse.Namespace) -> int:
    check_out(args.out, ".png", ".gif", ".mp4")
    run = _Run(args)
    crops = run.crops([args.a, args.b])
    mu, _ = run.codec.encode(crops)
    if not args.plain:  # drawn on the sharper 128-px crops
        from facelab.data.dataset import sharp_faces

        sharp = sharp_faces(run.ws, [args.a, args.b])
    detail = None if args.plain else (sharp[0], sharp[1])
    frames = edit.interpolation_strip(run.codec, mu[0], mu[1], args.steps, args.method, ends=detail)
    # the detail-preserving strip already starts and ends on the real faces
    ends = None if args.no_ends or detail is not None else (crops[0], crops[1])
    if ends is not None and crops.shape[1] != frames.shape[1]:
        from facelab.model.models import resize_images

        resized = resize_images(crops, frames.shape[1])
        ends = (resized[0], resized[1])
    path = animate.save_strip(args.out, frames, ends=ends, duration_ms=args.duration,
                              scale=args.scale, resample=args.resample)
    kind = {".gif": "GIF, there and back", ".mp4": "MP4, there and back"}.get(path.suffix.lower(), "PNG strip")
    how = "plain decoded" if args.plain else "detail-preserving"
    print(f"wrote {path} ({kind}: {args.steps} steps, {args.method}, {how}, faces {args.a} -> {args.b})")
    return 0


def _decode_at(args: argparse.Namespace) -> int:
    check_out(args.out, ".png")
    run = _Run(args)
    inverse = run.map_inverse(args.map)
    z = inverse.latents_at([[args.x, args.y]])
    face = run.codec.decode(z)[0]
    path = write_bytes_atomic(args.out, animate.png_bytes(animate.upscale(face[None], args.scale)[0]))
    x0, x1, y0, y1 = inverse.extent(0.0)
    inside = x0 <= args.x <= x1 and y0 <= args.y <= y1
    print(f"wrote {path}: the face at ({args.x:g}, {args.y:g}) on the {args.map} map, {inverse.how}"
          + ("" if inside else f" (outside the frames, which span x {x0:.2f}..{x1:.2f}, y {y0:.2f}..{y1:.2f})"))
    return 0


def _field(args: argparse.Namespace) -> int:
    check_out(args.out, ".png")
    run = _Run(args)
    field = gm.face_field(run.codec, run.map_inverse(args.map), args.size)
    path = write_bytes_atomic(args.out, animate.png_bytes(field.picture()))
    print(f"wrote {path}: {args.size} x {args.size} faces over the {args.map} map "
          f"({int((~field.near).sum())} faded: no frame near their place)")
    return 0


def _path(args: argparse.Namespace) -> int:
    check_out(args.out, ".png", ".gif", ".mp4")
    if len(args.ids) < 2:
        raise CliError("give at least two face ids, in the order to pass through them")
    run = _Run(args)
    crops = run.crops(args.ids)
    mu, _ = run.codec.encode(crops)
    if args.plain:
        ends = None
    else:
        from facelab.data.dataset import sharp_faces

        ends = sharp_faces(run.ws, args.ids)
    frames = gm.path_frames(run.codec, mu, args.steps, ends)
    path = animate.save_strip(args.out, frames, duration_ms=args.duration, scale=args.scale, resample=args.resample)
    how = "plain decoded" if args.plain else "detail-preserving"
    print(f"wrote {path} ({len(frames)} frames through faces {' -> '.join(map(str, args.ids))}, {how})")
    return 0


def _shift(args: argparse.Namespace) -> int:
    from facelab.edits.directions import load_directions

    check_out(args.out, ".png")
    if not args.direction and not args.toward:
        raise CliError("say how to shift: --direction NAME (and --alpha) and/or --toward CENTRE")
    alphas = args.alpha or [edit.FULL_ALPHA]
    if len(alphas) == 1:
        alphas = alphas * max(1, len(args.direction))
    if len(alphas) != len(args.direction) and args.direction:
        raise CliError(f"{len(args.direction)} --direction but {len(args.alpha)} --alpha: give one alpha "
                       "for all, or one per direction")
    run = _Run(args)
    stored = load_directions(run.ws, args.run)
    have = ", ".join(stored) or "none yet"

    def get(name: str):
        if name not in stored:
            raise CliError(f"run {args.run!r} has no direction {name!r} (it has: {have}); "
                           "make one with `facelab direction fit`")
        return stored[name]

    pairs = [(get(n), a) for n, a in zip(args.direction, alphas)]
    crop = _photo_crop(run, args.image, args.face)
    mu, _ = run.codec.encode(crop[None])
    target = None
    if args.toward:
        centre = get(args.toward)
        if centre.kind != "centre":
            raise CliError(f"{args.toward!r} is a direction, not a centre: use --direction")
        target = centre.vector
    z = edit.compose(mu, pairs, target, args.strength if target is not None else 0.0, run.bounds())
    from facelab.model.models import resize_images

    if args.plain:  # the decoded face's size: the crop as the model sees it
        crop = resize_images(crop[None], run.codec.config.image_size)[0]
    recon, shifted = edit.shift_faces(run.codec, crop, mu[0], z, detail=not args.plain)
    if args.compare:
        panels = np.concatenate([crop[None], resize_images(recon[None], crop.shape[0]), shifted])
        image = animate.strip_image(panels, scale=args.scale, resample=args.resample)
    else:
        image = animate.upscale(shifted, args.scale, args.resample)[0]
    write_bytes_atomic(args.out, animate.png_bytes(image))
    what = ", ".join(f"{p.name} {a:+g}" for p, a in pairs)
    if args.toward:
        what = ", ".join(filter(None, [f"toward {args.toward} s={args.strength:g}", what]))
    print(f"wrote {args.out} ({what}{', plain decoded' if args.plain else ''})")
    return 0


def _photo_crop(run: _Run, image: Path, face: int | None) -> np.ndarray:
    """The photo's face cropped with the workspace's own build settings (RGB, crop size)."""
    from facelab.data.photo import faces_in_photo, photo_face_crop

    frame, boxes = faces_in_photo(image)
    return photo_face_crop(run.ws, frame, boxes, face, image.name, run.codec.config.image_size, "--face")


def _shift_eval(args: argparse.Namespace) -> int:
    from facelab.data.labels import validate_label_name
    from facelab.edits.directions import LabelDirection, check_examples, labelled_latents, load_direction
    from facelab.space.probe import LinearProbe

    label = validate_label_name(args.label)
    run = _Run(args)
    ids, mu = run.latents()
    val = np.isin(ids, run.ws.active_face_ids("val"))
    if not val.any():
        raise CliError(f"workspace {run.ws.name!r} has no held-out ('val') faces to evaluate on")
    z_train, y, negatives_from = labelled_latents(run.ws, args.run, label, args.negatives, "train", run.codec)
    check_examples(y, label, negatives=negatives_from)
    probe = LinearProbe().fit(z_train, y)
    if args.direction:
        direction = load_direction(run.ws, args.run, args.direction)
        if direction.kind == "centre":
            raise CliError(f"{args.direction!r} is a centre, not a direction")
        source = f"stored direction {direction.name!r} ({direction.kind})"
    else:
        fitted = LabelDirection(method=args.method, label=label, codec=run.codec).fit(z_train, y)
        direction = fitted.to_direction()
        source = (f"{args.method} direction fitted on {fitted.n_positive_} + {fitted.n_negative_} "
                  f"training faces (negatives: {negatives_from})")
    q = edit.shift_quality(run.codec, mu[val], direction, probe, args.alpha, run.bounds())
    judged, why_not = _judgement(args, run, label, direction if args.direction else None)
    if args.json:
        print(json.dumps({**asdict(q), "focus": q.focus, "label": label, "direction": source,
                          **judged, "judge_error": why_not}))
        return 0
    print(f"{label!r}: {source}; {q.n} held-out faces shifted by alpha {q.alpha:+g} ({edit.unit_of(direction)})")
    print(f"  probe P({label}) on codes          {q.probe_before:.3f} -> {q.probe_after:.3f}")
    print(f"  probe P({label}) on decoded faces  {q.image_probe_before:.3f} -> {q.image_probe_after:.3f}")
    print(f"  latent move along the direction   {q.latent_along:.3f}")
    print(f"  latent move across it (else)      {q.latent_orthogonal:.3f}")
    print(f"  pixel change in the mouth region  {q.pixel_inside:.2f}")
    print(f"  pixel change elsewhere            {q.pixel_outside:.2f}  (ratio {q.focus:.2f})")
    if why_not:
        print(f"  independent judge: not run ({why_not})")
        return 0
    print(f"independent judge (HOG + logistic regression on the labelled crops, never the codes; "
          f"AUC {judged['judge_auc']:.2f}, 95 % {judged['judge_auc_low']:.2f}-{judged['judge_auc_high']:.2f}), "
          f"{judged['judge_n']} held-out frames without {label!r} ({judged['judge_held_out']}), "
          f"shown {'with their own detail' if judged['detail'] else 'as decoded'}:")
    print(f"  P({label}) original / reconstruction / shifted  {judged['judge_before']:.3f} / "
          f"{judged['judge_reconstruction']:.3f} / {judged['judge_after']:.3f}")
    print(f"  pixel change in / outside the mouth region      {judged['change_inside']:.2f} / "
          f"{judged['change_outside']:.2f}  (lower / upper half {judged['change_lower']:.2f} / "
          f"{judged['change_upper']:.2f}); PSNR outside the mouth {judged['psnr_outside']:.1f} dB")
    print(f"  P({label}) with a real {label} mouth pasted in    {judged['ceiling_after']:.3f}  (gain "
          f"{judged['ceiling_gain']:+.3f}, the shift's {judged['judge_gain']:+.3f}): each face given its own "
          f"nearest {label} frame's mouth, the most an edit of the mouth alone can show this judge; when it is "
          f"small, your labelled frames differ in more than the mouth (pose, eyes)")
    if judged["direction_saw_held_out"]:
        print("  (the stored direction was fitted on these frames too: the shifted figure flatters it)")
    return 0


def _judgement(args: argparse.Namespace, run: "_Run", label: str, direction) -> tuple[dict, str | None]:
    """The independent judge's figures for `shift-eval` (`facelab.edits.judge`), with keys that do not
    clash with the probe's; ({}, why) when it cannot judge (too few labelled pictures)."""
    from facelab.edits.judge import JudgeError, judge_shifts, mouth_ceiling

    try:
        j = judge_shifts(run.ws, args.run, label, (args.alpha,), direction=direction, method=args.method,
                         negatives=args.negatives, detail=not args.plain, codec=run.codec)[0]
        top = mouth_ceiling(run.ws, label, negatives=args.negatives)
    except (JudgeError, DirectionError) as e:
        return {}, str(e)
    renamed = {"n": "judge_n", "direction": "judge_direction", "held_out": "judge_held_out"}
    out = {renamed.get(k, k): v for k, v in asdict(j).items() if k not in ("label", "alpha")}
    return {**out, "judge_gain": j.judge_gain, "judge_focus": j.focus,
            "ceiling_after": top.judge_after, "ceiling_gain": top.judge_gain,
            "ceiling_psnr_outside": top.psnr_outside}, None


def _direction_list(args: argparse.Namespace) -> int:
    from facelab.edits.directions import load_directions

    run = _Run(args)
    found = load_directions(run.ws, args.run)
    if not found:
        print(f"run {args.run} has no directions yet (see `facelab direction fit`)")
        return 0
    print(f"{'name':<24} {'kind':<12} {'spread':>7}  made from")
    for d in found.values():
        spec = ", ".join(f"{k}={v}" for k, v in sorted(d.spec.items()))
        print(f"{d.name:<24} {d.kind:<12} {d.spread:>7.3f}  {spec}")
    return 0


def _direction_fit(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from facelab.data.labels import validate_label_name
    from facelab.edits.directions import (
        ConditionalDirection,
        fit_label_direction,
        labelled_latents,
        load_direction,
        save_direction,
    )

    label = validate_label_name(args.label)
    run = _Run(args)
    d = fit_label_direction(run.ws, args.run, label, args.method, args.negatives, codec=run.codec)
    if args.without:
        removed = [load_direction(run.ws, args.run, n) for n in args.without]
        zl, yl, _ = labelled_latents(run.ws, args.run, label, args.negatives, codec=run.codec)
        cond = ConditionalDirection(d, removed).fit(run.latents()[1], positives=zl[yl])
        d = cond.to_direction(d.name, label=label, method=args.method, **{
            k: d.spec[k] for k in ("positives", "negatives") if k in d.spec})
    d = save_direction(run.ws, args.run, replace(d, name=args.name or label))
    print(f"stored {d.kind} direction {d.name!r} for run {args.run} "
          f"({d.spec.get('positives', '?')} faces with {label!r}, {d.spec.get('negatives', '?')} without; "
          f"spread {d.spread:.3f})")
    return 0


def _direction_centre(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from facelab.data.labels import labels_of, validate_label_name
    from facelab.edits.directions import CentreTarget, save_direction

    label = validate_label_name(args.label)
    run = _Run(args)
    ids, mu = run.latents()
    tagged = labels_of(run.ws)
    members = np.array([label in tagged.get(int(i), ()) for i in ids], dtype=bool)
    d = CentreTarget(label=label).fit(mu, members).to_direction(args.name or label)
    d = save_direction(run.ws, args.run, replace(d, spec={**d.spec, "source": "label"}))
    print(f"stored the centre of {d.spec['members']} faces labelled {label!r} as {d.name!r}")
    return 0


def _direction_delete(args: argparse.Namespace) -> int:
    from facelab.edits.directions import delete_direction

    w = resolve_workspace(args.workspace, args.home)
    delete_direction(w, args.run, args.name)
    print(f"deleted direction {args.name!r} of run {args.run}")
    return 0
