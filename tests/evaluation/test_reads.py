"""The human reads of the real chest CTs (reads/real_ct.json): the file loads, every scan exists in the shared real
data (../shared/data/real, read-only), every heart box lies inside its scan and is heart-sized, the CTA box is its
heart mask's box, and the box helpers give hand-computed values."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cacflow.evaluation.reads import (
    ReadsError,
    box_coverage_mm,
    box_iou_mm,
    load_reads,
    read_by_id,
    render_read,
    volume_extent_lps_mm,
)

REPO = Path(__file__).resolve().parents[2]
READS = REPO / "reads" / "real_ct.json"
IDS = {"lung2", "philips_4dct_phase00", "A0001_B", "A0001_L", "A0002_B40f", "A0002_B70f", "chest_cta"}


@pytest.fixture(scope="module")
def reads():
    return load_reads(READS)


@pytest.fixture(scope="module")
def shared(real_data: Path) -> Path:
    """The shared folder that the reads' sources are relative to (``data/real/...``)."""
    return real_data.parent.parent


def _sitk_image(path: Path, header_only: bool = True):
    import SimpleITK as sitk

    if path.is_dir():
        reader = sitk.ImageSeriesReader()
        reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(path)))
        return reader.Execute()
    if header_only:
        reader = sitk.ImageFileReader()
        reader.SetFileName(str(path))
        reader.ReadImageInformation()
        return reader
    return sitk.ReadImage(str(path))


def _edges(img) -> tuple[np.ndarray, np.ndarray]:
    """LPS extent (mm) of a SimpleITK image or reader at the outer voxel edges."""
    size = np.array(img.GetSize(), dtype=float)
    origin, spacing = np.array(img.GetOrigin()), np.array(img.GetSpacing())
    direction = np.array(img.GetDirection()).reshape(3, 3)
    corners = [np.array([i, j, k]) for i in (-0.5, size[0] - 0.5) for j in (-0.5, size[1] - 0.5)
               for k in (-0.5, size[2] - 0.5)]
    pts = np.array([origin + direction @ (c * spacing) for c in corners])
    return pts.min(0), pts.max(0)


def test_reads_file_loads_with_every_scan_and_a_small_picture(reads):
    assert {r.id for r in reads} == IDS
    doc = json.loads(READS.read_text())
    assert doc["version"] == 1 and "2026-12-07" in doc["reader"] and "LPS" in doc["conventions"]["coordinates"]
    for r in reads:
        assert r.method in ("visual", "label_map")
        picture = READS.parent / r.picture
        assert picture.is_file(), f"{r.id}: picture {picture} missing"
        assert picture.stat().st_size < 150_000, f"{r.id}: picture is {picture.stat().st_size} bytes"
        assert r.uncertainty_mm is not None and 0 < r.uncertainty_mm <= 10
    assert read_by_id(reads, "chest_cta").contrast is True
    assert not any(r.contrast for r in reads if r.id != "chest_cta")


def test_every_scan_exists_in_the_shared_data(reads, shared):
    for r in reads:
        src = shared / r.source
        assert r.source.startswith("data/real/"), r.source
        assert src.exists(), f"{r.id}: {src} is missing from the shared data"
        if src.is_dir():
            assert any(src.glob("*.dcm")), f"{r.id}: no DICOM files in {src}"
        if r.label_map is not None:
            assert (shared / r.label_map).is_file()


def test_each_box_lies_inside_its_scan(reads, shared):
    for r in reads:
        lo, hi = _edges(_sitk_image(shared / r.source))
        box_lo, box_hi = np.array(r.box_min_lps_mm), np.array(r.box_max_lps_mm)
        assert np.all(box_lo >= lo - 1e-3) and np.all(box_hi <= hi + 1e-3), \
            f"{r.id}: box {box_lo}..{box_hi} leaves the scan's extent {lo}..{hi}"


def test_each_box_is_heart_sized(reads):
    for r in reads:
        assert all(60.0 <= s <= 200.0 for s in r.size_mm), f"{r.id}: box sides {r.size_mm} mm"


def test_cta_box_is_the_heart_masks_box(reads, shared):
    import SimpleITK as sitk

    r = read_by_id(reads, "chest_cta")
    assert r.method == "label_map"
    mask = sitk.ReadImage(str(shared / r.label_map))
    arr = sitk.GetArrayFromImage(mask) > 0  # (z, y, x)
    hit = np.argwhere(arr)
    lo_idx, hi_idx = hit.min(0)[::-1], hit.max(0)[::-1]  # (x, y, z) indices
    spacing = np.array(mask.GetSpacing())
    lo = np.array(mask.TransformIndexToPhysicalPoint([int(v) for v in lo_idx])) - spacing / 2
    hi = np.array(mask.TransformIndexToPhysicalPoint([int(v) for v in hi_idx])) + spacing / 2
    assert np.all(np.abs(np.array(r.box_min_lps_mm) - lo) <= spacing)
    assert np.all(np.abs(np.array(r.box_max_lps_mm) - hi) <= spacing)
    # the CT shares the mask's grid
    ct = _sitk_image(shared / r.source)
    assert np.allclose(ct.GetOrigin(), mask.GetOrigin()) and np.allclose(ct.GetSpacing(), mask.GetSpacing())


