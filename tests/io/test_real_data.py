"""Real DICOM (../shared/data/real, read-only): conversion against SimpleITK, codec equality, odd files.

These tests must run in CI: a missing data folder is a failure, not a skip.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest
import SimpleITK as sitk

from cacflow import config as cfg
from cacflow.discovery.inventory import inventory
from cacflow.discovery.reasons import REASONS
from cacflow.discovery.selection import select_series
from cacflow.io.dicom import DicomReadError, read_slice
from cacflow.pipeline.convert import convert_series
from cacflow.pipeline.discover import run_discover
from cacflow.pipeline.layout import CohortLayout
from cacflow.pipeline.shard import run_shard

REAL = (Path(__file__).parents[2] / "../shared/data/real").resolve()
NEMA = "conformance_ct/nema_wg04_ct1_ct2"


@pytest.fixture(scope="module")
def real() -> Path:
    if not (REAL / "chest_ct_philips_4dct_phase00").is_dir() or not (REAL / "conformance_ct").is_dir():
        pytest.fail(f"real test data not found at {REAL}; the tests expect the shared data folder "
                    "'../shared/data/real' next to the project root (see its README.md)", pytrace=False)
    return REAL


def _sitk_series(folder: Path) -> tuple[sitk.Image, list[str]]:
    reader = sitk.ImageSeriesReader()
    ids = reader.GetGDCMSeriesIDs(str(folder))
    assert len(ids) == 1, ids
    names = list(reader.GetGDCMSeriesFileNames(str(folder), ids[0]))
    reader.SetFileNames(names)
    return reader.Execute(), names


def _compare_with_sitk(real: Path, folder: str, spacing_rtol: float):
    img, names = _sitk_series(real / folder)
    rel = sorted(Path(n).relative_to(real).as_posix() for n in names)
    # convert_series takes the files in any order: give it reverse name order to make the point
    vol = convert_series(real, rel[::-1])
    sx, sy, sz = img.GetSpacing()
    assert vol.spacing_zyx == pytest.approx((sz, sy, sx), rel=spacing_rtol)
    assert vol.origin == pytest.approx(img.GetOrigin(), abs=1e-4)
    # SimpleITK's direction is row-major with the axis directions as columns, as ours (columns x, y, z)
    np.testing.assert_allclose(vol.direction, np.asarray(img.GetDirection()).reshape(3, 3), atol=1e-6)
    ref = sitk.GetArrayFromImage(img)  # numpy order (z, y, x)
    assert vol.hu.shape == ref.shape
    np.testing.assert_array_equal(vol.hu, ref)
    assert np.all(np.diff(vol.z_positions_mm) > 0)
    return vol


def test_philips_4dct_matches_simpleitk_with_z_ascending(real):
    folder = "chest_ct_philips_4dct_phase00"
    first = pydicom.dcmread(real / folder / "00-slice000.dcm", stop_before_pixels=True)
    assert float(first.SpacingBetweenSlices) < 0  # the quirk under test
    vol = _compare_with_sitk(real, folder, spacing_rtol=1e-6)
    assert vol.hu.shape == (141, 512, 512)
    assert vol.spacing_zyx[0] == pytest.approx(2.0)
    assert np.allclose(np.diff(vol.z_positions_mm), 2.0)
    # origin is the most inferior slice (smallest z, LPS); the volume runs feet -> head
    zs = [float(pydicom.dcmread(p, stop_before_pixels=True).ImagePositionPatient[2])
          for p in sorted((real / folder).glob("*.dcm"))]
    assert vol.origin[2] == pytest.approx(min(zs))
    assert vol.hu.min() >= -1024 and vol.hu.max() > 1000  # bone present, 12-bit unsigned + intercept -1024


def test_tiny_chest_converts_and_matches_simpleitk(real):
    vol = _compare_with_sitk(real, "chest_ct_tiny_64/ct-64Dicom", spacing_rtol=1e-3)
    assert vol.hu.shape == (79, 64, 64)
    assert vol.spacing_zyx[1:] == pytest.approx((4.171872, 4.171872))
    assert -1024 <= vol.hu.min() < -900 and vol.hu.max() > 500


@pytest.mark.parametrize("ct", ["CT1", "CT2"])
@pytest.mark.parametrize("enc", ["JPLL", "JLSL", "J2KR"])
def test_nema_lossless_decodes_exactly(real, ct, enc):
    ref = read_slice(real / NEMA / f"{ct}_UNC")
    got = read_slice(real / NEMA / f"{ct}_{enc}")
    assert got.hu.shape == ref.hu.shape == (512, 512)
    np.testing.assert_array_equal(got.hu, ref.hu)
    assert got.ipp == ref.ipp and got.iop == ref.iop and got.pixel_spacing == ref.pixel_spacing


@pytest.mark.parametrize("ct", ["CT1", "CT2"])
def test_nema_lossy_encodings(real, ct):
    ref_ds = pydicom.dcmread(real / NEMA / f"{ct}_UNC")
    ref = read_slice(real / NEMA / f"{ct}_UNC")
    padding = ref_ds.get("PixelPaddingValue")
    not_padding = np.ones(ref.hu.shape, bool) if padding is None else ref_ds.pixel_array != int(padding)
    # JPEG-LS near-lossless: every stored value within 4 of the original ...
    jlsn_ds = pydicom.dcmread(real / NEMA / f"{ct}_JLSN")
    assert np.abs(jlsn_ds.pixel_array.astype(int) - ref_ds.pixel_array).max() <= 4
    # ... and so is every HU value outside the padding region (CT1 pads with -2000; near-lossless coding moves
    # padding pixels off the exact PixelPaddingValue, so they are no longer recognised as padding).
    jlsn = read_slice(real / NEMA / f"{ct}_JLSN")
    assert np.abs(jlsn.hu.astype(int) - ref.hu)[not_padding].max() <= 4
    # JPEG 2000 lossy is not identical (documented: a few hundred HU at worst)
    j2ki = read_slice(real / NEMA / f"{ct}_J2KI")
    diff = np.abs(j2ki.hu.astype(int) - ref.hu)[not_padding]
    assert diff.max() > 0
    assert diff.max() < 1000


# ----------------------------------------------------------------------------------------------------------------
# conformance_ct: every file ends as a reason or a decodable image; nothing crashes.

@pytest.fixture(scope="module")
def conformance(real):
    root = real / "conformance_ct"
    inv = inventory(root, workers=1)
    manifest, file_excl = select_series(inv)
    return root, inv, manifest, file_excl


def test_conformance_every_file_has_an_outcome(conformance):
    root, inv, manifest, file_excl = conformance
    files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    assert sorted(inv["path"]) == files
    assert set(file_excl["reason"]) <= set(REASONS)
    assert manifest["reason"].notna().all()
    assert set(manifest["reason"]) <= set(REASONS) | {"selected"}
    excluded_files = dict(zip(file_excl["path"], file_excl["reason"]))
    from cacflow.discovery.selection import normalise_inventory
    norm = normalise_inventory(inv)
    series_reason = dict(zip(manifest["series_uid"], manifest["reason"]))
    for rel in files:
        if rel in excluded_files:
            continue
        uid = norm.loc[norm["path"] == rel, "series_uid"].iloc[0]
        reason = series_reason.get(uid)
        assert reason is not None, f"{rel}: neither a file exclusion nor a series row"
        if reason == "selected":
            read_slice(root / rel, label=rel)  # a selected file must decode


def test_conformance_read_slice_raises_only_reasoned_errors(conformance):
    """read_slice on any DICOM-looking file either decodes or raises DicomReadError with a known reason."""
    root, inv, _, _ = conformance
    decoded = 0
    for rel in inv.loc[inv["error"].isna(), "path"]:
        try:
            s = read_slice(root / rel, label=rel)
        except DicomReadError as exc:
            assert exc.reason in REASONS, (rel, exc.reason)
            assert rel in str(exc)
            continue
        assert s.hu.dtype == np.int16 and s.hu.ndim == 2
        decoded += 1
    assert decoded >= 30


def test_conformance_known_file_outcomes(conformance):
    _, inv, manifest, file_excl = conformance
    from cacflow.discovery.selection import normalise_inventory
    norm = normalise_inventory(inv).set_index("path")
    by_uid = manifest.set_index("series_uid")

    def reason(rel):
        row = file_excl[file_excl["path"] == rel]
        if len(row):
            return "file", row.iloc[0]["reason"]
        return "series", by_uid.loc[norm.loc[rel, "series_uid"], "reason"]

    assert reason("nema_wg04_ct1_ct2/preview_CT1_CT2.png") == ("file", "not_dicom")
    assert reason("PROVENANCE.md") == ("file", "not_dicom")
    assert reason("pydicom_data/eCT_Supplemental.dcm") == ("series", "not_ct_image_storage")
    for f in ("GH178.dcm", "GH179A.dcm", "GH179B.dcm"):
        assert reason(f"fodicom/{f}")[1] in ("dose_screen", "secondary_capture")
    assert reason("fodicom/GH342.dcm") == ("series", "localizer")
    assert reason("fodicom/CT-MONO2-16-ankle") == ("series", "secondary_capture")
    assert not manifest["selected"].any()  # nothing in this folder is a usable chest series


def test_conformance_relaxed_pipeline_never_raises(conformance, tmp_path):
    """With every series-level rule relaxed, discover + run_shard process the odd files without raising; each
    scan ends done or excluded with a known reason."""
    root = conformance[0]
    config = cfg.validate({
        "cohorts": {"conf": {"root": str(root)}},
        "selection": {"min_slices": 1, "max_slice_thickness_mm": 100.0, "pixel_spacing_range_mm": [0.0, 100.0],
                      "min_field_of_view_mm": 0.0, "axial_tolerance_deg": 90.0, "tilt_tolerance_deg": 90.0,
                      "spacing_tolerance": 10.0, "exclude_contrast": False, "reconstructions": "all"},
    })
    layout = CohortLayout(tmp_path / "results", "conf")
    summary = run_discover(root, layout, config, workers=1)
    manifest = pd.read_parquet(layout.manifest)
    assert summary["selected"] == int(manifest["selected"].sum()) > 0
    frames = [run_shard(layout, s, root, cfg.grids(config), workers=1, scheduler="synchronous")
              for s in sorted(manifest["shard"].dropna().unique())]
    status = pd.concat(frames, ignore_index=True)
    assert set(status["series_key"]) == set(manifest.loc[manifest["selected"], "series_key"])
    assert set(status["status"]) <= {"done", "excluded"}
    assert set(status["reason"].dropna()) <= set(REASONS)
    assert (status["status"] == "done").sum() > 0
