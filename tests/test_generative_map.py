"""The map as an instrument (facelab.space.generative_map): places back to latents, the face field, paths."""

from __future__ import annotations

import numpy as np
import pytest

from facelab.space import generative_map as gm
from facelab.space import projection as pj

from builders import FlatCodec


def latents(n: int = 200, dim: int = 8, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(n, dim)) * np.linspace(3, 0.5, dim)).astype(np.float32)


def test_a_place_on_a_pca_map_decodes_to_the_latent_whose_projection_is_that_place() -> None:
    from sklearn.decomposition import PCA

    mu = latents()
    xy = pj.project(mu, "pca")  # the map Explore shows
    inv = gm.MapInverse.fit(xy, mu, linear=True)
    assert inv.linear and "exactly" in inv.how
    places = np.array([[0.0, 0.0], [2.5, -1.0], [-4.0, 3.0], [30.0, 30.0]], np.float32)  # the last far outside
    z = inv.latents_at(places)
    assert z.shape == (4, 8) and z.dtype == np.float32
    again = PCA(n_components=2, random_state=0).fit(mu).transform(z)  # placed by the map's own method
    np.testing.assert_allclose(again, places, atol=1e-3)
    np.testing.assert_allclose(inv.place(z), places, atol=1e-3)
    # every other direction stays at the average face: the step from the centre lies in the map's plane
    step = z - mu.mean(0)
    back_to_plane = np.linalg.pinv(inv.basis)  # 2 x D: the map's plane in latent space
    np.testing.assert_allclose(step, step @ np.linalg.pinv(back_to_plane) @ back_to_plane, atol=1e-3)


def test_a_place_on_a_nonlinear_map_blends_only_neighbours_that_are_close_in_latent_space() -> None:
    # Two groups far apart in latent space, drawn side by side on the map (as t-SNE may).
    a = np.zeros((20, 4), np.float32)
    b = np.full((20, 4), 10.0, np.float32)
    mu = np.concatenate([a, b]) + np.random.default_rng(1).normal(scale=0.01, size=(40, 4)).astype(np.float32)
    xy = np.concatenate([np.c_[np.linspace(0, 1, 20), np.zeros(20)], np.c_[np.linspace(1.2, 2.2, 20), np.zeros(20)]])
    inv = gm.MapInverse.fit(xy, mu, linear=False)
    assert not inv.linear and "blend" in inv.how
    np.testing.assert_allclose(inv.latents_at(xy[5]), mu[5:6], atol=0.02)  # on a frame: that frame
    between = inv.latents_at([[1.05, 0.0]])[0]  # nearer to group a's end
    assert np.abs(between).max() < 0.1, f"mixed two far groups into no face: {between}"
    back = inv.place(mu[:3])
    np.testing.assert_allclose(back, xy[:3], atol=0.05)


def test_degenerate_and_bad_input() -> None:
    mu = latents(50)
    with pytest.raises(gm.MapDecodeError, match="at least 2 frames"):
        gm.MapInverse.fit(np.zeros((1, 2)), mu[:1], linear=True)
    with pytest.raises(gm.MapDecodeError, match="N x 2"):
        gm.MapInverse.fit(np.zeros((50, 3)), mu, linear=True)
    line = np.c_[np.arange(50.0), np.zeros(50)]  # every frame on one line: no plane to invert
    assert not gm.MapInverse.fit(line, mu, linear=True).linear
    inv = gm.MapInverse.fit(pj.project(mu, "pca"), mu, linear=True)
    with pytest.raises(gm.MapDecodeError, match="finite"):
        inv.latents_at([[np.nan, 0.0]])
    with pytest.raises(gm.MapDecodeError, match="2 to 40"):
        gm.face_field(FlatCodec(dim=8), inv, n=1)


def test_the_face_field_is_deterministic_and_fades_places_far_from_every_frame() -> None:
    mu = latents()
    mu[:100] += 6.0  # two groups: the grid's corners between them have no frame near
    xy = pj.project(mu, "pca")
    inv = gm.MapInverse.fit(xy, mu, linear=True)
    codec = FlatCodec(dim=8)
    one, two = gm.face_field(codec, inv, 6), gm.face_field(codec, inv, 6)
    assert one.faces.shape == (36, 16, 16, 3)
    np.testing.assert_array_equal(one.faces, two.faces)
    np.testing.assert_array_equal(one.picture(), two.picture())
    # row by row from the top left: x grows along a row, y falls down the rows
    assert (np.diff(one.places[:6, 0]) > 0).all() and (np.diff(one.places[::6, 1]) < 0).all()
    assert one.near.any() and not one.near.all()
    pic = one.picture(gap=2)
    assert pic.shape == (6 * 16 + 5 * 2, 6 * 16 + 5 * 2, 3)
    far = int(np.flatnonzero(~one.near)[0])
    r, c = divmod(far, 6)
    tile_far = pic[r * 18: r * 18 + 16, c * 18: c * 18 + 16].astype(int)
    assert (tile_far >= one.faces[far].astype(int)).all() and (tile_far > one.faces[far]).any()  # toward white


