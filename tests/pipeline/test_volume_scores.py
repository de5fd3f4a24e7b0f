"""A DICOM series and the same series written as NIfTI by SimpleITK score the same with every method: the NIfTI
cohort goes through the volume-file reader, the DICOM cohort through the DICOM reader, and everything after
conversion is shared."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest
import SimpleITK as sitk

from cacflow import config as cfg
from cacflow.io.zarr_store import read_volume
from cacflow.pipeline.aggregate import aggregate_cohort, table_path
from cacflow.pipeline.discover import run_discover
from cacflow.pipeline.infer import run_infer_shard
from cacflow.pipeline.layout import CohortLayout
from cacflow.pipeline.score import run_score_shard
from cacflow.pipeline.shard import run_shard, shard_options
from cacflow.synth.cohort import generate_participant

MODELS = Path(__file__).resolve().parents[2] / "models"
SEGMENTATION = ("unetpp", "unet", "levels", "lstm", "patch3d")
#: participant 4 of seed 3 (small): one axial Toshiba FC02 series, 12 lesions, reference Agatston about 2640
SEED, INDEX = 3, 4


def _run(name: str, root: Path, config: dict, base: Path) -> dict[str, pd.DataFrame]:
    cohort = cfg.cohort_config(config, name)
    layout = CohortLayout(base / "results", name)
    run_discover(root, layout, cohort)
    shards = json.loads(layout.shard_index.read_text())["shards"]
    seg = {k: Path(v) for k, v in cohort["models"]["segmentation"].items()}
    for s in shards:
        run_shard(layout, s, root, workers=1, **dict(shard_options(cohort), scheduler="synchronous"))
        run_infer_shard(layout, s, cohort, Path(cohort["models"]["localizer"]), Path(cohort["models"]["regressor"]),
                        seg)
        run_score_shard(layout, s, root, cohort)
    aggregate_cohort(layout, base / "results" / "tables", shards, cohort)
    tables = {t: pd.read_parquet(table_path(base / "results" / "tables", t, name)) for t in ("series", "scores")}
    return tables | {"layout": layout}


@pytest.fixture(scope="module")
def both(tmp_path_factory):
    base = tmp_path_factory.mktemp("dicom_vs_nifti")
    synth = base / "synth"
    (synth / "dicom").mkdir(parents=True)
    (synth / "truth").mkdir()
    info = generate_participant(synth, SEED, INDEX, True)["series"]
    axial = [s for s in info if s["kind"] == "axial"]
    assert len(axial) == 1 and axial[0]["n_lesions"] > 0
    series_dir = synth / "dicom" / axial[0]["series_dir"]
    # the NIfTI: SimpleITK reads the DICOM series and writes it; a sidecar carries what NIfTI has no field for
    files = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(series_dir))
    image = sitk.ReadImage(files)
    assert image.GetPixelID() in (sitk.sitkInt16, sitk.sitkInt32)  # HU after GDCM's rescale
    ds = pydicom.dcmread(files[0], stop_before_pixels=True)
    # cacflow's DICOM reader maps PixelPaddingValue (outside the reconstructed circle) to -1024 HU, SimpleITK keeps
    # its rescaled value: map it the same way, as a converter that honours the padding tag would
    hu = sitk.GetArrayFromImage(image)
    if "PixelPaddingValue" in ds:
        pad_hu = int(ds.PixelPaddingValue) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
        hu[hu == pad_hu] = -1024
    padded = sitk.GetImageFromArray(hu)
    padded.CopyInformation(image)
    volumes = base / "volumes" / "participant"
    volumes.mkdir(parents=True)
    sitk.WriteImage(padded, str(volumes / "scan.nii.gz"))
    (volumes / "scan.json").write_text(json.dumps({
        "Modality": ds.Modality, "Manufacturer": ds.Manufacturer, "KVP": float(ds.KVP),
        "ConvolutionKernel": str(ds.ConvolutionKernel), "SliceThickness": float(ds.SliceThickness),
        "StudyDate": ds.StudyDate, "PatientID": ds.PatientID}))
    models = {"localizer": str(MODELS / "localizer"), "regressor": str(MODELS / "regressor"),
              "segmentation": {m: str(MODELS / m) for m in SEGMENTATION}}
    config = cfg.validate({"cohorts": {"dicom": {"root": str(synth / "dicom")},
                                       "nifti": {"root": str(base / "volumes"), "volumes": {}}},
                           "inference": {"device": "cpu"}, "models": models})
    return {"dicom": _run("dicom", synth / "dicom", config, base), "nifti": _run("nifti", base / "volumes", config,
                                                                                 base)}


def test_the_nifti_volume_is_the_dicom_volume(both):
    d, n = both["dicom"], both["nifti"]
    keys = {k: t["series"].loc[t["series"]["selected"], "series_key"].tolist() for k, t in (("d", d), ("n", n))}
    assert len(keys["d"]) == 1 and len(keys["n"]) == 1
    vd = read_volume(d["layout"].volume(keys["d"][0], "native"))
    vn = read_volume(n["layout"].volume(keys["n"][0], "native"))
    assert np.array_equal(vd.hu, vn.hu)
    # NIfTI stores its grid in float32: equal to about 1e-5 mm
    assert np.allclose(vd.spacing_zyx, vn.spacing_zyx, atol=1e-5)
    assert np.allclose(vd.origin, vn.origin, atol=1e-4)
    assert np.allclose(vd.direction, vn.direction, atol=1e-6)
    assert np.allclose(vd.z_positions_mm, vn.z_positions_mm, atol=1e-4)
    nrow = n["series"].set_index("series_key").loc[keys["n"][0]]
    drow = d["series"].set_index("series_key").loc[keys["d"][0]]
    for col in ("kvp", "kernel", "kernel_class", "slice_thickness_mm", "n_slices", "rows", "columns"):
        assert nrow[col] == drow[col], col
    assert nrow["source_format"] == "nifti"


def test_every_method_gives_the_same_scores(both):
    cols = ["method", "status", "agatston", "volume_mm3", "mass_mg", "n_lesions", "five_class", "region"]
    d = both["dicom"]["scores"][cols].sort_values("method").reset_index(drop=True)
    n = both["nifti"]["scores"][cols].sort_values("method").reset_index(drop=True)
    methods = set(d["method"])
    assert {"classic_heart_region", "regression", *SEGMENTATION} <= methods, methods
    assert (d["status"] == "scored").all(), d
    assert d["agatston"].max() > 100  # calcium was found, so equality means something
    pd.testing.assert_frame_equal(d, n, check_exact=False, rtol=1e-6, atol=1e-6)
