"""The broken-input corpus through discover + one shard: every case ends as expected, nothing crashes or leaks."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest

from cacflow import config as cfg
from cacflow.discovery.reasons import REASONS
from cacflow.io.zarr_store import read_volume
from cacflow.pipeline.aggregate import TABLES, aggregate_cohort, table_path
from cacflow.pipeline.discover import run_discover
from cacflow.pipeline.layout import CohortLayout
from cacflow.pipeline.score import run_score_shard
from cacflow.pipeline.shard import run_shard
from cacflow.synth.broken import FAKE_PATIENT_NAME, SELECTION_OVERRIDES, BrokenCase, generate_broken_corpus

SEED = 0


def _all_files(root: Path) -> set[Path]:
    return {Path(dp) / f for dp, _, fs in os.walk(root) for f in fs}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """Generate the corpus, then discover and process its single shard (synchronously)."""
    base = tmp_path_factory.mktemp("broken")
    corpus = base / "corpus"
    cases = generate_broken_corpus(corpus, seed=SEED)
    # Deep results folder: a '../../' taken relative to any output folder still lands inside ``base``.
    results = base / "deep" / "er" / "results"
    before = _all_files(base)
    config = cfg.validate({"cohorts": {"broken": {"root": str(corpus)}}, "selection": dict(SELECTION_OVERRIDES)})
    layout = CohortLayout(results, "broken")
    summary = run_discover(corpus, layout, config, workers=1)
    manifest = pd.read_parquet(layout.manifest)
    exclusions = pd.read_parquet(layout.discover_exclusions)
    shards = sorted(manifest["shard"].dropna().unique())
    status = pd.concat([run_shard(layout, s, corpus, cfg.grids(config), workers=1, scheduler="synchronous")
                        for s in shards], ignore_index=True)
    for s in shards:
        run_score_shard(layout, s, corpus, config, workers=1)
    aggregate_cohort(layout, results / "tables", shards, config)
    tables = {t: pd.read_parquet(table_path(results / "tables", t, "broken")) for t in TABLES}
    return {"base": base, "corpus": corpus, "results": results, "cases": cases, "layout": layout, "summary": summary,
            "manifest": manifest, "exclusions": exclusions, "status": status, "before": before, "tables": tables}


def _case_ids(cases: list[BrokenCase]) -> list[str]:
    return [c.name for c in cases]


def test_corpus_has_every_kind_of_case(run):
    names = set(_case_ids(run["cases"]))
    assert {"truncated_file", "non_dicom_file", "missing_slice", "duplicated_slices", "too_few_slices", "thick_5mm",
            "mr_series", "secondary_capture", "gantry_tilt", "missing_pixel_spacing", "rows_columns_mismatch",
            "interleaved_a", "interleaved_b", "empty_folder", "unicode_path", "description_traversal"} <= names
    good = [c for c in run["cases"] if c.name.startswith("good_")]
    assert len(good) >= 2
    for c in run["cases"]:
        assert c.expected[0] in ("converted", "excluded", "absent"), c
        if c.expected[0] == "excluded":
            assert c.expected[1] in REASONS, c
            assert c.level in ("file", "series"), c
        assert (run["corpus"] / c.folder).is_dir(), c


def _row(frame: pd.DataFrame, uid: str) -> pd.Series | None:
    hits = frame[frame["series_uid"] == uid]
    assert len(hits) <= 1, f"series {uid} appears {len(hits)} times"
    return None if hits.empty else hits.iloc[0]


def _status(run, key: str) -> pd.Series | None:
    st = run["status"]
    if st.empty:
        return None
    hits = st[st["series_key"] == key]
    assert len(hits) <= 1
    return None if hits.empty else hits.iloc[0]


def _assert_converted(run, case: BrokenCase, uid: str, n_slices: int) -> None:
    row = _row(run["manifest"], uid)
    assert row is not None, f"{case.name}: series missing from the manifest"
    assert row["selected"], f"{case.name}: expected selected, got {row['reason']}: {row['message']}"
    st = _status(run, row["series_key"])
    assert st is not None, f"{case.name}: no shard status row"
    assert st["status"] == "done", f"{case.name}: {st['status']} {st['reason']}: {st['message']}"
    vol = read_volume(run["layout"].volume(row["series_key"], "native"))
    assert vol.hu.shape == (n_slices, 64, 64)
    assert vol.hu.dtype == np.int16
    assert np.allclose(vol.spacing_zyx, (2.5, 3.0, 3.0), atol=1e-6)
    assert np.allclose(vol.direction, np.eye(3))
    assert np.all(np.diff(vol.z_positions_mm) > 0)
    # Independent decode: pydicom pixel_array + rescale, sorted by z, must equal the stored volume.
    folder = run["corpus"] / case.folder
    slices = []
    for f in sorted(folder.iterdir()):
        try:
            ds = pydicom.dcmread(f)
        except Exception:
            continue
        if str(ds.get("SeriesInstanceUID")) != uid:
            continue
        hu = ds.pixel_array.astype(np.int32) * int(float(ds.RescaleSlope)) + int(float(ds.RescaleIntercept))
        slices.append((float(ds.ImagePositionPatient[2]), hu))
    slices.sort(key=lambda t: t[0])
    assert len(slices) == n_slices
    np.testing.assert_array_equal(vol.hu, np.stack([s for _, s in slices]))
    assert vol.origin[2] == pytest.approx(slices[0][0])
    # plausible thorax: air, lungs, soft tissue and bone all present
    assert vol.hu.min() >= -1024 and vol.hu.max() < 1000
    for lo, hi in ((-1024, -950), (-900, -800), (0, 80), (380, 520)):
        assert ((vol.hu >= lo) & (vol.hu <= hi)).any(), (lo, hi)
    assert run["layout"].volume(row["series_key"], "scoring").exists()


def _assert_series_excluded(run, case: BrokenCase, uid: str, reason: str | None) -> None:
    """Excluded with ``reason`` (any reason when None): in the manifest, or in the shard status rows."""
    row = _row(run["manifest"], uid)
    if row is None:
        raise AssertionError(f"{case.name}: series {uid} has no manifest row")
    if not row["selected"]:
        assert reason is None or row["reason"] == reason, f"{case.name}: {row['reason']}: {row['message']}"
        excl = run["exclusions"]
        hit = excl[(excl["level"] == "series") & (excl["series_key"] == row["series_key"])]
        assert len(hit) == 1 and hit.iloc[0]["reason"] == row["reason"]
        assert not run["layout"].volume(row["series_key"], "native").exists()
        return
    st = _status(run, row["series_key"])
    assert st is not None, f"{case.name}: selected but never processed"
    assert st["status"] == "excluded", f"{case.name}: expected an exclusion, got {st['status']}"
    assert st["reason"] in REASONS
    assert reason is None or st["reason"] == reason, f"{case.name}: {st['reason']}: {st['message']}"
    assert not run["layout"].volume(row["series_key"], "native").exists()


@pytest.mark.parametrize("name", [
    "good_unsigned_implicit", "good_signed_explicit", "interleaved_a", "interleaved_b", "unicode_path",
    "description_traversal", "uid_traversal", "missing_slice", "duplicated_slices", "too_few_slices", "thick_5mm",
    "mr_series", "secondary_capture", "gantry_tilt", "missing_pixel_spacing",
])
def test_series_level_cases(run, name):
    case = {c.name: c for c in run["cases"]}[name]
    if case.expected[0] == "converted":
        _assert_converted(run, case, case.series_uid, case.n_slices)
    else:
        assert case.level == "series"
        _assert_series_excluded(run, case, case.series_uid, case.expected[1])


def test_non_dicom_files_are_file_exclusions_and_the_series_converts(run):
    case = {c.name: c for c in run["cases"]}["non_dicom_file"]
    excl = run["exclusions"]
    file_rows = excl[excl["level"] == "file"]
    # paths are not an allowed output field by default: file exclusions carry a pseudonymous file key
    from cacflow.privacy import file_key
    for f in case.files:
        hit = file_rows[file_rows["file_key"] == file_key(f)]
        assert len(hit) == 1, f
        assert hit.iloc[0]["reason"] == "not_dicom"
    assert case.series_expected == ("converted", None)
    _assert_converted(run, case, case.series_uid, case.n_slices)


def test_truncated_file(run):
    """The cut file is reported as pixel_data_truncated (at discovery as a file exclusion, or when its series is
    converted); either way the series is not converted from an incomplete stack."""
    from cacflow.privacy import file_key
    case = {c.name: c for c in run["cases"]}["truncated_file"]
    excl = run["exclusions"]
    at_discovery = excl[(excl["level"] == "file") & (excl.get("file_key") == file_key(case.files[0]))]
    row = _row(run["manifest"], case.series_uid)
    assert row is not None
    if len(at_discovery):
        assert at_discovery.iloc[0]["reason"] == "pixel_data_truncated"
        _assert_series_excluded(run, case, case.series_uid, case.series_expected[1])
    else:
        st = _status(run, row["series_key"])
        assert st is not None and st["status"] == "excluded"
        assert st["reason"] == "pixel_data_truncated", st["message"]
    assert not run["layout"].volume(row["series_key"], "native").exists()


def test_header_larger_than_pixels_is_caught_at_discovery(run):
    from cacflow.privacy import file_key
    case = {c.name: c for c in run["cases"]}["rows_columns_mismatch"]
    excl = run["exclusions"]
    file_rows = excl[excl["level"] == "file"].set_index("file_key")
    for f in case.files:
        assert file_rows.loc[file_key(f), "reason"] == "pixel_data_truncated"
    assert _row(run["manifest"], case.series_uid) is None  # no usable file left, so no series row


def test_empty_folder_leaves_no_trace(run):
    case = {c.name: c for c in run["cases"]}["empty_folder"]
    assert not any((run["corpus"] / case.folder).iterdir())
    assert run["summary"]["series"] == len(run["manifest"])
    # every series in the manifest belongs to a case: nothing invented for the empty folder
    uids = {c.series_uid for c in run["cases"] if c.series_uid}
    assert set(run["manifest"]["series_uid"]) <= uids


def test_every_outcome_is_accounted_for(run):
    manifest, status = run["manifest"], run["status"]
    assert set(manifest["reason"]) <= set(REASONS) | {"selected"}
    assert set(run["exclusions"]["reason"]) <= set(REASONS)
    assert set(status["status"]) <= {"done", "excluded"}
    assert set(status["series_key"]) == set(manifest.loc[manifest["selected"], "series_key"])
    assert "conversion_failed" not in set(status["reason"].dropna()), status[["series_key", "message"]]
    n_converted = sum(c.expected[0] == "converted" or c.series_expected == ("converted", None) for c in run["cases"])
    assert int((status["status"] == "done").sum()) == n_converted


def test_exclusions_table_lists_every_bad_input_with_its_reason(run):
    """The cohort ``exclusions`` table (Foundation II) carries every case's reason; selected series all get a
    classic score row, scored or null with a status, never a silent 0."""
    from cacflow.privacy import file_key

    excl, scores = run["tables"]["exclusions"], run["tables"]["scores"]
    checked = 0
    for case in run["cases"]:
        if case.expected[0] != "excluded":
            continue
        if case.level == "file":
            for f in case.files:
                hit = excl[(excl["level"] == "file") & (excl["file_key"] == file_key(f))]
                assert list(hit["reason"]) == [case.expected[1]], (case.name, hit)
        else:
            key = _row(run["manifest"], case.series_uid)["series_key"]
            hit = excl[(excl["level"] == "series") & (excl["series_key"] == key)]
            assert case.expected[1] is None or case.expected[1] in set(hit["reason"]), (case.name, hit)
        checked += 1
    assert checked >= 10
    selected = set(run["manifest"].loc[run["manifest"]["selected"], "series_key"])
    classic = scores[scores["method"] == "classic_heart_region"]
    assert set(classic["series_key"]) == selected
    unscored = classic[classic["status"] != "scored"]
    assert unscored["agatston"].isna().all() and unscored["reason"].notna().all()
    assert set(excl["reason"].dropna()) <= set(REASONS)


def test_no_patient_name_in_any_output(run):
    needles = [FAKE_PATIENT_NAME.encode(), b"BROKENCORPUS", b"DONOTLEAK",
               FAKE_PATIENT_NAME.encode("utf-16-le")]
    files = _all_files(run["results"])
    assert files, "no outputs written"
    for f in files:
        data = f.read_bytes()
        for n in needles:
            assert n not in data, f"{n!r} found in {f}"
        assert b"BROKENCORPUS" not in str(f.relative_to(run["results"])).encode()


def test_nothing_written_outside_results(run):
    after = _all_files(run["base"])
    new = after - run["before"]
    outside = [p for p in new if run["results"] not in p.parents]
    assert not outside, f"files written outside the results folder: {outside}"
    # corpus untouched
    assert {p for p in after if run["corpus"] in p.parents} == {p for p in run["before"] if run["corpus"] in p.parents}
    for name in (f"escape-{SEED}", f"uid-escape-{SEED}"):
        for d in (run["base"], run["base"].parent, Path(tempfile.gettempdir()), Path("/")):
            assert not (d / name).exists(), d / name
        assert not any(name in str(p) for p in new), name


def test_generator_is_deterministic(tmp_path):
    a = generate_broken_corpus(tmp_path / "a", seed=3)
    b = generate_broken_corpus(tmp_path / "b", seed=3)
    assert a == b
    fa = sorted(p.relative_to(tmp_path / "a") for p in _all_files(tmp_path / "a"))
    fb = sorted(p.relative_to(tmp_path / "b") for p in _all_files(tmp_path / "b"))
    assert fa == fb
    for rel in fa:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel
    c = generate_broken_corpus(tmp_path / "c", seed=4)
    assert [x.series_uid for x in c] != [x.series_uid for x in a]
