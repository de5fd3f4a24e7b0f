"""Tests of the synthetic cohort generator (small mode, n = 6)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest

from cacflow.synth.cohort import generate_cohort

N, SEED = 6, 20240611
TS_ALL = {
    "1.2.840.10008.1.2.1",  # explicit VR little endian
    "1.2.840.10008.1.2",  # implicit VR little endian
    "1.2.840.10008.1.2.5",  # RLE lossless
    "1.2.840.10008.1.2.4.80",  # JPEG-LS lossless
    "1.2.840.10008.1.2.4.90",  # JPEG 2000 lossless
}
STRATA = {"0", "1-10", "11-100", "101-400", ">400"}


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("cohort") / "out"
    summary = generate_cohort(out, N, SEED, small=True, workers=1)
    return out, summary


@pytest.fixture(scope="module")
def series(cohort: tuple[Path, dict]) -> pd.DataFrame:
    return pd.read_parquet(cohort[0] / "truth" / "series.parquet")


@pytest.fixture(scope="module")
def lesions(cohort: tuple[Path, dict]) -> pd.DataFrame:
    return pd.read_parquet(cohort[0] / "truth" / "lesions.parquet")


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _read_series(folder: Path) -> tuple[np.ndarray, list[pydicom.Dataset]]:
    """Independent minimal reader: sort along the normal, apply per-slice rescale and padding."""
    dss = [pydicom.dcmread(p) for p in folder.iterdir()]
    iop = np.asarray(dss[0].ImageOrientationPatient, dtype=float)
    normal = np.cross(iop[:3], iop[3:])
    dss.sort(key=lambda d: float(np.dot(np.asarray(d.ImagePositionPatient, dtype=float), normal)))
    out = []
    for d in dss:
        stored = d.pixel_array.astype(np.int32)
        hu = stored * float(d.RescaleSlope) + float(d.RescaleIntercept)
        if "PixelPaddingValue" in d:
            hu[stored == int(d.PixelPaddingValue)] = -1024
        out.append(hu)
    return np.stack(out), dss


def test_summary_and_layout(cohort: tuple[Path, dict], series: pd.DataFrame) -> None:
    out, summary = cohort
    assert summary["participants"] == N
    assert summary["series"] == len(series)
    assert sorted(p.name for p in out.iterdir()) == ["dicom", "truth"]
    assert not any("truth" in p.as_posix() or p.suffix in {".npz", ".parquet", ".json"}
                   for p in (out / "dicom").rglob("*") if p.is_file())
    assert series["patient_id"].nunique() == N
    for row in series.itertuples():
        folder = out / "dicom" / row.series_dir
        files = sorted(folder.iterdir())
        assert len(files) == row.n_slices
        assert all(len(f.stem) == 16 and int(f.stem, 16) >= 0 and f.suffix == ".dcm" for f in files)
        assert len(Path(row.series_dir).parts) == 3 and Path(row.series_dir).parts[0] == row.patient_id
        if row.kind == "axial":
            assert (out / "truth" / "volumes" / f"{row.series_uid}.npz").is_file()
    meta = json.loads((out / "truth" / "cohort.json").read_text())
    assert meta["seed"] == SEED and meta["n"] == N and meta["small"] is True
    assert len(meta["participants"]) == N


def test_same_seed_identical_bytes_any_workers(cohort: tuple[Path, dict], tmp_path: Path) -> None:
    out2 = tmp_path / "again"
    generate_cohort(out2, N, SEED, small=True, workers=2)
    a, b = _files(cohort[0]), _files(out2)
    assert a.keys() == b.keys()
    assert [k for k in a if a[k] != b[k]] == []


def test_transfer_syntaxes_decode_to_truth(cohort: tuple[Path, dict], series: pd.DataFrame) -> None:
    out = cohort[0]
    axial = series[series.kind == "axial"]
    assert set(axial.transfer_syntax) == TS_ALL
    for row in axial.itertuples():
        hu, dss = _read_series(out / "dicom" / row.series_dir)
        assert {str(d.file_meta.TransferSyntaxUID) for d in dss} == {row.transfer_syntax}
        truth = np.load(out / "truth" / "volumes" / f"{row.series_uid}.npz")
        np.testing.assert_array_equal(hu, truth["hu"].astype(np.int32), err_msg=row.series_dir)
        ipp = np.array([[float(v) for v in d.ImagePositionPatient] for d in dss])
        np.testing.assert_allclose(ipp, truth["ipp"], atol=1e-4)
        np.testing.assert_allclose(truth["origin"], truth["ipp"][0])
        direction = truth["direction"]
        np.testing.assert_allclose(direction[:, 0], truth["iop"][:3])
        np.testing.assert_allclose(direction[:, 2], np.cross(truth["iop"][:3], truth["iop"][3:]))
        assert np.all(np.diff(truth["ipp"] @ direction[:, 2]) > 0)
        np.testing.assert_allclose(truth["pixel_spacing"], [float(v) for v in dss[0].PixelSpacing])
        assert truth["hu"].dtype == np.int16 and truth["lesion_ids"].dtype == np.uint16
        assert truth["heart_mask"].dtype == bool and truth["distractor_mask"].dtype == np.uint8
        assert truth["vessel_lumen"].shape == truth["hu"].shape and set(np.unique(truth["vessel_lumen"])) <= {0, 1,
                                                                                                              2, 3, 4}


def test_strata_scouts_pairs(series: pd.DataFrame) -> None:
    axial = series[series.kind == "axial"]
    assert set(axial.ref_stratum) == STRATA
    scouts = series[series.kind == "scout"]
    assert len(scouts) >= 1 and set(scouts.n_slices) <= {1, 2}
    pairs = axial.groupby("acquisition_id")
    paired = [g for _, g in pairs if len(g) == 2]
    assert paired
    for g in paired:
        assert set(g.kernel_class) == {"soft", "sharp"}
        for col in ("thickness_mm", "increment_mm", "pixel_spacing_mm", "rows", "n_slices", "patient_position"):
            assert g[col].nunique() == 1
        assert g[g.kernel_class == "sharp"].noise_hu.iloc[0] > g[g.kernel_class == "soft"].noise_hu.iloc[0]


def test_dicom_tags_and_fake_identifiers(cohort: tuple[Path, dict], series: pd.DataFrame) -> None:
    out = cohort[0]
    for row in series.itertuples():
        ds = pydicom.dcmread(next((out / "dicom" / row.series_dir).iterdir()), stop_before_pixels=True)
        for kw in ("PatientName", "PatientBirthDate", "PatientAddress", "ReferringPhysicianName", "InstitutionName",
                   "InstitutionAddress", "OperatorsName", "AccessionNumber", "OtherPatientIDs"):
            assert str(ds.data_element(kw).value).strip(), kw
        assert "FAKE" in str(ds.PatientName).upper()
        assert ds.PatientID == row.patient_id and ds.SeriesInstanceUID == row.series_uid
        assert ds.Modality == "CT" and ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.2"
        if row.kind == "scout":
            assert list(ds.ImageType) == ["ORIGINAL", "PRIMARY", "LOCALIZER"]
            assert ds.SeriesDescription in {"SCOUT", "Topogram"}
            continue
        assert list(ds.ImageType) == ["ORIGINAL", "PRIMARY", "AXIAL"]
        assert ds.Manufacturer == row.manufacturer and ds.ConvolutionKernel == row.kernel
        assert float(ds.SliceThickness) == row.thickness_mm
        assert abs(float(ds.SpacingBetweenSlices)) == row.increment_mm
        assert float(ds.KVP) in (120.0, 140.0) and float(ds.GantryDetectorTilt) == 0
        assert ds.PatientPosition == row.patient_position and ds.BodyPartExamined == "CHEST"


def test_storage_variants_and_instance_order(cohort: tuple[Path, dict], series: pd.DataFrame) -> None:
    out = cohort[0]
    reps, bits, paddings, per_slice_rescale, shuffled, negative = set(), set(), set(), False, False, False
    for row in series[series.kind == "axial"].itertuples():
        dss = [pydicom.dcmread(p, stop_before_pixels=True) for p in (out / "dicom" / row.series_dir).iterdir()]
        reps.add(int(dss[0].PixelRepresentation))
        negative |= float(dss[0].SpacingBetweenSlices) < 0
        bits.add(int(dss[0].BitsStored))
        paddings.add(int(dss[0].PixelPaddingValue))
        if len({float(d.RescaleIntercept) for d in dss}) > 1:
            per_slice_rescale = True
        order = sorted(dss, key=lambda d: float(d.ImagePositionPatient[2]))
        inst = [int(d.InstanceNumber) for d in order]
        assert sorted(inst) == list(range(1, len(inst) + 1))
        if inst != sorted(inst) and inst != sorted(inst, reverse=True):
            shuffled = True
        assert row.storage == ("int16" if dss[0].PixelRepresentation == 1 else "uint16")
    assert reps == {0, 1} and {12, 16} <= bits and len(paddings) >= 3
    assert per_slice_rescale and shuffled and negative


def test_hu_ranges_and_lesions(cohort: tuple[Path, dict], series: pd.DataFrame, lesions: pd.DataFrame) -> None:
    out = cohort[0]
    assert lesions.peak_hu.between(150, 1200).all()
    assert lesions.diameter_mm.between(1, 6).all()
    assert set(lesions.vessel) <= {1, 2, 3, 4}
    axial = series[series.kind == "axial"]
    assert (axial.n_lesions <= 12).all() and (axial.n_lesions == 0).any()
    assert axial.noise_hu.between(15, 60).all()
    for row in axial.itertuples():
        t = np.load(out / "truth" / "volumes" / f"{row.series_uid}.npz")
        hu, ids = t["hu"], t["lesion_ids"]
        assert hu.min() >= -1024 and hu.max() <= 3071
        lung = ((hu > -950) & (hu < -700)).mean()
        assert lung > 0.03, "expected lung parenchyma below -500 HU"
        bone = hu[t["distractor_mask"] == 4]
        assert bone.size and np.percentile(bone, 90) > 300
        assert t["heart_mask"].any() and t["vessel_lumen"].any()
        present = sorted(int(i) for i in np.unique(ids) if i > 0)
        assert len(present) == row.n_lesions
        np.testing.assert_array_equal(t["vessel_calcium"] > 0, ids > 0)
        mine = lesions[lesions.series_uid == row.series_uid]
        assert sorted(mine.lesion_id) == present
        assert mine.ref_agatston.sum() == pytest.approx(row.ref_agatston, rel=1e-6, abs=1e-9)
        if present:
            # a plaque that contributes to the reference score reaches 130 HU inside its own mask; a faint one
            # (peak near 150 HU before blur and noise) may stay below it and then contributes nothing
            for les in mine.itertuples():
                if les.ref_agatston > 0:
                    assert hu[ids == les.lesion_id].max() >= 130
            assert (mine.ref_agatston > 0).any() == (row.ref_agatston > 0)
        else:
            assert row.ref_agatston == 0 and row.ref_stratum == "0"
