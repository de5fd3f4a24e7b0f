"""A user-supplied heart region scores what no heart finder can: a QRM-like calcium phantom (a water body with
calcium inserts, no lungs) written as real DICOM goes through discover, preprocess, infer and score."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from cacflow import config as cfg
from cacflow.io.zarr_store import read_volume
from cacflow.pipeline.aggregate import aggregate_cohort, table_path
from cacflow.pipeline.discover import run_discover
from cacflow.pipeline.infer import run_infer_shard
from cacflow.pipeline.layout import CohortLayout
from cacflow.pipeline.score import run_score_shard
from cacflow.pipeline.shard import run_shard, shard_options
from cacflow.scoring.agatston import agatston_score

MODELS = Path(__file__).resolve().parents[2] / "models"
ROWS = COLS = 256
PIXEL_MM, SLICE_MM, N = 0.7, 1.5, 40
SERIES_UID = "1.2.826.0.1.3680043.8.498.777"
#: inserts (HU, centre x, y in mm) in the phantom's "heart" at z 20-35 mm: cylinders 5 mm across
INSERTS = ((200, -20.0, 10.0), (400, 0.0, 10.0), (800, 20.0, 10.0))


def _phantom() -> np.ndarray:
    """(z, y, x) HU: an elliptical water body (0 HU) in air, calcium inserts inside; slice k at z = 1.5 k mm."""
    y, x = np.mgrid[0:ROWS, 0:COLS]
    xmm, ymm = (x - (COLS - 1) / 2) * PIXEL_MM, (y - (ROWS - 1) / 2) * PIXEL_MM
    hu = np.full((N, ROWS, COLS), -1000, dtype=np.int16)
    hu[:, (xmm / 80) ** 2 + (ymm / 60) ** 2 <= 1] = 0
    for k in range(N):
        if 20 <= k * SLICE_MM <= 35:
            for value, cx, cy in INSERTS:
                hu[k][(xmm - cx) ** 2 + (ymm - cy) ** 2 <= 2.5 ** 2] = value
    return hu


def _write_dicom(root) -> None:
    hu = _phantom()
    folder = root / "QRM01" / "study1" / "series1"
    folder.mkdir(parents=True)
    x0 = -(COLS - 1) / 2 * PIXEL_MM
    for k in range(N):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
        meta.MediaStorageSOPInstanceUID = generate_uid(entropy_srcs=[SERIES_UID, str(k)])
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
        ds.Modality, ds.Manufacturer, ds.KVP, ds.ConvolutionKernel = "CT", "PHANTOM", "120", "B30f"
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.PatientID, ds.PatientPosition = "QRM01", "HFS"
        ds.StudyInstanceUID = "1.2.826.0.1.3680043.8.498.776"
        ds.SeriesInstanceUID, ds.FrameOfReferenceUID = SERIES_UID, "1.2.826.0.1.3680043.8.498.775"
        ds.StudyDate, ds.SeriesNumber, ds.InstanceNumber = "20200101", 1, k + 1
        ds.SliceThickness = str(SLICE_MM)
        ds.ImagePositionPatient = [f"{x0:.4f}", f"{x0:.4f}", f"{k * SLICE_MM:.4f}"]
        ds.ImageOrientationPatient = ["1", "0", "0", "0", "1", "0"]
        ds.PixelSpacing = [str(PIXEL_MM), str(PIXEL_MM)]
        ds.Rows, ds.Columns, ds.SamplesPerPixel, ds.PhotometricInterpretation = ROWS, COLS, 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleIntercept, ds.RescaleSlope = "0", "1"
        ds.PixelData = hu[k].astype("<i2").tobytes()
        ds.save_as(folder / f"{k:03d}.dcm", enforce_file_format=True)


def _run(tmp, root, regions) -> dict:
    config = cfg.validate({"cohorts": {"qrm": {"root": str(root), "heart_regions": regions}},
                           "inference": {"device": "cpu"},
                           "models": {"localizer": str(MODELS / "localizer"), "regressor": str(MODELS / "regressor")}})
    layout = CohortLayout(tmp / "results", "qrm")
    cohort = cfg.cohort_config(config, "qrm")
    run_discover(root, layout, cohort)
    shards = json.loads(layout.shard_index.read_text())["shards"]
    for s in shards:
        run_shard(layout, s, root, **shard_options(config))
        run_infer_shard(layout, s, config, MODELS / "localizer", MODELS / "regressor")
        run_score_shard(layout, s, root, cohort)
    aggregate_cohort(layout, tmp / "results" / "tables", shards, cohort)
    return {t: pd.read_parquet(table_path(tmp / "results" / "tables", t, "qrm")) for t in ("series", "scores")} | \
        {"layout": layout}


@pytest.fixture(scope="module")
def phantom_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("qrm") / "dicom"
    _write_dicom(root)
    return root


def test_without_a_region_the_phantom_is_refused(phantom_root, tmp_path):
    out = _run(tmp_path, phantom_root, None)
    classic = out["scores"].query("method == 'classic_heart_region'").iloc[0]
    assert classic["status"] == "excluded" and classic["reason"] == "heart_not_in_field_of_view"


@pytest.mark.parametrize("kind", ["box", "mask"])
def test_a_user_region_scores_the_phantom_inside_it(phantom_root, tmp_path, kind):
    table = tmp_path / "regions.csv"
    if kind == "box":  # the inserts' cylinder with 15 mm to spare, in LPS mm
        table.write_text("series_uid,min_x_mm,min_y_mm,min_z_mm,max_x_mm,max_y_mm,max_z_mm\n"
                         f"{SERIES_UID},-40,-10,5,40,30,50\n")
    else:  # the same box drawn as a mask in the series' own geometry (RAS affine, as NIfTI stores it)
        mask = np.zeros((COLS, ROWS, N), dtype=np.uint8)  # (x, y, z) voxel order
        x0 = -(COLS - 1) / 2 * PIXEL_MM
        xs = np.flatnonzero((x0 + np.arange(COLS) * PIXEL_MM >= -40) & (x0 + np.arange(COLS) * PIXEL_MM <= 40))
        ys = np.flatnonzero((x0 + np.arange(ROWS) * PIXEL_MM >= -10) & (x0 + np.arange(ROWS) * PIXEL_MM <= 30))
        zs = np.flatnonzero((np.arange(N) * SLICE_MM >= 5) & (np.arange(N) * SLICE_MM <= 50))
        mask[np.ix_(xs, ys, zs)] = 1
        affine = np.diag([-PIXEL_MM, -PIXEL_MM, SLICE_MM, 1.0])  # LPS -> RAS flips x and y
        affine[:3, 3] = [-x0, -x0, 0.0]
        nib.save(nib.Nifti1Image(mask, affine), tmp_path / "qrm_heart.nii.gz")
        table.write_text(f"series_uid,mask\n{SERIES_UID},qrm_heart.nii.gz\n")
    out = _run(tmp_path, phantom_root, str(table))
    series = out["series"].iloc[0]
    assert series["heart_box_method"] == "user" and series["heart_region_method"] == "user"
    scores = out["scores"].set_index("method")
    assert scores.loc["classic_heart_region", "status"] == "scored"
    assert scores.loc["classic_heart_region", "region"] == "user"
    assert scores.loc["classic_heart_region", "n_lesions"] == len(INSERTS)  # the three inserts, nothing else
    assert scores.loc["regression", "status"] == "scored" and scores.loc["regression", "region"] == "user"
    # the classic score is the library's Agatston over the whole scoring-grid volume: only the inserts exceed 130 HU
    layout = out["layout"]
    volume = read_volume(layout.volume(series["series_key"], "scoring"))
    whole = agatston_score(volume.hu, volume.spacing_zyx).total
    assert scores.loc["classic_heart_region", "agatston"] == pytest.approx(whole, rel=1e-9) and whole > 0
