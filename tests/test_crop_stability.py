"""Face boxes smoothed over time: a still head gives a still crop, a real jump is followed."""

from __future__ import annotations

import numpy as np

from facelab.data import dataset
from facelab.data.faces import Box, BoxSmoother, size_jitter
from facelab.store import workspace as wsmod

from media import media_file


def smooth_all(boxes: list[Box | None], **kw) -> list[Box | None]:
    s = BoxSmoother(**kw)
    out = []
    for i, b in enumerate(boxes):
        out += s.push(i / 8, b, i)
    out += s.flush()
    assert [item for item, _ in out] == list(range(len(boxes)))  # every frame, in order
    return [b for _, b in out]


def still_head(n: int = 40, seed: int = 0) -> list[Box]:
    """A still face whose Haar box jumps between scale steps and wobbles by a few pixels."""
    rng = np.random.default_rng(seed)
    boxes = []
    for _ in range(n):
        side = int(200 * 1.1 ** rng.integers(-1, 2))
        cx, cy = 320 + rng.integers(-4, 5), 240 + rng.integers(-4, 5)
        boxes.append(Box(cx - side // 2, cy - side // 2, side, side))
    return boxes


def test_a_still_head_gives_a_steadier_crop() -> None:
    raw = still_head()
    smoothed = smooth_all(raw)
    assert size_jitter(raw) > 0.05
    assert size_jitter(smoothed) < size_jitter(raw) / 3
    steps = lambda bs: np.abs(np.diff([b.w for b in bs])) / np.array([b.w for b in bs[:-1]])  # noqa: E731
    assert steps(smoothed).mean() < steps(raw).mean() / 3


def test_a_jump_is_followed_at_once_not_smeared() -> None:
    a, b = Box(100, 100, 200, 200), Box(400, 150, 150, 150)
    out = smooth_all([a] * 10 + [b] * 10)
    assert out[:10] == [a] * 10 and out[10:] == [b] * 10


def test_no_face_ends_the_segment_and_stays_in_order() -> None:
    a, b = Box(100, 100, 200, 200), Box(104, 100, 220, 220)
    out = smooth_all([a, a, a, None, b, b, b])
    assert out[3] is None
    assert out[:3] == [a] * 3 and out[4:] == [b] * 3  # nothing averaged across the gap


def test_a_gap_in_time_ends_the_segment() -> None:
    a, b = Box(100, 100, 200, 200), Box(104, 100, 220, 220)
    s = BoxSmoother(max_gap_s=1.0)
    out = s.push(0.0, a, 0) + s.push(0.125, a, 1) + s.push(5.0, b, 2) + s.push(5.125, b, 3) + s.flush()
    assert [box for _, box in out] == [a, a, b, b]


def test_a_slow_move_is_followed() -> None:
    raw = [Box(100 + 3 * i, 100, 200, 200) for i in range(30)]  # drifts 3 px a frame
    out = smooth_all(raw)
    assert all(abs(o.center[0] - r.center[0]) <= 6 for o, r in zip(out, raw))


def test_build_of_the_sample_zooms_less(home) -> None:
    """On the bundled clip, consecutive crops change size less with smoothing than without."""
    def steps(smooth: int) -> np.ndarray:
        w = wsmod.create(f"s{smooth}", home)
        dataset.build(w, media_file("WolfgangLanger_Pexels.mp4"), dataset.BuildSettings(fps=8, smooth=smooth))
        sizes = np.array([f["box"][2] for f in dataset.faces_table(w)], float)
        return np.abs(np.diff(sizes)) / sizes[:-1]

    raw, smoothed = steps(0), steps(3)
    assert smoothed.mean() < raw.mean() / 1.5
    assert np.percentile(smoothed, 90) < np.percentile(raw, 90)
