"""The localizer's appearance augmentation on hand-built canvas slices (HU, rows y / columns x for axial slices)."""

from __future__ import annotations

import numpy as np
import pytest

from cacflow.training import appearance as ap


def _chest() -> np.ndarray:
    """A 64 x 64 axial slice: air around a fat-walled body with two lungs and a soft-tissue heart."""
    img = np.full((64, 64), -1000.0, np.float32)
    img[10:50, 8:56] = -100.0  # body (fat)
    img[15:45, 12:28] = -850.0  # right lung
    img[15:45, 36:52] = -850.0  # left lung
    img[20:34, 26:40] = 40.0  # heart
    img[44:49, 30:34] = 700.0  # spine
    return img


def test_tissue_remap_keeps_air_and_tissue_order_and_can_erase_the_fat():
    img = _chest()
    fats = []
    for seed in range(50):
        out = ap.remap_tissue(img, np.random.default_rng(seed))
        assert (out[img == -1000.0] == -1000.0).all()
        lung, fat, heart, bone = (out[img == v][0] for v in (-850.0, -100.0, 40.0, 700.0))
        assert -1000.0 <= lung <= fat <= heart <= bone
        assert ap.FAT_RANGE_HU[0] <= fat <= max(ap.FAT_RANGE_HU[1], -850.0 + 80.0)
        fats.append(fat)
    # sometimes the fat is as dense as soft tissue (the phantom's fat shell disappears), sometimes it stays fat
    assert min(fats) < -120.0 and max(fats) > 0.0


def test_lung_vessels_only_raise_pixels_to_vessel_density():
    img = _chest()
    out = ap.add_lung_vessels(img, np.random.default_rng(3))
    changed = out != img
    assert changed.sum() <= ap.MAX_VESSELS * 6
    assert (out[changed] > img[changed]).all()
    assert (out[changed] >= ap.VESSEL_HU[0]).all() and (out[changed] <= ap.VESSEL_HU[1]).all()
    blank = np.full((8, 8), 40.0, np.float32)  # no lung: nothing drawn
    assert (ap.add_lung_vessels(blank, np.random.default_rng(0)) == blank).all()


@pytest.mark.parametrize("plane", ["axial", "sagittal"])
def test_table_lies_posterior_to_the_body(plane):
    img = _chest() if plane == "axial" else _chest().T.copy()  # sagittal slices: rows z, columns y
    out = ap.add_table(img, plane, np.random.default_rng(1))
    rows, cols = np.nonzero(out != img)
    assert len(rows)
    posterior = rows if plane == "axial" else cols
    assert posterior.min() > 49 - 1  # the body ends at y = 49
    assert posterior.max() - posterior.min() < 3  # a band of 1-3 voxels


def test_table_leaves_coronal_slices_alone():
    img = _chest()
    assert ap.add_table(img, "coronal", np.random.default_rng(0)) is img


def test_zoom_scales_the_body_about_the_centre():
    img = _chest()
    rng = np.random.default_rng(0)
    areas = []
    for _ in range(20):
        out = ap.zoom_slice(img, rng)
        areas.append(float((out > -500.0).sum()) / float((img > -500.0).sum()))
        assert out.shape == img.shape and out.min() >= -1000.0
    lo, hi = ap.ZOOM_RANGE
    assert lo**2 - 0.1 <= min(areas) and max(areas) <= hi**2 + 0.1
    assert min(areas) < 1.0 < max(areas)


def test_augment_slice_with_probability_zero_is_the_identity():
    img = _chest()
    assert ap.augment_slice(img, "axial", np.random.default_rng(0), 0.0) is img
    out = ap.augment_slice(img, "axial", np.random.default_rng(0), 1.0)
    assert out.shape == img.shape and not np.array_equal(out, img)


