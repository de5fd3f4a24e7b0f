"""Heart localisation heuristic (cacflow.imaging.heart_region).

Synthetic cohort (truth: heart mask, coronary calcium, bone distractors), the real Philips chest CT, real
non-cardiac scans (abdomen NIfTI and DICOM) and the tiny real thorax. Real data lives in ../shared/data/real.
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage as ndi

from cacflow.imaging.heart_region import (
    IMPLAUSIBLE,
    NOT_AXIAL,
    NOT_IN_FIELD_OF_VIEW,
    HeartNotFound,
    HeartRegion,
    find_heart_region,
)
from cacflow.pipeline.convert import convert_series

BONE = 4  # distractor label of bone in the synthetic truth


def _box_slices(box: tuple[int, ...]) -> tuple[slice, slice, slice]:
    return slice(box[0], box[1]), slice(box[2], box[3]), slice(box[4], box[5])


def _largest_dense_component_in_mask_ml(hu: np.ndarray, region: HeartRegion, spacing) -> float:
    """Largest >= 130 HU component (full grid, inside the box) that reaches into the mask, in ml: bone would be
    several ml, plaques and noise are small."""
    sl = _box_slices(region.box_zyx)
    dense = hu[sl] >= 130
    lab, _ = ndi.label(dense, structure=np.ones((3, 3, 3), dtype=bool))
    ids = np.unique(lab[dense & region.mask[sl]])
    ids = ids[ids > 0]
    if ids.size == 0:
        return 0.0
    return float(np.bincount(lab.ravel())[ids].max() * np.prod(spacing) / 1000.0)


def _check_region_contract(region: HeartRegion, shape: tuple[int, ...], spacing, origin, direction) -> None:
    z0, z1, y0, y1, x0, x1 = region.box_zyx
    assert all(isinstance(v, int) for v in region.box_zyx)
    assert 0 <= z0 < z1 <= shape[0] and 0 <= y0 < y1 <= shape[1] and 0 <= x0 < x1 <= shape[2]
    assert region.mask.dtype == bool and region.mask.shape == tuple(shape)
    outside = region.mask.copy()
    outside[_box_slices(region.box_zyx)] = False
    assert not outside.any(), "mask must lie inside the box"
    assert region.mask.any()
    assert region.method == "heuristic"
    assert all(type(v) is float for v in region.qc.values())
    assert 0.0 <= region.qc["confidence"] <= 1.0
    # LPS corners are the extreme voxel centres of the box
    sz, sy, sx = spacing
    corners = np.array([[x * sx, y * sy, z * sz] for z in (z0, z1 - 1) for y in (y0, y1 - 1) for x in (x0, x1 - 1)])
    lps = np.asarray(origin)[None, :] + corners @ np.asarray(direction).T
    np.testing.assert_allclose(region.box_lps_mm[0], lps.min(axis=0), atol=1e-6)
    np.testing.assert_allclose(region.box_lps_mm[1], lps.max(axis=0), atol=1e-6)


# ------------------------------------------------------------------------------------------------------------------
# Synthetic cohort with truth


@pytest.fixture(scope="module")
def synthetic(small_cohort: Path) -> list[dict]:
    rows = []
    for path in sorted((small_cohort / "truth" / "volumes").glob("*.npz")):
        with np.load(path) as f:
            d = {k: f[k] for k in ("hu", "heart_mask", "vessel_calcium", "distractor_mask", "spacing_zyx", "origin",
                                   "direction")}
        spacing = tuple(float(v) for v in d["spacing_zyx"])
        region = find_heart_region(d["hu"], spacing, tuple(d["origin"]), d["direction"])
        rows.append({"name": path.stem[-8:], "region": region, "spacing": spacing, **d})
    assert len(rows) >= 6, "the small cohort should hold at least one axial series per participant"
    return rows


def test_synthetic_regions_honour_the_contract(synthetic):
    for r in synthetic:
        _check_region_contract(r["region"], r["hu"].shape, r["spacing"], r["origin"], r["direction"])


def test_synthetic_box_covers_the_true_heart(synthetic):
    for r in synthetic:
        heart, region = r["heart_mask"], r["region"]
        box = np.zeros(heart.shape, dtype=bool)
        box[_box_slices(region.box_zyx)] = True
        coverage = (heart & box).sum() / heart.sum()
        assert coverage >= 0.97, f"{r['name']}: only {coverage:.3f} of the true heart inside the box"
        # and the box is not the whole volume: IoU with the true heart's bounding box
        idx = np.nonzero(heart)
        true = [(int(i.min()), int(i.max()) + 1) for i in idx]
        got = [(region.box_zyx[2 * a], region.box_zyx[2 * a + 1]) for a in range(3)]
        inter = np.prod([max(0, min(t[1], g[1]) - max(t[0], g[0])) for t, g in zip(true, got)])
        union = np.prod([t[1] - t[0] for t in true]) + np.prod([g[1] - g[0] for g in got]) - inter
        assert inter / union >= 0.6, f"{r['name']}: box IoU {inter / union:.2f} with the true heart's box"


def test_synthetic_coronary_calcium_is_inside_the_mask(synthetic):
    with_calcium = [r for r in synthetic if (r["vessel_calcium"] > 0).any()]
    assert with_calcium, "the cohort should hold coronary plaques"
    for r in with_calcium:
        calcium = r["vessel_calcium"] > 0
        inside = (calcium & r["region"].mask).sum() / calcium.sum()
        assert inside >= 0.99, f"{r['name']}: only {inside:.3f} of the coronary calcium voxels inside the mask"


def test_synthetic_mask_keeps_bone_out(synthetic):
    for r in synthetic:
        region, hu = r["region"], r["hu"]
        bone = (r["distractor_mask"] == BONE) & (hu >= 130)
        in_box = bone[_box_slices(region.box_zyx)].sum()
        in_mask = (bone & region.mask).sum()
        assert in_mask <= max(20, 0.01 * in_box), f"{r['name']}: {in_mask} bone voxels >= 130 HU in the mask"
        assert _largest_dense_component_in_mask_ml(hu, region, r["spacing"]) < 2.0


def test_feet_first_and_transposed_input_give_the_same_box(synthetic):
    r = synthetic[0]
    hu, sp, origin, d = r["hu"], r["spacing"], np.asarray(r["origin"]), np.asarray(r["direction"])
    ref = np.asarray(r["region"].box_lps_mm)
    nz, ny, nx = hu.shape
    # reverse columns and slices (what a feet-first acquisition of the same patient looks like)
    flipped_origin = origin + d[:, 0] * sp[2] * (nx - 1) + d[:, 2] * sp[0] * (nz - 1)
    flipped_dir = d * np.array([-1.0, 1.0, -1.0])[None, :]
    flipped = find_heart_region(hu[::-1, :, ::-1], sp, tuple(flipped_origin), flipped_dir)
    # rows and columns swapped
    transposed = find_heart_region(np.ascontiguousarray(hu.transpose(0, 2, 1)), (sp[0], sp[2], sp[1]),
                                   tuple(origin), d[:, [1, 0, 2]])
    for other in (flipped, transposed):
        np.testing.assert_allclose(np.asarray(other.box_lps_mm), ref, atol=8.0)


# ------------------------------------------------------------------------------------------------------------------
# Real data


def _series(root: Path, folder: str):
    paths = sorted(p.relative_to(root).as_posix() for p in (root / folder).iterdir()
                   if p.is_file() and p.suffix.lower() not in (".md", ".png", ".nrrd"))
    return convert_series(root, paths)


def _nifti_lps(path: Path) -> tuple[np.ndarray, tuple[float, float, float], tuple[float, float, float], np.ndarray]:
    """NIfTI (RAS) to (hu (z, y, x), spacing_zyx, origin LPS, direction with x, y, z columns in LPS)."""
    img = nib.load(str(path))
    affine = img.affine.copy()
    affine[:2] *= -1.0  # RAS -> LPS
    spacing_xyz = np.linalg.norm(affine[:3, :3], axis=0)
    hu = np.transpose(np.asarray(img.dataobj), (2, 1, 0))
    return hu, tuple(float(s) for s in spacing_xyz[::-1]), tuple(float(v) for v in affine[:3, 3]), \
        affine[:3, :3] / spacing_xyz[None, :]


@pytest.fixture(scope="module")
def philips(real_data: Path):
    vol = _series(real_data, "chest_ct_philips_4dct_phase00")
    region = find_heart_region(vol.hu, vol.spacing_zyx, vol.origin, vol.direction)
    return vol, region


def test_real_chest_ct_gives_a_plausible_box_around_the_heart(philips):
    vol, region = philips
    hu, sp = vol.hu, vol.spacing_zyx
    _check_region_contract(region, hu.shape, sp, vol.origin, vol.direction)
    lo, hi = (np.asarray(c) for c in region.box_lps_mm)
    # the box centre lies inside the scanned field
    corners = np.array([[x * sp[2], y * sp[1], z * sp[0]] for z in (0, hu.shape[0] - 1)
                        for y in (0, hu.shape[1] - 1) for x in (0, hu.shape[2] - 1)])
    field = np.asarray(vol.origin)[None, :] + corners @ np.asarray(vol.direction).T
    centre = (lo + hi) / 2
    assert np.all(centre >= field.min(axis=0)) and np.all(centre <= field.max(axis=0))
    extent = hi - lo
    assert 100 <= extent[0] <= 240 and 100 <= extent[1] <= 240, extent  # box = heart + 12 mm fat on each side
    assert 70 <= extent[2] <= 180, extent
    # the heart is in the lower part of the scan (the lungs fill it up to the apex) ...
    z0, z1, y0, y1, x0, x1 = region.box_zyx
    zc, yc, xc = (z0 + z1) // 2, (y0 + y1) // 2, (x0 + x1) // 2
    assert zc < hu.shape[0] / 2
    # ... its centre is soft tissue inside the body, with lung on both sides and the spine behind it
    assert np.median(hu[zc, yc - 5:yc + 5, xc - 5:xc + 5]) > -100
    row = hu[zc, yc]
    assert (row[:x0] < -600).sum() > 20 and (row[x1:] < -600).sum() > 20, "box not between the lungs"
    assert (hu[zc, y1:, xc - 10:xc + 10] > 200).sum() > 50, "no spine behind the box"
    # the box reaches the front of the chest (the heart touches it here) but bone stays out of the mask: the
    # sternum and costal cartilage in the box's front half are not in it, nor is any large >= 130 HU component
    front = (slice(z0, z1), slice(y0, yc), slice(x0, x1))
    bone_front = hu[front] > 300
    assert bone_front.sum() > 1000, "expected the sternum inside the box"
    assert (bone_front & region.mask[front]).sum() == 0
    assert _largest_dense_component_in_mask_ml(hu, region, sp) < 2.0
    assert region.qc["confidence"] >= 0.5


def test_real_chest_ct_above_the_heart_has_no_heart(philips):
    vol, _ = philips
    first = 85  # from above the carina to the lung apices
    origin = np.asarray(vol.origin) + np.asarray(vol.direction)[:, 2] * vol.spacing_zyx[0] * first
    with pytest.raises(HeartNotFound) as err:
        find_heart_region(vol.hu[first:], vol.spacing_zyx, tuple(origin), vol.direction)
    assert err.value.reason == NOT_IN_FIELD_OF_VIEW


def test_tiny_thorax_gives_a_box_or_a_clean_exclusion(real_data):
    vol = _series(real_data, "chest_ct_tiny_64/ct-64Dicom")
    try:
        region = find_heart_region(vol.hu, vol.spacing_zyx, vol.origin, vol.direction)
    except HeartNotFound as exc:
        assert exc.reason in (NOT_IN_FIELD_OF_VIEW, IMPLAUSIBLE) and exc.message
    else:
        _check_region_contract(region, vol.hu.shape, vol.spacing_zyx, vol.origin, vol.direction)


def test_abdomen_dicom_has_no_heart(real_data):
    vol = _series(real_data, "non_cardiac_and_contrast/example_ct_dicom")
    with pytest.raises(HeartNotFound) as err:
        find_heart_region(vol.hu, vol.spacing_zyx, vol.origin, vol.direction)
    assert err.value.reason == NOT_IN_FIELD_OF_VIEW
    assert "lung" in err.value.message


def test_abdomen_nifti_has_no_heart(real_data):
    hu, sp, origin, direction = _nifti_lps(real_data / "non_cardiac_and_contrast" / "example_ct.nii.gz")
    assert direction[0, 0] < 0  # this file's columns run towards the patient's right: orientation is exercised
    with pytest.raises(HeartNotFound) as err:
        find_heart_region(hu, sp, origin, direction)
    assert err.value.reason == NOT_IN_FIELD_OF_VIEW


# ------------------------------------------------------------------------------------------------------------------
# Inputs


def test_bad_inputs():
    with pytest.raises(ValueError):
        find_heart_region(np.zeros((64, 64)), (3.0, 1.0, 1.0), (0.0, 0.0, 0.0), np.eye(3))
    with pytest.raises(ValueError):
        find_heart_region(np.zeros((4, 8, 8)), (0.0, 1.0, 1.0), (0.0, 0.0, 0.0), np.eye(3))
    sagittal = np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    with pytest.raises(HeartNotFound) as err:
        find_heart_region(np.zeros((40, 64, 64), np.int16), (3.0, 1.0, 1.0), (0.0, 0.0, 0.0), sagittal)
    assert err.value.reason == NOT_AXIAL


@pytest.mark.parametrize("fill", [-1000, 0])
def test_featureless_volumes_have_no_heart(fill):
    with pytest.raises(HeartNotFound) as err:
        find_heart_region(np.full((30, 64, 64), fill, np.int16), (3.0, 2.0, 2.0), (0.0, 0.0, 0.0), np.eye(3))
    assert err.value.reason == NOT_IN_FIELD_OF_VIEW
    assert isinstance(err.value.message, str) and err.value.message


def test_reasons_are_registered_exclusion_reasons():
    from cacflow.discovery.reasons import REASONS

    assert {NOT_IN_FIELD_OF_VIEW, IMPLAUSIBLE, NOT_AXIAL} <= set(REASONS)


def test_heart_not_found_survives_pickling():
    import pickle

    exc = pickle.loads(pickle.dumps(HeartNotFound(NOT_IN_FIELD_OF_VIEW, "no lungs in the field of view")))
    assert isinstance(exc, HeartNotFound)
    assert (exc.reason, exc.message) == (NOT_IN_FIELD_OF_VIEW, "no lungs in the field of view")
