"""Scoring shards and cohort tables on a generated cohort: the reference method reproduces the generator's reference
exactly, tables have their documented types, load in DuckDB, and reruns touch only what changed."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from cacflow import config as cfg
from cacflow.pipeline.aggregate import TABLES, aggregate_cohort, table_path
from cacflow.pipeline.discover import run_discover
from cacflow.pipeline.layout import CohortLayout
from cacflow.pipeline.report import cohort_summary
from cacflow.pipeline.schemas import TYPES
from cacflow.pipeline.score import run_score_shard
from cacflow.pipeline.shard import run_shard, shard_options
from cacflow.scoring.strata import SCHEMES


@pytest.fixture(scope="module")
def scored(small_cohort, tmp_path_factory):
    base = tmp_path_factory.mktemp("scored")
    root = small_cohort / "dicom"
    config = cfg.validate({"cohorts": {"c": {"root": str(root)}}, "sharding": {"shard_size": 4}})
    layout = CohortLayout(base / "results", "c")
    run_discover(root, layout, config, workers=2)
    shards = json.loads(layout.shard_index.read_text())["shards"]
    for s in shards:
        run_shard(layout, s, root, workers=2, **shard_options(config))
        run_score_shard(layout, s, root, config, labels_dir=small_cohort / "truth" / "labels", workers=2)
    tables_root = base / "results" / "tables"
    aggregate_cohort(layout, tables_root, shards, config)
    tables = {t: pd.read_parquet(table_path(tables_root, t, "c")) for t in TABLES}
    return {"base": base, "root": root, "config": config, "layout": layout, "shards": shards, "tables": tables,
            "tables_root": tables_root, "truth": small_cohort / "truth"}


def test_reference_method_reproduces_generator_reference(scored):
    truth = pd.read_parquet(scored["truth"] / "series.parquet")
    scores = scored["tables"]["scores"]
    ref = scores[scores["method"] == "reference"].merge(truth, left_on="series_key", right_on="series_uid",
                                                        suffixes=("", "_truth"))
    selected = scored["tables"]["series"].query("selected")
    assert len(ref) == len(selected) >= 5
    assert (ref["status"] == "scored").all()
    for ours, theirs in [("agatston", "ref_agatston"), ("volume_mm3", "ref_volume_mm3"), ("mass_mg", "ref_mass_mg")]:
        np.testing.assert_allclose(ref[ours].astype(float), ref[theirs], rtol=1e-9, atol=1e-9)
    assert (ref["n_lesions"] == ref["ref_n_lesions"]).all()
    for scheme in ("five_class", "four_class", "cac_drs"):
        assert (ref[scheme] == ref[f"ref_{scheme}"]).all(), scheme
    assert ref["agatston"].gt(0).any() and ref["agatston"].eq(0).any()
    tv = pd.read_parquet(scored["truth"] / "vessels.parquet")
    vessels = scored["tables"]["vessels"]
    v = vessels[vessels["method"] == "reference"].merge(tv, left_on=["series_key", "vessel"],
                                                        right_on=["series_uid", "vessel"])
    assert len(v) == 4 * len(ref)
    np.testing.assert_allclose(v["agatston"], v["ref_agatston"], rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(v["mass_mg"], v["ref_mass_mg"], rtol=1e-9, atol=1e-9)
    # totals equal the sums over vessels and over lesions
    per_series = v.groupby("series_key")["agatston"].sum()
    lesions = scored["tables"]["lesions"]
    per_lesion = lesions[lesions["method"] == "reference"].groupby("series_key")["agatston"].sum()
    for r in ref.itertuples():
        assert per_series[r.series_key] == pytest.approx(r.agatston, abs=1e-9)
        assert per_lesion.get(r.series_key, 0.0) == pytest.approx(r.agatston, abs=1e-9)


def test_classic_rows_and_qc_pictures(scored):
    from PIL import Image

    scores, series = scored["tables"]["scores"], scored["tables"]["series"]
    classic = scores[scores["method"] == "classic_heart_region"]
    assert set(classic["series_key"]) == set(series.loc[series["selected"], "series_key"])
    ok = classic[classic["status"] == "scored"]
    assert len(ok) == len(classic)
    conv = json.loads(ok.iloc[0]["convention"])
    assert conv["threshold_hu"] == 130.0 and conv["min_area_mm2"] == 1.0 and conv["connectivity"] == 8
    sel = series[series["selected"]]
    assert (sel["heart_region_status"] == "found").all()
    assert (sel["heart_box_max_z_mm"] > sel["heart_box_min_z_mm"]).all()
    for rel in sel["qc_picture"]:
        img = Image.open(scored["base"] / "results" / rel)
        assert img.format == "PNG" and img.width >= 500


def test_tables_have_documented_types_and_provenance(scored):
    for name in ("scores", "vessels", "lesions"):
        frame = scored["tables"][name]
        for col, typ in TYPES[name].items():
            want = "category" if col in SCHEMES else typ  # strata: ordered categories in the public tables
            assert str(frame[col].dtype) == want, (name, col, frame[col].dtype)
    for name in TABLES:
        meta = pq.read_schema(table_path(scored["tables_root"], name, "c")).metadata[b"cacflow"]
        prov = json.loads(meta)
        assert prov["format"] == "cacflow.tables/1" and prov["cohort"] == "c" and prov["table"] == name
        assert prov["conventions"]["agatston"]["threshold_hu"] == 130.0
        assert prov["conventions"]["strata"]["cac_drs"]["closed"] == "left"


def test_duckdb_and_pandas_read_the_hive_partitions(scored):
    import duckdb

    root = scored["tables_root"]
    con = duckdb.connect()
    rows = con.execute(
        "SELECT cohort, five_class, count(*) AS n FROM read_parquet(?, hive_partitioning = true) "
        "WHERE method = 'reference' GROUP BY ALL ORDER BY ALL", [str(root / "scores" / "*" / "*.parquet")]).fetchall()
    assert {r[0] for r in rows} == {"c"}
    assert sum(r[2] for r in rows) == int((scored["tables"]["series"]["selected"]).sum())
    types = dict(con.execute("SELECT column_name, column_type FROM (DESCRIBE SELECT * FROM read_parquet(?, "
                             "hive_partitioning = true))", [str(root / "scores" / "*" / "*.parquet")]).fetchall())
    assert types["cohort"] == "VARCHAR" and types["agatston"] == "DOUBLE" and types["five_class_index"] == "TINYINT"
    frame = pd.read_parquet(root / "scores")
    assert set(frame["cohort"].astype(str)) == {"c"}


def test_summary_mentions_counts(scored):
    text = cohort_summary(scored["tables_root"], "c")
    assert "selected for scoring" in text and "classic_heart_region vs reference" in text
    assert "not_preferred_reconstruction" in text
    # series, not exclusion rows: a series excluded by several methods for one reason counts once
    excl = scored["tables"]["exclusions"]
    series_level = excl[excl["level"] == "series"]
    want = series_level["series_key"].nunique()
    assert f"  series excluded: {want};" in text
    for reason, n in series_level.drop_duplicates(["series_key", "reason"])["reason"].value_counts().items():
        assert f"{reason} {n}" in text


def test_score_rows_carry_the_tube_voltage_and_strata_sort_by_risk(scored):
    scores, series = scored["tables"]["scores"], scored["tables"]["series"]
    kvp = series.set_index("series_key")["kvp"]
    assert scores["kvp"].tolist() == [kvp[k] for k in scores["series_key"]]
    assert set(scores["kvp"].dropna()) >= {120.0, 140.0}  # the small cohort has both voltages
    assert scores.loc[scores["kvp"] == 120.0, "kvp_note"].isna().all()
    assert scores.loc[scores["kvp"] == 140.0, "kvp_note"].str.startswith("acquired at 140 kVp").all()
    # ordered categories, read back from Parquet as such
    five = scores["five_class"]
    assert isinstance(five.dtype, pd.CategoricalDtype) and five.dtype.ordered
    assert list(five.dtype.categories) == ["0", "1-10", "11-100", "101-400", ">400"]
    ranked = scores.dropna(subset=["agatston"]).sort_values("five_class")
    assert ranked["five_class_index"].is_monotonic_increasing


def test_summary_counts_a_series_once_per_reason(tmp_path):
    """Hand case: one series with three exclusion rows (three methods, one reason) and one with a discovery
    exclusion are two series, one per reason."""
    tables_root = tmp_path / "tables"
    rows = {"series": pd.DataFrame({"series_key": ["a", "b", "c"], "selected": [True, True, False]}),
            "scores": pd.DataFrame({"series_key": ["a"] * 3, "method": ["m1", "m2", "m3"],
                                    "status": ["excluded"] * 3, "reason": ["heart_not_in_field_of_view"] * 3,
                                    "agatston": [None] * 3, "five_class": [None] * 3}),
            "exclusions": pd.DataFrame({"series_key": ["a", "a", "a", "c"], "level": ["series"] * 4,
                                        "reason": ["heart_not_in_field_of_view"] * 3 + ["too_few_slices"]})}
    for name, frame in rows.items():
        path = table_path(tables_root, name, "h")
        path.parent.mkdir(parents=True)
        frame.to_parquet(path)
    text = cohort_summary(tables_root, "h")
    assert "  series excluded: 2; by reason (a series counts once per reason): " in text
    assert "heart_not_in_field_of_view 1" in text and "too_few_slices 1" in text


def test_rerun_reuses_scores_and_rewrites_only_this_cohort(scored, tmp_path):
    layout, root, config = scored["layout"], scored["root"], scored["config"]
    # another cohort's partition, which must keep its bytes and mtime
    other = table_path(scored["tables_root"], "scores", "other")
    other.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(table_path(scored["tables_root"], "scores", "c"), other)
    before = (other.read_bytes(), other.stat().st_mtime_ns)
    shard = scored["shards"][0]
    frames = run_score_shard(layout, shard, root, config, labels_dir=scored["truth"] / "labels", workers=1)
    log_states = pq.read_schema(layout.shard_scores(shard, "scores")).metadata[b"cacflow"]
    assert json.loads(log_states)["states"] == {"up_to_date": len(frames["regions"])}
    # a stricter convention rescores (and changes the numbers of the reference method)
    strict = cfg.validate({**config, "scoring": {"convention": {"threshold_hu": 300}}})
    rescored = run_score_shard(layout, shard, root, strict, labels_dir=scored["truth"] / "labels", workers=1)
    meta = json.loads(pq.read_schema(layout.shard_scores(shard, "scores")).metadata[b"cacflow"])
    assert meta["states"] == {"scored": len(frames["regions"])}
    a = frames["scores"].set_index(["series_key", "method"])["agatston"]
    b = rescored["scores"].set_index(["series_key", "method"])["agatston"]
    assert (b <= a + 1e-9).all() and (b < a).any()
    aggregate_cohort(layout, scored["tables_root"], scored["shards"], strict)
    assert (other.read_bytes(), other.stat().st_mtime_ns) == before
    assert not [p for p in scored["tables_root"].rglob(".*")]
    # restore the default convention for other tests of this module
    run_score_shard(layout, shard, root, config, labels_dir=scored["truth"] / "labels", workers=1)
    other.unlink()


def test_bad_label_map_is_an_exclusion_not_a_crash(scored, tmp_path):
    labels = tmp_path / "labels"
    shutil.copytree(scored["truth"] / "labels", labels)
    key = sorted(scored["tables"]["series"].query("selected")["series_key"])[0]
    victim = labels / f"{key}.nii.gz"
    victim.write_bytes(b"garbage")
    layout, root, config = scored["layout"], scored["root"], scored["config"]
    rows = pd.concat([run_score_shard(layout, s, root, config, labels_dir=labels, workers=1)["scores"]
                      for s in scored["shards"]])
    ref = rows[rows["method"] == "reference"]
    bad = ref[ref["status"] != "scored"]
    assert list(bad["series_key"]) == [key]
    assert list(bad["reason"]) == ["reference_unreadable"] and bad["agatston"].isna().all()
    assert (ref[ref["status"] == "scored"]["agatston"].notna()).all()
    for s in scored["shards"]:  # restore
        run_score_shard(layout, s, root, config, labels_dir=scored["truth"] / "labels", workers=1)


def test_a_scan_whose_blood_pool_measures_contrast_is_scored_by_no_method(scored, tmp_path):
    """The same scan with its heart's blood and myocardium raised by 420 HU (an arterial phase; no header says so),
    its heart box from the inference stage: every method, the reference labels too, is excluded with the
    blood-pool reading in the message and a QC picture; as it is, the scan is scored."""
    from dataclasses import replace

    from cacflow.imaging.contrast import CONTRAST_BLOOD_POOL_HU, blood_pool
    from cacflow.imaging.heart_region import find_heart_region
    from cacflow.io.zarr_store import read_volume, write_volume
    from cacflow.pipeline.box_columns import box_fields
    from cacflow.pipeline.score import CONTRAST_IMAGE, load_score_tasks, score_series

    layout, root, config = scored["layout"], scored["root"], scored["config"]
    task = next(t for t in load_score_tasks(layout, scored["shards"][0], root, config, scored["truth"] / "labels")
                if t.volume_fingerprint is not None and t.label_path)
    volume = read_volume(layout.volume(task.series_key, "scoring"))
    region = find_heart_region(volume.hu, volume.spacing_zyx, np.asarray(volume.origin), volume.direction)
    assert blood_pool(volume.hu, region.box_zyx).median_hu < 60  # unenhanced blood
    # the inference stage's box (as a localizer would give it); its regression row does not matter here
    inference = {"status": "excluded", "reason": "not_inferred", "message": "test", "heart_box_method": "localizer",
                 "segmentation": None, **box_fields(region.box_zyx, region.box_lps_mm)}
    hu = volume.hu.copy()
    hu[region.mask & (hu > 0) & (hu < 100)] += 420
    copy = CohortLayout(tmp_path / "results", "c")
    write_volume(copy.volume(task.series_key, "scoring"), replace(volume, hu=hu))
    shutil.copytree(layout.volume(task.series_key, "native"), copy.volume(task.series_key, "native"))
    out = score_series(replace(task, results=str(copy.results), qc_pictures=True, inference=inference))
    assert {r["method"] for r in out.scores} == {"classic_heart_region", "regression", "reference"}
    assert all(r["status"] == "excluded" and r["reason"] == CONTRAST_IMAGE and r["agatston"] is None
               for r in out.scores)
    assert {e["method"] for e in out.exclusions} == {"classic_heart_region", "regression", "reference"}
    assert f"limit {CONTRAST_BLOOD_POOL_HU:.0f} HU" in out.scores[0]["message"]
    assert out.region["heart_region_status"] == "contrast_enhanced"
    assert (copy.results / out.region["qc_picture"]).is_file()
    as_is = score_series(replace(task, qc_pictures=False))  # the original volume
    assert {r["status"] for r in as_is.scores} == {"scored"}


def test_calcium_inside_bone_is_recorded_and_not_counted(scored):
    """A method's region holding a dense block of 12 mL (bone by its size) beside the scan's calcium: the block is
    not counted and its lesions are written with guard 'bone'; the rest scores exactly as without the block."""
    from cacflow.imaging.bone import bone_mask
    from cacflow.imaging.heart_region import find_heart_region
    from cacflow.io.zarr_store import read_volume
    from cacflow.pipeline.score import BONE_GUARD, CLASSIC, SeriesScores, _guarded_score, load_score_tasks
    from cacflow.scoring.agatston import AgatstonConvention
    from cacflow.scoring.scan import score_scan

    layout, root, config = scored["layout"], scored["root"], scored["config"]
    task = next(t for t in load_score_tasks(layout, scored["shards"][0], root, config, None)
                if t.volume_fingerprint is not None)
    volume = read_volume(layout.volume(task.series_key, "scoring"))
    origin, direction = np.asarray(volume.origin), np.asarray(volume.direction)
    region = find_heart_region(volume.hu, volume.spacing_zyx, origin, direction).mask
    convention = AgatstonConvention.from_dict(task.convention)
    plain = score_scan(volume.hu, volume.spacing_zyx, origin, direction, region, convention=convention)
    # the block: 4 slabs x 48 x 48 pixels of 700 HU, apart from the scan's calcium, half inside the region
    hu = volume.hu.copy()
    calcium_free = ~np.isin(np.arange(hu.shape[0]), [les.z_first for les in plain.lesions])
    z = int(np.nonzero(calcium_free)[0][len(np.nonzero(calcium_free)[0]) // 2])
    zs = slice(max(z - 2, 0), max(z - 2, 0) + 4)
    ys, xs = np.nonzero(region[z])
    y0, x0 = int(ys.mean()) - 24, int(xs.mean()) - 24
    before_block = hu.copy()
    hu[zs, y0:y0 + 48, x0:x0 + 48] = 700
    block = hu != before_block
    assert block.sum() * np.prod(volume.spacing_zyx) >= 10_000
    bone = bone_mask(hu, volume.spacing_zyx)
    assert bone[block].all()
    out = SeriesScores()
    guarded = _guarded_score(task, CLASSIC, hu, volume.spacing_zyx, origin, direction, region, bone, False,
                             convention, out)
    unguarded = score_scan(hu, volume.spacing_zyx, origin, direction, region, convention=convention)
    assert unguarded.total.agatston > plain.total.agatston + 100  # the block would count without the guard
    assert guarded.total.agatston == pytest.approx(plain.total.agatston)  # only if its calcium touches no block
    rows = [les for les in out.lesions if les["method"] == CLASSIC]
    assert rows and all(les["guard"] == BONE_GUARD for les in rows)
    assert sum(les["n_voxels"] for les in rows) == int((block & region).sum())
    # numbered after the counted lesions: (series, method, lesion_index) stays a key of the table
    assert sorted(les["lesion_index"] for les in rows) == list(range(len(plain.lesions) + 1,
                                                                      len(plain.lesions) + 1 + len(rows)))