def test_body_box_bounds_the_voxels_above_body_density():
    canvas = np.full((20, 30, 40), -1000.0, np.float32)
    canvas[3:9, 5:25, 10:31] = -100.0
    assert ap.body_box(canvas) == ((3, 5, 10), (9, 25, 31))


def test_ellipsoid_cuts_of_every_plane_build_the_same_solid():
    """A slice of any plane gets its cut of one 3-D ellipsoid: stacking the axial, coronal and sagittal cuts gives
    the same voxels."""
    shape = (24, 32, 40)
    centre, radii = np.array([11.0, 15.0, 19.0]), np.array([7.0, 9.0, 12.0])
    solids = []
    for a, plane in enumerate(ap.PLANES):
        vol = np.full(shape, -1000.0, np.float32)
        for j in range(shape[a]):
            cut = ap._paint_ellipsoid(np.take(vol, j, axis=a), plane, j, centre, radii, 20.0)
            index = [slice(None)] * 3
            index[a] = j
            vol[tuple(index)] = cut
        solids.append(vol == 20.0)
    z, y, x = np.meshgrid(*(np.arange(n) for n in shape), indexing="ij")
    want = ((z - 11.0) / 7.0) ** 2 + ((y - 15.0) / 9.0) ** 2 + ((x - 19.0) / 12.0) ** 2 < 1.0
    for solid in solids:
        assert (solid != want).sum() <= 0.01 * want.sum()


def test_breasts_lie_in_front_of_the_chest_over_air_only():
    img = _chest()
    canvas = np.stack([img] * 40)  # z, y, x: the same chest on 40 slices
    lo, hi = ap.body_box(canvas)
    where = ap.SliceContext(20, lo, hi, heart_z=20.0)
    out = ap.add_breasts(img, "axial", where, np.random.default_rng(2))
    changed = out != img
    assert changed.any() and (img[changed] == -1000.0).all()  # drawn over air, the body untouched
    rows = np.nonzero(changed)[0]
    assert rows.min() < 10 and rows.max() < 30  # on the front half (low y) of the body, which spans y 10-49
    far = ap.SliceContext(0, lo, hi, heart_z=39.0)  # a slice far below the heart level: no cut
    assert (ap.add_breasts(img, "axial", far, np.random.default_rng(2)) == img).all()


def _record():
    """A 64^3 canvas of the chest slice over z 16..47 (heart in z 24..39) and its presence targets."""
    from cacflow.training.localizer import CanvasRecord

    canvas = np.full((64, 64, 64), -1000.0, np.float32)
    chest = _chest()
    for z in range(16, 48):
        canvas[z] = chest if 24 <= z < 40 else np.where(chest == 40.0, -100.0, chest)
    targets = np.zeros((3, 64), np.float32)
    targets[0, 24:40] = 1.0
    targets[1, 20:34] = 1.0
    targets[2, 26:40] = 1.0
    return CanvasRecord(None, canvas.astype(np.float16), targets)  # type: ignore[arg-type]


def _hp(**settings):
    """Localizer settings for a training batch: no appearance change unless asked, plus ``settings``."""
    from cacflow.training.localizer import LocalizerHyper

    return LocalizerHyper(**{"appearance_probability": 0.0, **settings})


def test_training_batches_change_the_slices_but_not_their_targets():
    from cacflow.training.localizer import _batch

    rec = _record()
    for plane in range(3):
        picks = np.array([(0, j) for j in range(64)])
        x, y = _batch([rec], plane, picks, None, np.random.default_rng(1), _hp(appearance_probability=1.0))
        assert np.array_equal(y.numpy(), rec.targets[plane])
        x0, y0 = _batch([rec], plane, picks, None, np.random.default_rng(1), _hp())
        assert np.array_equal(y0.numpy(), rec.targets[plane]) and not np.allclose(x.numpy(), x0.numpy())
        x1, _ = _batch([rec], plane, picks, None)  # validation: the slices as they are
        assert np.array_equal(x1.numpy(), x0.numpy())