def test_soft_and_sharp_reconstructions_share_one_box(reads):
    for soft, sharp in (("A0001_B", "A0001_L"), ("A0002_B40f", "A0002_B70f")):
        a, b = read_by_id(reads, soft), read_by_id(reads, sharp)
        assert a.patient == b.patient
        assert a.box == b.box
        assert box_iou_mm(a.box, b.box) == 1.0


def test_lung2_coronary_calcium_is_read_per_vessel_inside_the_heart(reads):
    r = read_by_id(reads, "lung2")
    coronary = [c for c in r.calcium if c.kind == "coronary"]
    assert {c.vessel for c in coronary} == {"LM", "LAD", "LCx", "RCA"}
    lo, hi = np.array(r.box_min_lps_mm), np.array(r.box_max_lps_mm)
    for c in coronary:
        assert np.all(np.array(c.center_lps_mm) >= lo) and np.all(np.array(c.center_lps_mm) <= hi), c
    assert any(c.kind == "aorta" and c.center_lps_mm[2] > hi[2] for c in r.calcium)  # arch plaque above the heart
    assert any(c.kind == "costal_cartilage" for c in r.calcium)


def test_box_helpers_on_hand_computed_cases():
    a = ((0.0, 0.0, 0.0), (10.0, 10.0, 10.0))
    assert box_iou_mm(a, a) == 1.0 and box_coverage_mm(a, a) == 1.0
    far = ((20.0, 0.0, 0.0), (30.0, 10.0, 10.0))
    touching = ((10.0, 0.0, 0.0), (20.0, 10.0, 10.0))
    for other in (far, touching):
        assert box_iou_mm(a, other) == 0.0 and box_coverage_mm(a, other) == 0.0
    shifted = ((5.0, 0.0, 0.0), (15.0, 10.0, 10.0))  # shares half of a: 500 of 1000 mm^3; union 1500
    assert box_iou_mm(a, shifted) == pytest.approx(1 / 3)
    assert box_coverage_mm(a, shifted) == pytest.approx(0.5)
    lower_half = ((0.0, 0.0, 0.0), (10.0, 10.0, 5.0))  # inside a
    assert box_iou_mm(a, lower_half) == pytest.approx(0.5)
    assert box_coverage_mm(a, lower_half) == pytest.approx(0.5)
    assert box_coverage_mm(lower_half, a) == pytest.approx(1.0)
    corner = ((5.0, 5.0, 5.0), (15.0, 15.0, 15.0))  # 125 shared, union 1875
    assert box_iou_mm(a, corner) == pytest.approx(125 / 1875)
    assert box_coverage_mm(a, corner) == pytest.approx(0.125)


def test_volume_extent_matches_simpleitk_edges(reads, shared):
    r = read_by_id(reads, "lung2")
    img = _sitk_image(shared / r.source)
    lo, hi = _edges(img)
    size = img.GetSize()
    spacing = img.GetSpacing()
    got = volume_extent_lps_mm((size[2], size[1], size[0]), (spacing[2], spacing[1], spacing[0]), img.GetOrigin(),
                               np.array(img.GetDirection()).reshape(3, 3))
    assert np.allclose(got[0], lo) and np.allclose(got[1], hi)


def _write(tmp_path: Path, doc: dict) -> Path:
    p = tmp_path / "reads.json"
    p.write_text(json.dumps(doc))
    return p


def test_load_reads_names_the_file_and_field_on_errors(tmp_path):
    doc = json.loads(READS.read_text())
    with pytest.raises(ReadsError, match=r"reads\.json: version"):
        load_reads(_write(tmp_path, {**doc, "version": 2}))
    bad = json.loads(READS.read_text())
    bad["scans"][0]["heart_box_lps_mm"]["max"] = [1, 2]
    with pytest.raises(ReadsError, match=r"reads\.json: scans\[lung2\]\.heart_box_lps_mm\.max"):
        load_reads(_write(tmp_path, bad))
    bad = json.loads(READS.read_text())
    bad["scans"][0]["calcium"][0]["kind"] = "plaque"
    with pytest.raises(ReadsError, match=r"scans\[lung2\]\.calcium\[0\]\.kind"):
        load_reads(_write(tmp_path, bad))
    bad = json.loads(READS.read_text())
    bad["scans"][1]["id"] = "lung2"
    with pytest.raises(ReadsError, match="duplicated id"):
        load_reads(_write(tmp_path, bad))
    with pytest.raises(ReadsError, match="not found"):
        load_reads(tmp_path / "absent.json")


def test_render_read_draws_a_small_picture(tmp_path, reads):
    from PIL import Image

    hu = np.full((40, 64, 64), -1000, dtype=np.int16)
    hu[10:30, 16:48, 16:48] = 40  # a soft-tissue block standing in for the heart
    r = read_by_id(reads, "lung2")
    # a 4 mm grid centred on lung2's box
    spacing = (4.0, 4.0, 4.0)
    origin = tuple(c - 4.0 * n / 2 for c, n in zip(r.center_lps_mm, (64, 64, 40)))
    out = render_read(hu, spacing, origin, np.eye(3), r, tmp_path / "x" / "pic.png")
    with Image.open(out) as img:
        assert img.size == (3 * 256, 256 + 30)
    assert out.stat().st_size < 150_000
