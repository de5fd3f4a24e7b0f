"""Volume files (NIfTI, NRRD, MetaImage) as series: a corpus of bad files generated here ends as reasoned per-scan
exclusions beside a good file that converts; sidecars and cohort defaults fill what a file lacks; keys derived from
paths keep file names out of the outputs; the HU and obliquity thresholds at their boundaries."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from cacflow import config as cfg
from cacflow.discovery.inventory import inventory
from cacflow.discovery.reasons import REASONS
from cacflow.discovery.selection import select_series
from cacflow.imaging.geometry import axis_obliquity_deg, lps_axis_order
from cacflow.imaging.hu import MAX_LOWEST_HU, lowest_is_hu
from cacflow.io.volume_file import (
    VolumeReadError,
    is_volume_file,
    read_volume_file,
    sidecar_path,
    volume_series_uid,
)
from cacflow.io.zarr_store import read_volume
from cacflow.pipeline.discover import run_discover
from cacflow.pipeline.layout import CohortLayout
from cacflow.pipeline.shard import run_shard, shard_options
from cacflow.privacy import file_key

SHAPE = (32, 192, 192)  # (z, y, x): 32 slices of 192 x 192 voxels of 0.8 mm: a 154 mm field of view
SPACING_XYZ = (0.8, 0.8, 2.0)


def _ct(shape=SHAPE, seed=0) -> np.ndarray:
    """A CT-like int16 HU array: air (-1000) around a water-like body (40 HU) with a few calcium-like voxels."""
    z, y, x = np.indices(shape)
    body = (y - shape[1] / 2) ** 2 + (x - shape[2] / 2) ** 2 < (0.4 * shape[1]) ** 2
    hu = np.where(body, 40, -1000).astype(np.int16)
    rng = np.random.default_rng(seed)
    hu += rng.integers(-20, 20, size=shape, dtype=np.int16)
    hu[shape[0] // 2, shape[1] // 2, shape[2] // 2] = 600
    return hu


def _image(arr: np.ndarray, spacing=SPACING_XYZ, origin=(-76.8, -76.8, -300.0), direction=None, vector=False):
    img = sitk.GetImageFromArray(arr, isVector=vector)
    img.SetSpacing(spacing[: img.GetDimension()])
    img.SetOrigin(origin[: img.GetDimension()])
    if direction is not None:
        img.SetDirection([float(v) for v in np.asarray(direction).ravel()])
    return img


def _write(img, path: Path, thickness: float | None = 2.0, compress: bool = False, **sidecar) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(img, str(path), compress)
    if thickness is not None:
        sidecar = {"SliceThickness": thickness, **sidecar}
    if sidecar:
        sidecar_path(path).write_text(json.dumps(sidecar))
    return path


def _rotation_x(deg: float) -> np.ndarray:
    a = np.radians(deg)
    return np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])


#: case file -> (stage, level, reason): where and how each file of the corpus ends
EXPECTED: dict[str, tuple[str, str, str]] = {
    "p01/good.nii.gz": ("preprocess", "series", "done"),
    "p02/truncated.nii.gz": ("preprocess", "series", "volume_file_unreadable"),
    "p03/truncated.nii": ("preprocess", "series", "volume_file_unreadable"),
    "p04/cut_header.nii": ("discover", "file", "volume_file_unreadable"),
    "p05/uint8.nii.gz": ("discover", "series", "volume_pixel_type"),
    "p06/rgb.mha": ("discover", "series", "volume_pixel_type"),
    "p07/slice2d.nii.gz": ("discover", "series", "volume_not_3d"),
    "p08/time4d.nii.gz": ("discover", "series", "volume_not_3d"),
    "p09/unrescaled.nrrd": ("preprocess", "series", "not_hu"),
    "p10/oblique.mha": ("discover", "series", "not_axial"),
    "p11/missing_raw.mhd": ("discover", "file", "volume_data_missing"),
    "p12/bad_sidecar.nii.gz": ("discover", "file", "sidecar_invalid"),
    "p13/no_thickness.nrrd": ("discover", "series", "slice_thickness_unknown"),
    "p14/sheared.mha": ("discover", "series", "gantry_tilt"),
    "p15/not_ct.nii.gz": ("discover", "series", "not_ct"),
    "p16/truncated_gzip.nrrd": ("preprocess", "series", "volume_file_unreadable"),
    "p17/truncated_zlib.mha": ("preprocess", "series", "volume_file_unreadable"),
    "p18/short_raw.mhd": ("preprocess", "series", "volume_file_unreadable"),
    "p19/good_zlib.mha": ("preprocess", "series", "done"),
    "p20/good_gzip.nrrd": ("preprocess", "series", "done"),
    "p21/good_raw.mhd": ("preprocess", "series", "done"),
}


def write_bad_corpus(root: Path) -> None:
    """Write :data:`EXPECTED`'s files under ``root`` (small: about 1 MB each)."""
    ct = _ct()
    _write(_image(ct), root / "p01/good.nii.gz")
    for name in ("p02/truncated.nii.gz", "p03/truncated.nii"):
        p = _write(_image(ct), root / name)
        blob = p.read_bytes()
        p.write_bytes(blob[: len(blob) // 2])
    p = _write(_image(ct), root / "p04/cut_header.nii")
    p.write_bytes(p.read_bytes()[:100])
    _write(_image(np.clip(ct + 1024, 0, 255).astype(np.uint8)), root / "p05/uint8.nii.gz")
    rgb = np.repeat(np.clip(ct + 1024, 0, 255).astype(np.uint8)[..., None], 3, axis=-1)
    _write(_image(rgb, vector=True), root / "p06/rgb.mha")
    _write(_image(ct[0]), root / "p07/slice2d.nii.gz")
    four = sitk.JoinSeries([_image(ct), _image(ct)])
    assert four.GetDimension() == 4
    _write(four, root / "p08/time4d.nii.gz")
    _write(_image((ct + 1024).astype(np.uint16)), root / "p09/unrescaled.nrrd")  # stored 0-4095, no offset
    _write(_image(ct, direction=_rotation_x(20.0)), root / "p10/oblique.mha")
    p = _write(_image(ct), root / "p11/missing_raw.mhd")
    raw = [f for f in p.parent.iterdir() if f.suffix == ".raw"]
    assert len(raw) == 1
    raw[0].unlink()
    p = _write(_image(ct), root / "p12/bad_sidecar.nii.gz")
    sidecar_path(p).write_text(json.dumps({"SliceThickness": 2.0, "KVP": "high"}))
    _write(_image(ct), root / "p13/no_thickness.nrrd", thickness=None)
    shear = np.eye(3)
    shear[:, 2] = [0.0, np.sin(np.radians(10)), np.cos(np.radians(10))]  # slice axis 10 deg off the plane normal
    _write(_image(ct, direction=shear), root / "p14/sheared.mha")
    _write(_image(ct), root / "p15/not_ct.nii.gz", Modality="MR")
    for name in ("p16/truncated_gzip.nrrd", "p17/truncated_zlib.mha"):
        p = _write(_image(ct), root / name, compress=True)
        blob = p.read_bytes()
        p.write_bytes(blob[: len(blob) - 2000])
    p = _write(_image(ct), root / "p18/short_raw.mhd")
    raw = p.with_suffix(".raw")
    raw.write_bytes(raw.read_bytes()[:-1])  # one byte short
    _write(_image(ct), root / "p19/good_zlib.mha", compress=True)
    _write(_image(ct), root / "p20/good_gzip.nrrd", compress=True)
    _write(_image(ct), root / "p21/good_raw.mhd")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    base = tmp_path_factory.mktemp("bad_volumes")
    root = base / "root"
    write_bad_corpus(root)
    config = cfg.validate({"cohorts": {"v": {"root": str(root), "volumes": {}}}})
    cohort = cfg.cohort_config(config, "v")
    layout = CohortLayout(base / "results", "v")
    summary = run_discover(root, layout, cohort)
    shards = json.loads(layout.shard_index.read_text())["shards"]
    status = pd.concat([run_shard(layout, s, root, workers=1, **dict(shard_options(cohort), scheduler="synchronous"))
                        for s in shards], ignore_index=True)
    return {"root": root, "layout": layout, "summary": summary, "status": status,
            "manifest": pd.read_parquet(layout.manifest), "exclusions": pd.read_parquet(layout.discover_exclusions)}


def test_each_bad_volume_ends_as_its_reasoned_exclusion(corpus):
    manifest = corpus["manifest"].set_index("series_key")
    excl = corpus["exclusions"]
    status = corpus["status"].set_index("series_key")
    for rel, (stage, level, reason) in EXPECTED.items():
        key = volume_series_uid(rel)
        if stage == "discover" and level == "file":
            rows = excl[(excl["level"] == "file") & (excl["file_key"] == file_key(rel))]
            assert list(rows["reason"]) == [reason], (rel, rows)
            assert key not in manifest.index
        elif stage == "discover":
            assert manifest.loc[key, "reason"] == reason, (rel, manifest.loc[key, "message"])
            assert not manifest.loc[key, "selected"]
            assert key in set(excl.loc[excl["level"] == "series", "series_key"])
        else:
            assert manifest.loc[key, "selected"], (rel, manifest.loc[key, "message"])
            row = status.loc[key]
            if reason == "done":
                assert row["status"] == "done"
            else:
                assert (row["status"], row["reason"]) == ("excluded", reason), (rel, row["message"])
                assert "f" in row["message"] and rel not in row["message"]  # named by file key, not path
    assert set(excl["reason"]) <= set(REASONS) and set(status["reason"].dropna()) <= set(REASONS)
    assert (excl["message"].str.len() > 20).all()


@pytest.mark.parametrize("rel", [r for r, e in EXPECTED.items() if e[2] == "done"])
def test_the_good_volumes_are_converted_beside_the_bad_ones(corpus, rel):
    vol = read_volume(corpus["layout"].volume(volume_series_uid(rel), "native"))
    img = sitk.ReadImage(str(corpus["root"] / rel))
    assert np.array_equal(vol.hu, sitk.GetArrayFromImage(img))
    assert np.array_equal(vol.hu, _ct())
    assert vol.spacing_zyx == pytest.approx(tuple(reversed(img.GetSpacing())))
    assert vol.origin == pytest.approx(img.GetOrigin())
    assert vol.z_positions_mm == pytest.approx(-300.0 + 2.0 * np.arange(SHAPE[0]))


def test_companion_files_are_not_inventoried(corpus):
    # the sidecars, beside their files, are not inventoried as files of their own
    assert corpus["summary"]["files"] == len(EXPECTED)  # one row per volume file (missing_raw.mhd included)
    assert not set(corpus["exclusions"]["reason"]) & {"not_dicom"}


def test_sidecar_values_win_over_cohort_defaults_and_the_rest_stays_unknown(tmp_path):
    ct = _ct()
    _write(_image(ct), tmp_path / "a/scan.nii.gz", KVP=100, ConvolutionKernel="B70f",
           AcquisitionDateTime="2019-03-02T10:11:12")
    _write(_image(ct), tmp_path / "b/scan.nrrd", thickness=None)
    inv = inventory(tmp_path, volumes={"defaults": {"KVP": 120, "Manufacturer": "SIEMENS", "SliceThickness": 1.0}})
    manifest, _ = select_series(inv)
    a = manifest.set_index("series_uid").loc[volume_series_uid("a/scan.nii.gz")]
    b = manifest.set_index("series_uid").loc[volume_series_uid("b/scan.nrrd")]
    assert (a["kvp"], a["kernel"], a["kernel_class"], a["manufacturer"]) == (100.0, "B70f", "sharp", "SIEMENS")
    assert (a["slice_thickness_mm"], a["study_date"], a["study_year"]) == (2.0, "20190302", 2019)
    assert a["unknown_fields"] == "participant"
    assert (b["kvp"], b["slice_thickness_mm"], b["kernel_class"]) == (120.0, 1.0, "unknown")
    assert b["unknown_fields"] == "kernel,study_date,participant"
    assert a["reason"] == b["reason"] == "selected"
    # each file is its own series and study; the participant is a hash of the top folder, never its name
    assert a["study_uid"] != b["study_uid"] and a["patient_id"] != b["patient_id"]
    assert a["patient_id"].startswith("v") and "a" != a["patient_id"]


def test_without_a_volumes_section_volume_files_stay_non_dicom(tmp_path):
    _write(_image(_ct()), tmp_path / "a/scan.nii.gz")
    inv = inventory(tmp_path)
    assert set(inv["error"]) == {"not_dicom"} and len(inv) == 2  # the file and its sidecar, as before issue 41


def test_file_names_never_reach_outputs_unless_allowed(tmp_path):
    root = tmp_path / "root"
    _write(_image(_ct()), root / "Smith_John_1234/Smith_John_1234_chest.nii.gz")
    _write(_image(_ct()[:3]), root / "Smith_John_1234/Smith_John_1234_short.nrrd")  # an exclusion: 3 slices
    config = cfg.validate({"cohorts": {"v": {"root": str(root), "volumes": {}}}, "privacy": {"allowed_fields": []}})
    cohort = cfg.cohort_config(config, "v")
    layout = CohortLayout(tmp_path / "results", "v")
    run_discover(root, layout, cohort)
    for s in json.loads(layout.shard_index.read_text())["shards"]:
        run_shard(layout, s, root, workers=1, **dict(shard_options(cohort), scheduler="synchronous"))
    assert pd.read_parquet(layout.manifest)["selected"].sum() == 1
    # every output but the internal task tables, which hold the paths the preprocessing jobs open (as for DICOM)
    tasks = layout.shard_tasks("shard-0000")
    written = [p for p in layout.base.rglob("*") if p.is_file() and p != tasks]
    assert tasks.is_file() and len(written) > 3
    for p in written:
        assert b"Smith" not in p.read_bytes(), f"the file name leaked into {p}"
        assert "Smith" not in str(p)


def test_a_ras_ordered_nifti_is_reoriented_without_interpolation(tmp_path):
    ct = _ct()
    ras = np.diag([-1.0, -1.0, 1.0])  # NIfTI's usual RAS order: +x to patient right, +y anterior
    p = _write(_image(ct, origin=(76.8, 76.8, -300.0), direction=ras), tmp_path / "ras.nii.gz")
    vol = read_volume_file(p)
    assert np.allclose(vol.direction, np.eye(3))
    assert np.array_equal(vol.hu, ct[:, ::-1, ::-1])
    img = sitk.ReadImage(str(p))
    # the same voxel at the same place: index (x, y, z) of the file -> LPS -> index of the stored volume
    for idx in ((0, 0, 0), (5, 17, 3), (191, 100, 31)):
        lps = np.asarray(img.TransformIndexToPhysicalPoint(idx))
        xyz = np.rint((lps - np.asarray(vol.origin)) @ vol.direction / np.array([0.8, 0.8, 2.0])).astype(int)
        assert vol.hu[xyz[2], xyz[1], xyz[0]] == ct[idx[2], idx[1], idx[0]]


def test_hu_boundary_is_the_lowest_value(tmp_path):
    assert MAX_LOWEST_HU == -500.0
    assert lowest_is_hu(-500.0) and not lowest_is_hu(-499.9)
    ct = np.full(SHAPE, 40, dtype=np.int16)
    ct[0, 0, 0] = -500
    assert read_volume_file(_write(_image(ct), tmp_path / "at.nii.gz")).hu.min() == -500
    ct[0, 0, 0] = -499
    with pytest.raises(VolumeReadError) as err:
        read_volume_file(_write(_image(ct), tmp_path / "above.nii.gz"))
    assert err.value.reason == "not_hu" and "-499" in err.value.message


def test_obliquity_boundary_is_the_axial_tolerance(tmp_path):
    assert axis_obliquity_deg(_rotation_x(1.9)) == pytest.approx(1.9)
    assert axis_obliquity_deg(np.diag([-1.0, 1.0, -1.0])[[1, 0, 2]]) == pytest.approx(0.0)
    assert lps_axis_order(np.eye(3)[:, [2, 0, 1]]) == (1, 2, 0)
    assert lps_axis_order(_rotation_x(46.0)) == (0, 2, 1)  # y now nearest to S, z to P
    assert lps_axis_order(np.array([[1, 0, 0], [0, 0.6, 0.5], [0, 0.8, 0.866]])) is None  # y and z nearest to S
    expected = {1.9: "selected", 2.1: "not_axial"}  # default selection.axial_tolerance_deg = 2
    for deg in expected:
        _write(_image(_ct(), direction=_rotation_x(deg)), tmp_path / f"r{deg}/scan.mha")
    manifest, _ = select_series(inventory(tmp_path, volumes={}))
    by_uid = manifest.set_index("series_uid")["reason"]
    for deg, reason in expected.items():
        assert by_uid[volume_series_uid(f"r{deg}/scan.mha")] == reason, deg


def test_volume_suffixes():
    for name in ("a.nii", "a.NII.GZ", "a.nrrd", "a.nhdr", "a.mha", "a.mhd"):
        assert is_volume_file(name), name
    for name in ("a.dcm", "a.raw", "a.json", "IM0001", "a.gz"):
        assert not is_volume_file(name), name
    assert sidecar_path(Path("x/scan.nii.gz")) == Path("x/scan.json")


def test_volumes_config_is_validated():
    ok = cfg.validate({"cohorts": {"v": {"root": "/x", "volumes": {"defaults": {"KVP": 120, "Modality": "CT"}}}}})
    assert cfg.cohort_config(ok, "v")["volumes"] == {"defaults": {"KVP": 120, "Modality": "CT"}}
    assert cfg.cohort_config(cfg.validate({"cohorts": {"d": {"root": "/x"}}}), "d")["volumes"] is None
    for bad in ({"defaults": {"PatientID": "x"}}, {"defaults": {"KVP": "high"}}, {"formats": ["nifti"]}):
        with pytest.raises(ValueError, match="cohorts/v/volumes"):
            cfg.validate({"cohorts": {"v": {"root": "/x", "volumes": bad}}})
