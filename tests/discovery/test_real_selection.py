"""Inventory + selection over the whole real data folder (../shared/data/real, read-only): each known oddity ends
with its reason, and the one real chest CT is selected. Must run in CI: a missing folder fails, it does not skip."""

from __future__ import annotations

from pathlib import Path

import pytest

from cacflow.discovery.inventory import inventory
from cacflow.discovery.reasons import REASONS
from cacflow.discovery.selection import normalise_inventory, select_series

REAL = (Path(__file__).parents[2] / "../shared/data/real").resolve()


@pytest.fixture(scope="module")
def selection():
    if not (REAL / "chest_ct_philips_4dct_phase00").is_dir():
        pytest.fail(f"real test data not found at {REAL}; the tests expect the shared data folder "
                    "'../shared/data/real' next to the project root (see its README.md)", pytrace=False)
    inv = inventory(REAL, workers=1)
    manifest, file_excl = select_series(inv)
    norm = normalise_inventory(inv).set_index("path")
    return inv, norm, manifest.set_index("series_uid", drop=False), file_excl.set_index("path", drop=False)


def _outcome(selection, rel: str) -> tuple[str, str]:
    """("file", reason) for a file exclusion, else ("series", reason of the file's series)."""
    _, norm, manifest, file_excl = selection
    assert rel in norm.index, f"{rel} was not inventoried"
    if rel in file_excl.index:
        return "file", file_excl.loc[rel, "reason"]
    uid = norm.loc[rel, "series_uid"]
    assert uid in manifest.index, f"{rel}: series {uid} has no manifest row"
    return "series", manifest.loc[uid, "reason"]


def _files(folder: str, pattern: str = "*") -> list[str]:
    out = sorted(p.relative_to(REAL).as_posix() for p in (REAL / folder).glob(pattern) if p.is_file())
    assert out, f"no files match {folder}/{pattern}"
    return out


def test_every_file_and_series_has_a_known_outcome(selection):
    inv, _, manifest, file_excl = selection
    n_files = sum(1 for p in REAL.rglob("*") if p.is_file() and not any(part.startswith(".") for part in
                                                                         p.relative_to(REAL).parts))
    assert len(inv) == n_files
    assert set(manifest["reason"]) <= set(REASONS) | {"selected"}
    assert set(file_excl["reason"]) <= set(REASONS)
    assert manifest["message"].notna().all() and file_excl["message"].notna().all()


def test_only_the_philips_chest_ct_is_selected(selection):
    _, norm, manifest, _ = selection
    chosen = manifest[manifest["selected"]]
    assert len(chosen) == 1, chosen[["series_uid", "reason"]]
    row = chosen.iloc[0]
    assert row["n_slices"] == 141 and row["n_files"] == 141
    assert row["increment_mm"] == pytest.approx(2.0)  # positive, though SpacingBetweenSlices is -2
    for rel in _files("chest_ct_philips_4dct_phase00", "*.dcm"):
        assert _outcome(selection, rel) == ("series", "selected")


def test_gantry_tilted_ge_series(selection):
    for rel in _files("gantry_tilt_and_oddities/GE_HiSpeedDual_tilt18.5_varspacing", "*.dcm"):
        assert _outcome(selection, rel) == ("series", "gantry_tilt"), rel


def test_philips_localizer_and_exam_summary(selection):
    assert _outcome(selection, "gantry_tilt_and_oddities/Philips_Ingenuity_S21570/S1000/I10") == ("series", "localizer")
    for rel in _files("gantry_tilt_and_oddities/Philips_Ingenuity_S21570/S4010", "I*"):
        assert _outcome(selection, rel) == ("series", "dose_screen"), rel
    # the DIRFILEs next to them are not images of any series
    for s in ("S1000", "S4010"):
        level, reason = _outcome(selection, f"gantry_tilt_and_oddities/Philips_Ingenuity_S21570/{s}/DIRFILE")
        assert level == "file" and reason in REASONS


def test_ge_dose_report(selection):
    for f in ("GH178.dcm", "GH179A.dcm", "GH179B.dcm"):
        level, reason = _outcome(selection, f"conformance_ct/fodicom/{f}")
        assert level == "series" and reason in ("dose_screen", "secondary_capture"), (f, reason)


def test_mr_files_are_not_ct(selection):
    for rel in _files("conformance_ct/pydicom_data", "emri_small*.dcm"):
        assert _outcome(selection, rel) == ("series", "not_ct"), rel


def test_enhanced_ct_is_not_ct_image_storage(selection):
    assert _outcome(selection, "conformance_ct/pydicom_data/eCT_Supplemental.dcm") == ("series", "not_ct_image_storage")


def test_smartscore_16x16_field_of_view_too_small(selection):
    base = "conformance_ct/pydicom/dicomdirtests_GE_SmartScore_16x16/98892001"
    for rel in _files(f"{base}/CT5N"):
        assert _outcome(selection, rel) == ("series", "field_of_view_too_small"), rel
    for rel in _files(f"{base}/CT2N"):
        assert _outcome(selection, rel) == ("series", "localizer"), rel


def test_cardiac_two_slice_series_too_few_slices(selection):
    for rel in _files("cardiac_gated_slices", "osirix-toutatix-*.dcm"):
        assert _outcome(selection, rel) == ("series", "too_few_slices"), rel
    level, reason = _outcome(selection, "cardiac_gated_slices/osirix-goudurix.dcm")
    assert level == "series" and reason != "selected"


def test_totalsegmentator_dicom_without_series_uid_is_grouped_by_folder_and_excluded(selection):
    _, norm, manifest, _ = selection
    files = _files("non_cardiac_and_contrast/example_ct_dicom")
    assert len(files) == 20
    uids = {norm.loc[f, "series_uid"] for f in files}
    assert uids == {"folder:non_cardiac_and_contrast/example_ct_dicom"}
    row = manifest.loc["folder:non_cardiac_and_contrast/example_ct_dicom"]
    assert row["n_files"] == 20
    assert row["reason"] in ("too_few_slices", "contrast_enhanced")


def test_chest_ct_tiny_64_is_excluded_not_crashed(selection):
    for rel in _files("chest_ct_tiny_64/ct-64Dicom"):
        level, reason = _outcome(selection, rel)
        assert level == "series" and reason in ("slice_too_thick", "pixel_spacing_out_of_range"), reason


def test_non_dicom_files_are_file_level_not_dicom(selection):
    others = sorted(p.relative_to(REAL).as_posix() for p in REAL.rglob("*")
                    if p.is_file() and p.suffix.lower() in (".png", ".md", ".nrrd", ".gz"))
    assert any(r.endswith(".png") for r in others) and any(r.endswith(".md") for r in others)
    for rel in others:
        assert _outcome(selection, rel) == ("file", "not_dicom"), rel
