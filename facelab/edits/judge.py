"""An independent judge of expression edits: does the *picture* look more like the label?

The latent probe (`facelab.space.probe.LinearProbe`) lives in the model's own space, so a shift
along a direction raises it by construction even when the decoded face does not change
(issue 11: P(smile) 0.00 -> 0.72 on codes, 0.01 -> 0.05 on the decoded faces). The judge here
shares nothing with the model: it is a HOG descriptor (OpenCV) and a logistic regression
trained only on the user's labelled original crops, and it only ever sees uint8 pictures;
`Judge.p` refuses anything else (latents included).

`judge_shifts` measures one direction on held-out frames without the label: the judge's
P(label) on the originals, on their plain reconstructions (what the model alone does to the
expression) and on the shifted faces, and where the pixels changed (the mouth box against the
rest, the lower half against the upper).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from facelab.edits.directions import DEFAULT_METHOD
from facelab.edits.edit import FULL_ALPHA
from facelab.errors import FacelabError
from facelab.space.probe import AucEstimate, cross_validated_auc

if TYPE_CHECKING:
    from facelab.edits.directions import Direction
    from facelab.model.models import Codec
    from facelab.store.workspace import Workspace

JUDGE_SIZE = 64  # pictures are judged at this size, whatever their own
# HOG on the grey 64-px face: 16-px blocks of 8-px cells, 9 orientations (1,764 values).
HOG_PARAMS = ((JUDGE_SIZE, JUDGE_SIZE), (16, 16), (8, 8), (8, 8), 9)
MIN_HELD_OUT = 5  # held-out frames needed for a judgement
HELD_OUT_CHUNKS = 10  # the negatives are cut into this many runs of consecutive frames ...
HELD_OUT_PICK = (2, 5, 8)  # ... and these are held out (30 %, spread over the clip)


class JudgeError(FacelabError):
    """The judge cannot be fitted or used as asked; the message says why."""


# --- pictures in, features out ------------------------------------------------------------
def pixels(images: Any) -> np.ndarray:
    """`images` as uint8 N x S x S x 3, or JudgeError: the judge looks at pictures, never codes."""
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8:
        dtype = getattr(images, "dtype", type(images).__name__)
        raise JudgeError(f"the judge takes uint8 pictures (N x S x S x 3), got {dtype}: "
                         "it never looks at latents or model outputs other than decoded pictures")
    if images.ndim != 4 or images.shape[3] != 3 or images.shape[1] != images.shape[2] \
            or images.shape[1] < 16 or len(images) == 0:
        raise JudgeError(f"the judge takes N x S x S x 3 square RGB pictures, got shape {images.shape}")
    return images


def hog_features(images: np.ndarray) -> np.ndarray:
    """HOG of each picture, grey and resized to `JUDGE_SIZE`: N x 1764 float32."""
    import cv2

    from facelab.model.models import resize_images

    images = resize_images(pixels(images), JUDGE_SIZE)
    d = cv2.HOGDescriptor(*HOG_PARAMS)
    return np.stack([d.compute(cv2.cvtColor(im, cv2.COLOR_RGB2GRAY)).ravel() for im in images])


def _logreg(C: float = 1.0):
    from sklearn.linear_model import LogisticRegression

    # Balanced: a user labels 200 smiles and 20 neutral faces as readily as the reverse.
    return LogisticRegression(C=C, class_weight="balanced", max_iter=2000)


def hog_classifier(C: float = 1.0):
    """A scikit-learn pipeline pictures -> HOG -> logistic regression (any number of classes)."""
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    return make_pipeline(FunctionTransformer(hog_features), _logreg(C))


# --- the judge ----------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class Judge:
    """P(label) of a picture, learned from labelled original crops only."""

    model: Any  # fitted logistic regression on `hog_features`
    estimate: AucEstimate  # its cross-validated AUC on the crops it learned from, with interval

    @property
    def auc(self) -> float:
        return self.estimate.auc

    def p(self, images: np.ndarray) -> np.ndarray:
        """P(label) of each uint8 picture (N x S x S x 3; resized to 64 px)."""
        return self.model.predict_proba(hog_features(images))[:, 1]


def fit_judge(images: np.ndarray, labels: np.ndarray, *, C: float = 1.0, folds: int = 5,
              seed: int = 0) -> Judge:
    """A judge from pictures and a yes/no per picture; its AUC is cross-validated (see
    `facelab.space.probe.cross_validated_auc`: the same interval as the latent probe's)."""
    from facelab.data.labels import MIN_EXAMPLES

    y = np.asarray(labels, dtype=bool)
    images = pixels(images)
    if y.shape != (len(images),):
        raise JudgeError(f"{len(images)} pictures but {y.size} labels")
    if y.sum() < MIN_EXAMPLES or (~y).sum() < MIN_EXAMPLES:
        raise JudgeError(f"the judge needs {MIN_EXAMPLES} pictures with the label and {MIN_EXAMPLES} "
                         f"without (has {int(y.sum())} and {int((~y).sum())})")
    x = hog_features(images)
    estimate = cross_validated_auc(x, y, folds, seed, model=_logreg(C))
    return Judge(model=_logreg(C).fit(x, y), estimate=estimate)


def label_judge(workspace: "Workspace", label: str, negatives: str = "auto") -> Judge:
    """The judge of `label` learned from all the workspace's labelled crops (the Shift page
    judges the one face on screen, which may be any frame or a photo)."""
    from facelab.data.labels import binary_targets, labels_of

    ids = workspace.active_face_ids()
    used, y, _ = binary_targets(ids, labels_of(workspace), label, negatives)
    return fit_judge(np.ascontiguousarray(workspace.faces()[ids[used]]), y)


# --- regions ------------------------------------------------------------------------------
def mouth_mask(size: int) -> np.ndarray:
    """Boolean size x size mask of the mouth region (`facelab.edits.edit.MOUTH_REGION`)."""
    from facelab.edits.edit import region_mask

    return region_mask(size)


def draw_mouth_box(images: np.ndarray, scale: int = 3) -> np.ndarray:
    """The pictures upscaled with the mouth region drawn in red: to check it by eye."""
    import cv2

    out = []
    for im in pixels(images):
        big = cv2.resize(im, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
        rows, cols = np.nonzero(mouth_mask(im.shape[0]))
        r0, r1, c0, c1 = rows.min() * scale, (rows.max() + 1) * scale, cols.min() * scale, (cols.max() + 1) * scale
        cv2.rectangle(big, (c0, r0), (c1 - 1, r1 - 1), (255, 0, 0), 1)
        out.append(big)
    return np.stack(out)


# --- judging a shift ----------------------------------------------------------------------
@dataclass(frozen=True)
class ShiftJudgement:
    """What the full shift along one direction did to held-out frames without the label.

    judge_*: the independent judge's mean P(label) on pictures: `judge_before` on the original
    crops, `judge_reconstruction` on their plain reconstructions (the model's own effect, with
    no shift), `judge_after` on the shifted faces as shown (`detail`). change_*: mean absolute
    pixel change (0-255) from the face shown at alpha 0 to the shifted one, inside the mouth region
    and outside it, in the lower and upper half. psnr_outside: the shifted face against the
    original crop outside the mouth box (dB): how much of the person is kept.
    """

    label: str
    direction: str  # its name and kind, or how it was fitted
    alpha: float
    detail: bool  # judged on the original plus the decoded change (True) or the decoded face
    n: int  # held-out frames
    held_out: str  # where they come from
    direction_saw_held_out: bool  # a stored direction fitted on them: judge_after flatters it
    judge_auc: float
    judge_auc_low: float
    judge_auc_high: float
    judge_before: float
    judge_reconstruction: float
    judge_after: float
    change_inside: float
    change_outside: float
    change_lower: float
    change_upper: float
    psnr_outside: float
    masked: bool = False  # the change was limited to the mouth box by `edit.feathered_mask`

    @property
    def judge_gain(self) -> float:
        """judge_after - judge_before: what a person would see change."""
        return self.judge_after - self.judge_before

    @property
    def focus(self) -> float:
        """change_outside / change_inside: 0 when only the mouth moves (target <= 0.5)."""
        return self.change_outside / self.change_inside if self.change_inside > 0 else float("inf")


def held_out_negatives(workspace: "Workspace", ids: np.ndarray, negatives: np.ndarray) -> tuple[np.ndarray, str]:
    """Mask over `ids` of the negatives to judge on, and where they come from.

    The 'val' split's negatives when there are `MIN_HELD_OUT` of them (nothing was fitted on
    them); else 3 of 10 runs of consecutive negatives (`HELD_OUT_PICK`), so neighbouring
    frames, near copies at 8-24 fps, mostly fall on the same side.
    """
    val = np.isin(ids, workspace.active_face_ids("val")) & negatives
    if val.sum() >= MIN_HELD_OUT:
        return val, "the val split"
    rows = np.flatnonzero(negatives)  # ids are in time order within a video
    held = np.zeros(len(ids), dtype=bool)
    for k, chunk in enumerate(np.array_split(rows, HELD_OUT_CHUNKS)):
        if k in HELD_OUT_PICK:
            held[chunk] = True
    return held, f"{len(HELD_OUT_PICK)} of {HELD_OUT_CHUNKS} runs of negatives, held back from fitting"


def _held_out_split(workspace: "Workspace", ids: np.ndarray, label: str,
                    negatives: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    """(fit, positive, held, held_from): masks over `ids` of the labelled frames to learn from, of
    those with the label, and of the held-out frames without it (`held_out_negatives`); or
    JudgeError when too few are held out."""
    from facelab.data.labels import binary_targets, labels_of
    from facelab.edits.directions import check_examples

    used, y, negatives_from = binary_targets(ids, labels_of(workspace), label, negatives)
    neg = np.zeros(len(ids), dtype=bool)
    neg[np.flatnonzero(used)[~y]] = True
    held, held_from = held_out_negatives(workspace, ids, neg)
    if held.sum() < MIN_HELD_OUT:
        raise JudgeError(f"need at least {MIN_HELD_OUT} held-out frames without {label!r} to judge a "
                         f"shift, have {int(held.sum())}: label more frames without it")
    fit = used & ~held
    positive = fit & ~neg
    check_examples(positive[fit], label, negatives=negatives_from)
    return fit, positive, held, held_from


def _judged(judge: Judge, originals: np.ndarray, before: np.ndarray, shown: np.ndarray,
            **fields: Any) -> ShiftJudgement:
    """The judgement of `shown` against the faces shown before the shift (`before`) and the
    original crops: the judge's P(label) on it, and where and how much the pixels changed."""
    size = shown.shape[1]
    mouth = mouth_mask(size)
    diff = np.abs(shown.astype(np.float32) - before.astype(np.float32)).mean(axis=3)
    mse_out = float(((shown.astype(np.float32) - originals) ** 2).mean(axis=3)[:, ~mouth].mean())
    est = judge.estimate
    return ShiftJudgement(
        judge_auc=est.auc, judge_auc_low=est.low, judge_auc_high=est.high,
        judge_after=float(judge.p(shown).mean()),
        change_inside=float(diff[:, mouth].mean()), change_outside=float(diff[:, ~mouth].mean()),
        change_lower=float(diff[:, size // 2:].mean()), change_upper=float(diff[:, :size // 2].mean()),
        psnr_outside=float(10 * np.log10(255.0**2 / mse_out)) if mse_out > 0 else float("inf"),
        **fields,
    )


def judge_shifts(
    workspace: "Workspace",
    run_id: str,
    label: str,
    alphas: Sequence[float] = (FULL_ALPHA,),
    *,
    direction: "Direction | str | None" = None,
    method: str = DEFAULT_METHOD,
    negatives: str = "auto",
    detail: bool = True,
    codec: "Codec | None" = None,
    masked: bool = False,
    faces_out: "dict[float | None, np.ndarray] | None" = None,
) -> list[ShiftJudgement]:
    """Judge the shift by each of `alphas` (the slider's unit, `facelab.edits.edit.unit_of`) along
    a direction on held-out frames without `label`, fitting the judge (and direction) once.

    `direction`: a `Direction`, a stored direction's name, or None to fit one with `method`
    (`facelab.edits.directions.LabelDirection`) on the labelled frames minus the held-out ones.
    The judge learns from the same labelled crops minus the held-out ones. The shifted faces
    are judged as the app shows them (`facelab.edits.edit.shift_faces`): detail=True, the original
    plus the decoded change (the face at alpha 0 is the original); False, the plain decoded
    face (at alpha 0, the reconstruction). masked=True (with detail): the decoded change lands
    through `edit.feathered_mask` of the mouth box. `faces_out`, if given, receives the
    pictures judged: alpha -> the shifted faces as shown, and None -> the originals (uint8),
    so a benchmark can show what the figures describe.
    """
    from facelab.edits import edit
    from facelab.edits.directions import Direction, LabelDirection, load_direction
    from facelab.model.models import load_codec, resize_images
    from facelab.space.latent import active_latents, load_latents

    codec = codec or load_codec(workspace.run_dir(run_id))
    ids, mu = active_latents(workspace, load_latents(workspace, run_id, compute=True, codec=codec))
    fit, pos_fit, held, held_from = _held_out_split(workspace, ids, label, negatives)
    faces = workspace.faces()
    judge = fit_judge(np.ascontiguousarray(faces[ids[fit]]), pos_fit[fit])

    if direction is None:
        fitted = LabelDirection(method=method, label=label, codec=codec).fit(mu[fit], pos_fit[fit])
        direction = fitted.to_direction()
        what, saw = f"{method} fitted on {fitted.n_positive_} + {fitted.n_negative_} frames", False
    else:
        if not isinstance(direction, Direction):
            direction = load_direction(workspace, run_id, direction)
        # A stored direction was fitted on its `split` ('train' by default, or 'all').
        saw = not (held_from == "the val split" and direction.spec.get("split") == "train")
        what = f"stored {direction.name!r} ({direction.kind})"
    z, bounds = mu[held], edit.LatentBounds.from_latents(mu)
    originals = resize_images(np.ascontiguousarray(faces[ids[held]]), codec.config.image_size)
    recon, shown_before = edit.shift_faces(codec, originals, z, z, detail)
    p_before, p_recon = float(judge.p(originals).mean()), float(judge.p(recon).mean())
    mask = edit.feathered_mask(recon.shape[1]) if masked and detail else None
    if faces_out is not None:
        faces_out[None] = originals
    out = []
    for alpha in alphas:
        _, shown = edit.shift_faces(codec, originals, z, edit.compose(z, [(direction, alpha)], bounds=bounds),
                                    detail, mask)
        if faces_out is not None:
            faces_out[float(alpha)] = shown
        out.append(_judged(
            judge, originals, shown_before, shown,
            label=label, direction=what, alpha=float(alpha), detail=detail, n=int(held.sum()),
            held_out=held_from, direction_saw_held_out=bool(saw),
            judge_before=p_before, judge_reconstruction=p_recon, masked=mask is not None,
        ))
    return out


def mouth_ceiling(workspace: "Workspace", label: str, negatives: str = "auto") -> ShiftJudgement:
    """What the best edit of the mouth alone could score: on the held-out frames `judge_shifts`
    uses, the person's own real mouth pasted in from the labelled frame with `label` that looks
    most like each face outside the mouth (same pose as far as the clip has one), through the
    feathered mouth mask (`edit.feathered_mask`). Real pixels and no model: when this stays under
    a target, no edit of the mouth can reach it with this judge, because the judge learned the
    label from more than the mouth (on the sample: open eyes, a tilted head)."""
    from facelab.edits import edit

    ids = workspace.active_face_ids()
    fit, positive, held, held_from = _held_out_split(workspace, ids, label, negatives)
    faces = workspace.faces()
    judge = fit_judge(np.ascontiguousarray(faces[ids[fit]]), positive[fit])
    originals = np.ascontiguousarray(faces[ids[held]]).astype(np.float32)
    donors = faces[ids[positive]].astype(np.float32)
    outside = ~mouth_mask(originals.shape[1])
    donors_out = donors[:, outside]
    nearest = donors[[int(np.argmin(((donors_out - face[outside]) ** 2).mean(axis=(1, 2)))) for face in originals]]
    mask = edit.feathered_mask(originals.shape[1])[None, :, :, None]
    shown = np.clip(np.rint(originals + mask * (nearest - originals)), 0, 255).astype(np.uint8)
    p_before = float(judge.p(originals.astype(np.uint8)).mean())
    return _judged(judge, originals, originals, shown,
                   label=label, direction=f"its own nearest {label} mouth, pasted", alpha=FULL_ALPHA,
                   detail=True, n=int(held.sum()), held_out=held_from, direction_saw_held_out=False,
                   judge_before=p_before, judge_reconstruction=p_before, masked=True)
