"""The heart box on real chest CT against the reads (cacflow.evaluation.real_heart): every read scan is converted,
localized with the shipped localizer and measured against its read."""

from __future__ import annotations

from pathlib import Path

from cacflow.evaluation.reads import load_reads
from cacflow.evaluation.real_heart import MIN_COVERAGE, MIN_IOU, evaluate_reads

REPO = Path(__file__).resolve().parents[2]
READS = REPO / "reads" / "real_ct.json"


def test_every_read_scan_is_measured_against_its_read(real_data):
    rows = evaluate_reads(real_data.parents[1], READS, REPO / "models" / "localizer")
    assert [r["scan"] for r in rows] == [r.id for r in load_reads(READS)]
    for row in rows:
        assert row["localizer_model"].startswith("localizer-")
        assert row["localizer_status"] in ("found", "low_confidence", "implausible", "not_found")
        for key in ("localizer_coverage", "localizer_iou", "chosen_coverage", "chosen_iou"):
            assert 0.0 <= row[key] <= 1.0, key
        assert row["chosen_method"] in ("localizer", "heuristic_fallback", None)
        met = (row["chosen_method"] == "localizer" and row["chosen_coverage"] >= MIN_COVERAGE
               and row["chosen_iou"] >= MIN_IOU)
        assert row["meets_target"] is met
        if row["chosen_method"] is None:  # no box: nothing covered
            assert row["chosen_coverage"] == row["chosen_iou"] == 0.0
    assert (MIN_COVERAGE, MIN_IOU) == (0.95, 0.6)  # issue 36's acceptance
