"""The real NRRD and NIfTI chest CTs of ../shared/data/real (read-only) as a volume-file cohort: discovered, selected
with their sidecars, converted, and the stored volumes equal SimpleITK's own reading (values and geometry).

The files carry no slice thickness (their PROVENANCE: not recorded; only the spacing is known), so the sidecars
written here state it, as a user who knows the acquisition would; lung2's 5 mm slices need the cohort's
max_slice_thickness_mm raised. Must run in CI: a missing data folder fails, it does not skip."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from cacflow import config as cfg
from cacflow.discovery.inventory import inventory
from cacflow.discovery.selection import select_series
from cacflow.io.volume_file import volume_series_uid
from cacflow.io.zarr_store import read_volume
from cacflow.pipeline.discover import run_discover
from cacflow.pipeline.layout import CohortLayout
from cacflow.pipeline.shard import run_shard, shard_options

#: cohort path -> (shared file, sidecar)
FILES = {
    "lung2/lung2_image.nrrd": ("chest_ct_pyradiomics_nrrd/lung2_image.nrrd", {"SliceThickness": 5.0}),
    "cta/example_ct.nii.gz": ("chest_ct_contrast_with_labels/chest_cta/example_ct.nii.gz", {"SliceThickness": 1.5}),
}


def _root(real_data: Path, root: Path, extra: dict | None = None) -> Path:
    for rel, (shared, sidecar) in FILES.items():
        src = real_data / shared
        assert src.is_file(), f"{src} is missing from the shared data (see its README.md)"
        dst = root / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.symlink_to(src)
        name = dst.name.removesuffix(".gz").removesuffix(".nii").removesuffix(".nrrd")
        (dst.parent / f"{name}.json").write_text(json.dumps({**sidecar, **(extra or {}).get(rel, {})}))
    return root


@pytest.fixture(scope="module")
def converted(real_data, tmp_path_factory):
    base = tmp_path_factory.mktemp("real_volumes")
    root = _root(real_data, base / "root")
    config = cfg.validate({"cohorts": {"vol": {"root": str(root), "volumes": {},
                                               "selection": {"max_slice_thickness_mm": 5.0}}}})
    cohort = cfg.cohort_config(config, "vol")
    layout = CohortLayout(base / "results", "vol")
    run_discover(root, layout, cohort)
    shards = json.loads(layout.shard_index.read_text())["shards"]
    status = pd.concat([run_shard(layout, s, root, workers=1, **dict(shard_options(cohort), scheduler="synchronous"))
                        for s in shards], ignore_index=True)
    return {"real": real_data, "layout": layout, "status": status, "manifest": pd.read_parquet(layout.manifest)}


def test_both_real_volumes_are_selected_and_converted(converted):
    manifest = converted["manifest"].set_index("series_key")
    for rel in FILES:
        row = manifest.loc[volume_series_uid(rel)]
        assert row["selected"], row["message"]
        # nothing but the thickness was given: the rest is recorded as unknown, not guessed
        assert pd.isna(row["kvp"]) and row["kernel_class"] == "unknown"
        assert row["unknown_fields"] == "kvp,kernel,manufacturer,study_date,participant"
    assert set(converted["status"]["status"]) == {"done"}


@pytest.mark.parametrize("rel", sorted(FILES))
def test_stored_volume_equals_simpleitk_reading(converted, rel):
    img = sitk.ReadImage(str(converted["real"] / FILES[rel][0]))
    vol = read_volume(converted["layout"].volume(volume_series_uid(rel), "native"))
    arr = sitk.GetArrayFromImage(img)
    assert vol.hu.dtype == np.int16 and arr.dtype == np.int16
    assert np.array_equal(vol.hu, arr)
    assert vol.spacing_zyx == pytest.approx(tuple(reversed(img.GetSpacing())), abs=1e-9)
    assert vol.origin == pytest.approx(img.GetOrigin(), abs=1e-9)
    assert np.allclose(vol.direction, np.asarray(img.GetDirection()).reshape(3, 3), atol=1e-12)
    # every voxel where SimpleITK puts it: the stored geometry maps index (x, y, z) to the same LPS point
    for idx in ((0, 0, 0), (img.GetSize()[0] - 1, 7, img.GetSize()[2] - 1)):
        lps = vol.origin + vol.direction @ (np.asarray(idx) * np.asarray(img.GetSpacing()))
        assert lps == pytest.approx(img.TransformIndexToPhysicalPoint(idx), abs=1e-6)
    assert vol.z_positions_mm == pytest.approx(img.GetOrigin()[2] + img.GetSpacing()[2] * np.arange(arr.shape[0]))


def test_lung2_geometry_matches_its_provenance(converted):
    vol = read_volume(converted["layout"].volume(volume_series_uid("lung2/lung2_image.nrrd"), "native"))
    assert vol.hu.shape == (61, 512, 512)
    assert vol.origin == pytest.approx((-170.5, -324.5, -360.0))
    assert (int(vol.hu.min()), int(vol.hu.max())) == (-1024, 1671)


def test_a_sidecar_that_records_contrast_excludes_the_cta(real_data, tmp_path):
    root = _root(real_data, tmp_path / "root",
                 {"cta/example_ct.nii.gz": {"ContrastBolusAgent": "iodinated (arterial phase)"}})
    manifest, _ = select_series(inventory(root, volumes={}))
    reasons = manifest.set_index("series_uid")["reason"]
    assert reasons[volume_series_uid("cta/example_ct.nii.gz")] == "contrast_enhanced"
    assert reasons[volume_series_uid("lung2/lung2_image.nrrd")] == "slice_too_thick"  # 5 mm, default max 3 mm