def test_a_path_through_three_frames_starts_ends_and_passes_through_them() -> None:
    codec = FlatCodec(dim=8)
    z = latents(3)
    real = np.stack([np.full((16, 16, 3), v, np.uint8) for v in (10, 120, 240)])
    frames = gm.path_frames(codec, z, steps=5, ends=real)
    assert len(frames) == 5 + 4  # each joint once
    np.testing.assert_array_equal(frames[0], real[0])
    np.testing.assert_array_equal(frames[4], real[1])
    np.testing.assert_array_equal(frames[-1], real[2])
    plain = gm.path_frames(codec, z, steps=5)
    np.testing.assert_array_equal(plain[[0, 4, 8]], codec.decode(z))
    with pytest.raises(gm.MapDecodeError, match="at least 2 frames"):
        gm.path_frames(codec, z[:1], steps=5)


def test_two_orthogonal_directions_as_axes_separate_two_labelled_blobs() -> None:
    from facelab.edits.directions import Direction

    rng = np.random.default_rng(2)
    e = np.eye(6, dtype=np.float32)
    smile = rng.normal(size=(60, 6)).astype(np.float32) * 0.3 + 3 * e[0]  # smiles sit high along e0
    surprise = rng.normal(size=(60, 6)).astype(np.float32) * 0.3 + 3 * e[1]  # surprise along e1
    mu = np.concatenate([smile, surprise])
    d_smile = Direction("smile", "logistic", e[0], spread=float(mu[:, 0].std()))
    d_surprise = Direction("surprise", "logistic", e[1], spread=float(mu[:, 1].std()))
    xy = gm.axes_map(mu, np.arange(120.0), d_smile, d_surprise)
    assert (xy[:60, 0] > xy[60:, 0].max()).all() and (xy[60:, 1] > xy[:60, 1].max()).all()
    assert abs(float(xy[:, 0].mean())) < 1e-5 and np.isclose(xy[:, 0].std(), 1.0, atol=1e-3)  # in spreads
    inv = gm.MapInverse.fit(xy, mu, linear=True)  # two directions: a linear map, decoded exactly
    np.testing.assert_allclose(inv.place(inv.latents_at([[1.0, -0.5]])), [[1.0, -0.5]], atol=1e-4)
    over_time = gm.axes_map(mu, np.arange(120.0), d_smile, gm.TIME_AXIS)
    np.testing.assert_array_equal(over_time[:, 1], np.arange(120.0))
    with pytest.raises(gm.MapDecodeError, match="centre"):
        gm.axes_map(mu, np.arange(120.0), Direction("c", "centre", mu.mean(0)), d_smile)
    with pytest.raises(gm.MapDecodeError, match="not 'speed'"):
        gm.axes_map(mu, np.arange(120.0), d_smile, "speed")


def test_axes_place_a_new_face_and_a_centre_where_the_frames_put_them() -> None:
    """Fitted on the frames, the axes place any latent on the same map: a frame given alone lands
    on its own point, a cluster's centre (its members' mean) on its members' mean place, and a
    face without a time is refused on a time axis."""
    from facelab.edits.directions import Direction

    rng = np.random.default_rng(3)
    mu = rng.normal(size=(50, 4)).astype(np.float32) + 2.0  # off the origin: the frames' mean matters
    a = Direction("a", "logistic", np.array([1, 0, 0, 0], np.float32), spread=0.5)
    b = Direction("b", "logistic", np.array([0, 0.6, 0.8, 0], np.float32), spread=2.0)
    axes = gm.Axes(a, b).fit(mu)
    frames = axes.transform(mu)
    np.testing.assert_allclose(axes.transform(mu[7]), frames[7:8], atol=1e-5)  # the live face: one latent
    members = np.arange(10, 30)
    np.testing.assert_allclose(axes.transform(mu[members].mean(0)), frames[members].mean(0, keepdims=True),
                               atol=1e-5)
    assert axes.linear and not gm.Axes(a, gm.TIME_AXIS).linear
    over_time = gm.Axes(a, gm.TIME_AXIS).fit(mu)
    np.testing.assert_array_equal(over_time.transform(mu[:3], np.array([1.0, 2.0, 3.0]))[:, 1], [1, 2, 3])
    with pytest.raises(gm.MapDecodeError, match="without a time"):
        over_time.transform(mu[:1])
