"""Interpolation, shifts and their pictures (facelab.edits.edit, facelab.edits.animate) on generated latents."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facelab.edits import animate, edit
from facelab.edits.directions import Direction

from builders import FlatCodec


# --- interpolation ------------------------------------------------------------------------
def test_lerp_endpoints_and_midpoint() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=16), rng.normal(size=16)
    path = edit.lerp(a, b, 7)
    assert path.shape == (7, 16) and path.dtype == np.float32
    np.testing.assert_allclose(path[0], a, rtol=1e-6)
    np.testing.assert_allclose(path[-1], b, rtol=1e-6)
    np.testing.assert_allclose(path[3], (a + b) / 2, rtol=1e-5, atol=1e-6)


def test_slerp_between_unit_vectors_stays_on_the_sphere() -> None:
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=32), rng.normal(size=32)
    a, b = a / np.linalg.norm(a), b / np.linalg.norm(b)
    path = edit.slerp(a, b, 11)
    np.testing.assert_allclose(path[0], a, rtol=1e-6)
    np.testing.assert_allclose(path[-1], b, rtol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(path, axis=1), 1.0, atol=1e-5)
    # it is not the straight line: the middle of a lerp is shorter
    assert np.linalg.norm(edit.lerp(a, b, 11)[5]) < 0.99
    # equal angles between neighbours (constant speed along the arc)
    cos = np.sum(path[1:] * path[:-1], axis=1)
    np.testing.assert_allclose(cos, cos[0], atol=1e-5)


@pytest.mark.parametrize("factor", [2.0, -3.0])
def test_slerp_of_parallel_vectors_falls_back_to_lerp(factor: float) -> None:
    a = np.arange(1, 9, dtype=np.float64)
    path = edit.slerp(a, factor * a, 5)
    assert np.all(np.isfinite(path))
    np.testing.assert_allclose(path, edit.lerp(a, factor * a, 5), rtol=1e-6)


def test_interpolate_rejects_bad_input() -> None:
    with pytest.raises(edit.EditError, match="steps"):
        edit.lerp(np.zeros(4), np.ones(4), 1)
    with pytest.raises(edit.EditError, match="differ in size"):
        edit.slerp(np.zeros(4), np.ones(5), 3)
    with pytest.raises(edit.EditError, match="unknown interpolation"):
        edit.interpolate(np.zeros(4), np.ones(4), 3, "cubic")
    with pytest.raises(edit.EditError, match="non-finite"):
        edit.lerp(np.array([np.nan, 0.0]), np.ones(2), 3)


def test_interpolation_strip_decodes_every_step() -> None:
    codec = FlatCodec()
    strip = edit.interpolation_strip(codec, np.zeros(8), np.ones(8), 6, "slerp")
    assert strip.shape == (6, 16, 16, 3) and strip.dtype == np.uint8
    assert strip[0, 0, 0, 0] == 128 and strip[-1, 0, 0, 0] == 168


# --- shifts: one composition for every move ----------------------------------------------
def test_compose_toward_ends_and_middle() -> None:
    rng = np.random.default_rng(2)
    z, c = rng.normal(size=8).astype(np.float32), rng.normal(size=8).astype(np.float32)
    np.testing.assert_array_equal(edit.compose(z, target=c, strength=0.0), z)
    np.testing.assert_array_equal(edit.compose(z, target=c, strength=1.0), c)
    np.testing.assert_allclose(edit.compose(z, target=c, strength=0.5), (z + c) / 2, rtol=1e-5)
    with pytest.raises(edit.EditError, match="between 0 and 1"):
        edit.compose(z, target=c, strength=1.5)
    with pytest.raises(edit.EditError, match="centre has shape"):
        edit.compose(z, target=c[:4], strength=0.5)


def test_compose_moves_toward_the_centre_then_adds_the_slider_steps_whole() -> None:
    """z' = z + s (c - z) + alpha spread d: the slider's step does not shrink with the strength
    (the Shift page once gave z + s (c - z) + (1 - s) alpha spread d)."""
    d = Direction("smile", "logistic", np.eye(8, dtype=np.float32)[2], spread=0.5)
    z = np.zeros(8, np.float32)
    c = np.full(8, 2.0, np.float32)
    for s in (0.0, 0.25, 1.0):
        out = edit.compose(z, [(d, 2.0)], c, s)
        np.testing.assert_allclose(out, z + s * (c - z) + 2.0 * 0.5 * d.vector, rtol=1e-6)
    # at full strength the slider still moves the face away from the centre
    assert not np.array_equal(edit.compose(z, [(d, 2.0)], c, 1.0), c)


def test_compose_steps_are_alpha_times_spread() -> None:
    d = Direction("smile", "logistic", np.eye(8, dtype=np.float32)[2], spread=0.5)
    z = np.zeros((3, 8), np.float32)
    out = edit.compose(z, [(d, 2.0)])
    np.testing.assert_allclose(out[:, 2], 1.0)
    np.testing.assert_allclose(np.delete(out, 2, axis=1), 0.0)
    # a plain vector is used as is; several steps add up
    out = edit.compose(z[0], [(d, -1.0), (np.eye(8)[0], 0.25)])
    np.testing.assert_allclose(out, [0.25, 0, -0.5, 0, 0, 0, 0, 0])


def test_compose_without_a_move_gives_z_back_even_outside_the_bounds() -> None:
    bounds = edit.LatentBounds.prior(8)
    z = np.full(8, 20.0, np.float32)  # far outside the +-6 box: an unusual photo
    np.testing.assert_array_equal(edit.compose(z, [], bounds=bounds), z)
    np.testing.assert_array_equal(edit.compose(z, [(np.ones(8), 0.0)], bounds=bounds), z)
    # a move may not push it further out, but is not yanked back into the box either
    out = edit.compose(z, [(np.eye(8)[0], -1.0), (np.eye(8)[1], 1.0)], bounds=bounds)
    assert out[0] == 19.0 and out[1] == 20.0


@pytest.mark.parametrize("alpha", [1e6, -1e30, 3.0e38])
def test_extreme_alphas_stay_finite_and_bounded(alpha: float) -> None:
    rng = np.random.default_rng(3)
    data = rng.normal(size=(200, 8)).astype(np.float32)
    bounds = edit.LatentBounds.from_latents(data)
    d1 = Direction("a", "mean_diff", np.ones(8, np.float32) / np.sqrt(8), spread=1e3)
    d2 = Direction("b", "mean_diff", -np.ones(8, np.float32) / np.sqrt(8), spread=1e3)
    out = edit.compose(data[:4], [(d1, alpha), (d2, alpha)], bounds=bounds)
    assert np.all(np.isfinite(out))
    assert np.all(out >= bounds.low) and np.all(out <= bounds.high)
    out = edit.compose(data[0], [(d1, alpha)])  # default bounds: the prior's +-6
    assert np.all(np.isfinite(out)) and np.abs(out).max() <= edit.BOUND_SIGMAS
    with pytest.raises(edit.EditError, match="finite"):
        edit.compose(data[0], [(d1, float("inf"))])


def test_compose_refuses_a_centre_and_a_wrong_size() -> None:
    centre = Direction("laugh", "centre", np.ones(8, np.float32))
    with pytest.raises(edit.EditError, match="target"):
        edit.compose(np.zeros(8), [(centre, 1.0)])
    with pytest.raises(edit.EditError, match="4 values"):
        edit.compose(np.zeros(8), [(np.ones(4), 1.0)])


# --- detail-preserving pictures -----------------------------------------------------------
def _face(seed: int, size: int = 16) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)


def test_detail_preserving_shift_is_the_original_plus_the_decoded_change() -> None:
    codec, original = FlatCodec(), _face(0)
    z = np.zeros(8, np.float32)
    moved = edit.compose(z, [(np.eye(8)[0], 1.0)])  # decoded red goes 128 -> 168
    recon, shown = edit.shift_faces(codec, original, z, np.stack([z, moved]))
    assert recon.shape == (16, 16, 3) and shown.shape == (2, 16, 16, 3)
    np.testing.assert_array_equal(shown[0], original)  # no move: the original, exactly
    expected = np.clip(original.astype(int) + [40, 0, 0], 0, 255)
    np.testing.assert_array_equal(shown[1], expected)
    # the plain picture is the decoded face
    _, plain = edit.shift_faces(codec, original, z, moved[None], detail=False)
    np.testing.assert_array_equal(plain[0], codec.decode(moved[None])[0])
    # a larger original (a sharper crop) gets the change resized to it
    big = _face(1, 32)
    np.testing.assert_array_equal(edit.with_change(big, recon, recon), big)
    out = edit.with_change(big, recon, codec.decode(moved[None])[0])
    np.testing.assert_array_equal(out, np.clip(big.astype(int) + [40, 0, 0], 0, 255))


def test_detail_preserving_interpolation_ends_on_the_real_frames() -> None:
    codec = FlatCodec()
    a, b = _face(2), _face(3)
    z_a, z_b = np.full(8, -0.5, np.float32), np.full(8, 0.7, np.float32)
    for method in ("linear", "slerp"):
        frames = edit.interpolation_strip(codec, z_a, z_b, 5, method, ends=(a, b))
        assert frames.shape == (5, 16, 16, 3) and frames.dtype == np.uint8
        np.testing.assert_array_equal(frames[0], a)
        np.testing.assert_array_equal(frames[-1], b)
    # the middle blends the two detail-preserving paths: (a + b) / 2 plus the decoded change
    frames = edit.interpolation_strip(codec, z_a, z_b, 3, "linear", ends=(a, b))
    dec = codec.decode(edit.lerp(z_a, z_b, 3)).astype(np.float32)
    mid = 0.5 * (a + dec[1] - dec[0]) + 0.5 * (b + dec[1] - dec[2])
    np.testing.assert_array_equal(frames[1], np.clip(np.rint(mid), 0, 255).astype(np.uint8))
    # without ends: the plain decoded faces
    np.testing.assert_array_equal(edit.interpolation_strip(codec, z_a, z_b, 3), dec.astype(np.uint8))


# --- pictures -----------------------------------------------------------------------------
def test_gif_is_pingpong_and_decodes(tmp_path: Path) -> None:
    codec = FlatCodec()
    steps = 6
    frames = edit.interpolation_strip(codec, np.full(8, -2.0), np.full(8, 2.0), steps)
    path = animate.save_strip(tmp_path / "strip.gif", frames, duration_ms=80, scale=4, resample="bicubic")
    with Image.open(path) as gif:
        assert gif.format == "GIF" and gif.n_frames == 2 * steps - 2
        assert gif.size == (16 * 4, 16 * 4)
        assert gif.info["duration"] == 80 and gif.info.get("loop") == 0
        colours = []
        for i in range(gif.n_frames):
            gif.seek(i)
            colours.append(np.asarray(gif.convert("RGB"))[8, 8, 0])
    # forward then back: the first red value is the smallest, the middle one the largest
    assert colours[: steps] == sorted(colours[: steps])
    assert colours[steps - 1 :] == sorted(colours[steps - 1 :], reverse=True)


def test_mp4_is_pingpong_h264_and_decodes(tmp_path: Path) -> None:
    import av

    steps = 6
    frames = edit.interpolation_strip(FlatCodec(), np.full(8, -2.0), np.full(8, 2.0), steps)
    path = animate.save_strip(tmp_path / "path.mp4", frames, duration_ms=100, scale=3)  # 48 px
    with av.open(str(path)) as video:
        stream = video.streams.video[0]
        assert stream.codec_context.name == "h264" and float(stream.average_rate) == 10.0
        reds = [int(f.to_ndarray(format="rgb24")[24, 24, 0]) for f in video.decode(stream)]
    assert len(reds) == 2 * steps - 2
    assert reds[:steps] == sorted(reds[:steps]) and reds[0] < reds[steps - 1] - 50  # there ...
    assert reds[steps - 1:] == sorted(reds[steps - 1:], reverse=True)  # ... and back
    odd = animate.mp4_bytes(np.zeros((2, 15, 15, 3), np.uint8), scale=1)  # odd sides are padded, not refused
    assert odd[4:8] == b"ftyp"


def test_png_strip_with_real_ends(tmp_path: Path) -> None:
    frames = FlatCodec().decode(np.linspace(-1, 1, 5)[:, None].repeat(8, 1).astype(np.float32))
    ends = (np.zeros((16, 16, 3), np.uint8), np.full((16, 16, 3), 255, np.uint8))
    path = animate.save_strip(tmp_path / "strip.png", frames, ends=ends, scale=2)
    img = np.asarray(Image.open(path))
    assert img.shape == (32, 2 * 32 + 2 * animate.GAP + 5 * 32, 3)
    assert img[0, 0].tolist() == [0, 0, 0] and img[0, -1].tolist() == [255, 255, 255]
    assert not list(tmp_path.glob(".*.tmp")), "atomic write left a temp file"


def test_upscale_and_bad_names(tmp_path: Path) -> None:
    img = np.arange(2 * 2 * 3, dtype=np.uint8).reshape(1, 2, 2, 3)
    big = animate.upscale(img, 3, "nearest")
    assert big.shape == (1, 6, 6, 3) and np.array_equal(big[0, :3, :3], np.broadcast_to(img[0, 0, 0], (3, 3, 3)))
    with pytest.raises(animate.AnimateError, match=".png, .gif or .mp4"):
        animate.save_strip(tmp_path / "x.jpg", big)
    with pytest.raises(animate.AnimateError, match="uint8"):
        animate.upscale(img.astype(np.float32))
    data = animate.gif_bytes(big, bounce=False)
    assert Image.open(io.BytesIO(data)).n_frames == 1


def test_faces_are_upscaled_for_display_to_at_least_192_px() -> None:
    faces = FlatCodec().decode(np.zeros((2, 8), np.float32))  # 16 px
    big = animate.for_display(faces)
    assert big.shape == (2, 192, 192, 3) and big.dtype == np.uint8
    assert animate.for_display(np.zeros((1, 64, 64, 3), np.uint8)).shape[1] == 192
    assert animate.for_display(np.zeros((1, 100, 100, 3), np.uint8)).shape[1] == 200
