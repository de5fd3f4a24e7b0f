"""The localizer's appearance augmentation on hand-built canvas slices (HU, rows y / columns x for axial slices)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

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


def test_abdomen_slice_keeps_the_outline_edge_and_bones_and_replaces_heart_and_lungs():
    img = _chest()
    outside = img == -1000.0
    for seed in range(20):
        out = ap.abdomen_slice(img, np.random.default_rng(seed))
        assert out is not None and out.shape == img.shape
        assert (out[outside] == -1000.0).all()  # outside the body: air as before
        assert (out[44:49, 30:34] == 700.0).all()  # the spine stays
        assert (out[10, 8:56] == img[10, 8:56]).all() and (out[10:50, 8] == img[10:50, 8]).all()  # the edge stays
        heart = out[20:34, 26:40]
        assert (heart != 40.0).mean() > 0.9  # the heart is gone
    # the liver (patient's right: low columns) is soft tissue and reaches near the body wall
    livers = [ap.abdomen_slice(img, np.random.default_rng(s))[28, 14] for s in range(20)]
    assert np.median(livers) >= ap.LIVER_HU[0] - 30.0


def test_abdomen_slice_keeps_lungs_only_as_posterior_bases():
    img = _chest()
    kept = []
    for seed in range(30):
        out = ap.abdomen_slice(img, np.random.default_rng(seed))
        lung = (out == -850.0)
        rows = np.nonzero(lung)[0]
        if len(rows):
            kept.append(rows.min())
            assert lung.sum() < (img == -850.0).sum() / 2  # shrunk to crescents
    assert kept and min(kept) > 15 + 30 * 0.4 - 1  # behind the front of the lungs (they start at row 15)


def test_abdomen_slice_needs_a_body():
    assert ap.abdomen_slice(np.full((64, 64), -1000.0, np.float32), np.random.default_rng(0)) is None


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


def test_training_batches_replace_axial_slices_by_abdomen_slices_without_a_heart():
    from cacflow.training.localizer import _batch

    rec = _record()
    picks = np.array([(0, z) for z in range(24, 40)])
    x, y = _batch([rec], 0, picks, None, np.random.default_rng(0), _hp(abdomen_probability=1.0))
    assert (y == 0.0).all()  # every heart slice became an abdomen slice
    assert not np.allclose(x[:, 0, 20:34, 26:40].numpy(), (40.0 + 1000.0) / 1000.0)  # its heart is gone
    x0, y0 = _batch([rec], 0, picks, None, np.random.default_rng(0), _hp())
    assert (y0 == 1.0).all()
    # coronal slices are never replaced: their targets stay
    picks = np.array([(0, j) for j in range(64)])
    _, yc = _batch([rec], 1, picks, None, np.random.default_rng(0), _hp(abdomen_probability=1.0))
    assert np.array_equal(yc.numpy(), rec.targets[1])


def test_abdomen_canvas_continues_the_chest_and_changes_only_lung_voxels_of_it():
    canvas = _record().canvas.astype(np.float32)  # body over z 16..47; x < 32 is the patient's right
    for seed in range(10):
        out = ap.abdomen_canvas(canvas, np.random.default_rng(seed))
        chest, new = canvas[16:], out[16:]
        changed = chest != new
        assert (chest[changed] == -850.0).all()  # lung voxels only: heart, fat, spine kept
        assert (new[changed] > -200.0).all()  # and they became organ density
        assert changed[:, :, :32].any()  # the liver's dome, in the right lung's base
        top_right = np.nonzero(changed[:, :, :32].any(axis=(1, 2)))[0].max()
        top_left = np.nonzero(changed[:, :, 32:].any(axis=(1, 2)))[0]
        assert len(top_left) == 0 or top_left.max() <= top_right  # the left dome is the lower one
        below = out[:16]
        body = (below > ap.BODY_HU).any(axis=(1, 2))
        assert body[15] and 8 <= body.sum() <= 16  # a body continues the chest downwards, 8-16 slices deep here
        assert (below[:, :, :4] == -1000.0).all()  # with clean air beside it
        assert (canvas == _record().canvas.astype(np.float32)).all()  # the input is left alone


def test_abdomen_canvas_needs_room_below_the_body():
    canvas = np.roll(_record().canvas.astype(np.float32), -16, axis=0)  # body from z 0
    assert ap.abdomen_canvas(canvas, np.random.default_rng(0)) is None


def test_training_batches_read_the_abdomen_canvas_with_unchanged_targets():
    from cacflow.training.localizer import _batch

    rec = _record()
    for plane in range(3):
        picks = np.array([(0, j) for j in range(64)])
        x, y = _batch([rec], plane, picks, None, np.random.default_rng(1), _hp(abdomen_canvas_probability=1.0))
        assert np.array_equal(y.numpy(), rec.targets[plane])
        x0, _ = _batch([rec], plane, picks, None, np.random.default_rng(1), _hp())
        assert not np.allclose(x.numpy(), x0.numpy())  # the slices show the abdomen
    assert rec.abdomen is not None and rec.abdomen_tried  # drawn once, kept for the run
    kept = rec.abdomen.copy()
    _batch([rec], 2, np.array([(0, 30)]), None, np.random.default_rng(7), _hp(abdomen_canvas_probability=1.0))
    assert np.array_equal(rec.abdomen, kept)


def test_nodules_are_round_soft_tissue_blobs_drawn_over_lung_only():
    img = _chest()
    lung = img == -850.0
    for seed in range(20):
        out = ap.add_nodules(img, np.random.default_rng(seed))
        changed = out != img
        assert changed.any() and lung[changed].all()  # lung pixels only: body, heart and spine kept
        assert (out[changed] > -150.0).all() and (out[changed] < 150.0).all()  # soft-tissue density
        _, n = ndimage.label(changed)
        assert 1 <= n <= ap.MAX_NODULES


def test_nodules_need_lung_and_default_to_off_in_augment_slice():
    body = np.full((64, 64), 40.0, np.float32)
    assert ap.add_nodules(body, np.random.default_rng(0)) is body
    img = _chest()
    assert ap.augment_slice(img, "sagittal", np.random.default_rng(0), 0.0) is img  # nodules 0: untouched
    assert not np.array_equal(ap.augment_slice(img, "sagittal", np.random.default_rng(0), 0.0, nodules=1.0), img)


def test_nodule_diameter_range_sets_the_blob_size():
    img = _chest()
    for seed in range(10):
        small = ap.add_nodules(img, np.random.default_rng(seed), diameter_mm=(6.0, 6.0)) != img
        large = ap.add_nodules(img, np.random.default_rng(seed), diameter_mm=(30.0, 30.0)) != img
        # 3 mm canvas voxels: a 6 mm nodule has radius 1 voxel, a 30 mm one 5 (each axis x 0.75-1.25)
        _, n = ndimage.label(small)
        assert small.sum() <= n * 9  # within a 3 x 3 square each
        assert large.sum() > small.sum()


def test_mediastinum_joins_the_heart_to_the_spine_and_the_inlet_with_great_vessels():
    rec = _record()  # heart z 24..39, y 20..33, x 26..39; spine y 44..48 at x 30..33; body z 16..47
    canvas = rec.canvas.astype(np.float32)
    for seed in range(8):
        out = ap.mediastinum_canvas(rec.canvas, rec.targets, np.random.default_rng(seed))
        changed = out != canvas
        assert changed.any() and (rec.canvas.astype(np.float32) == canvas).all()  # a copy; the input is left alone
        assert not changed[canvas > ap.BONE_HU].any()  # bone stays
        assert not changed[24:40, 20:34, 26:40][canvas[24:40, 20:34, 26:40] == 40.0].any()  # the heart stays
        assert not changed[:16].any() and not changed[48:].any()  # nothing outside the body's extent
        assert not changed[:, :, :8].any() and not changed[:, :, 56:].any()
        # the descending aorta: blood density in front of the spine, on the patient's left of the midline (x > 32),
        # at every level from near the body's bottom up to the heart's top
        blood = (out >= ap.GREAT_VESSEL_HU[0] - 40.0) & (out <= ap.GREAT_VESSEL_HU[1] + 40.0)
        for z in (20, 30, 39):  # (the body's lowest three slices are its rim, left alone)
            assert blood[z, 34:44, 32:44].any(), (seed, z)
        # above the heart: great vessels and the trachea (air inside the body) where there was only fat
        assert blood[41:46][canvas[41:46] == -100.0].sum() > 20
        assert (out[41:47, 25:44, 24:40] < -900.0).any()


def test_mediastinum_needs_a_heart():
    rec = _record()
    assert ap.mediastinum_canvas(rec.canvas, np.zeros_like(rec.targets), np.random.default_rng(0)) is None


def test_training_batches_read_the_mediastinum_canvas_with_unchanged_targets():
    from cacflow.training.localizer import _batch

    rec = _record()
    differs = []
    for plane in range(3):
        picks = np.array([(0, j) for j in range(64)])
        x, y = _batch([rec], plane, picks, None, np.random.default_rng(2), _hp(mediastinum_probability=1.0))
        assert np.array_equal(y.numpy(), rec.targets[plane])
        x0, _ = _batch([rec], plane, picks, None, np.random.default_rng(2), _hp())
        differs.append(not np.allclose(x.numpy(), x0.numpy()))
    assert all(differs)  # every plane's slices show the mediastinum
    kept = rec.mediastinum.copy()  # drawn once, kept for the run
    _batch([rec], 2, np.array([(0, 30)]), None, np.random.default_rng(9), _hp(mediastinum_probability=1.0))
    assert np.array_equal(rec.mediastinum, kept)
