"""The evaluation target's tables built from score and series tables (cacflow.evaluation.report)."""

from __future__ import annotations

import pandas as pd
import pytest

from cacflow.evaluation.report import kernel_agreement, kernel_pairs


def _series() -> pd.DataFrame:
    rows = [  # (series, study, kernel class, kVp)
        ("a-soft", "A", "soft", 120.0), ("a-sharp", "A", "sharp", 120.0),
        ("b-soft", "B", "soft", 140.0), ("b-sharp", "B", "sharp", 140.0),
        ("c-soft1", "C", "soft", 120.0), ("c-soft2", "C", "soft", 120.0), ("c-sharp", "C", "sharp", 120.0),
        ("d-soft", "D", "soft", 120.0),
        ("e-soft", "E", "soft", 120.0), ("e-unknown", "E", "unknown", 120.0),
    ]
    return pd.DataFrame(rows, columns=["series_key", "study_key", "kernel_class", "kvp"])


def _scores(rows: list[tuple[str, str, float, str]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["series_key", "method", "agatston", "status"])


def test_a_study_pairs_only_with_one_soft_and_one_sharp_series():
    pairs = kernel_pairs(_series())
    # C has two soft series (which one belongs to the sharp one is unknown), D no sharp one, E an unknown kernel
    assert pairs[["study_key", "soft_key", "sharp_key"]].values.tolist() == [["A", "a-soft", "a-sharp"],
                                                                            ["B", "b-soft", "b-sharp"]]
    assert kernel_pairs(_series().drop(columns="study_key")).empty


def test_sharp_scores_are_compared_with_the_soft_reference_and_the_soft_score():
    scores = _scores([
        # study A: soft reference 50 (11-100); the robust method reproduces it on the sharp series, the classic
        # method over-calls the sharp series into 101-400 and gives the soft series 48
        ("a-soft", "reference", 50.0, "scored"), ("a-sharp", "reference", 180.0, "scored"),
        ("a-soft", "robust", 52.0, "scored"), ("a-sharp", "robust", 55.0, "scored"),
        ("a-soft", "classic", 48.0, "scored"), ("a-sharp", "classic", 150.0, "scored"),
        # study B: soft reference 0; both methods give 0 on both kernels
        ("b-soft", "reference", 0.0, "scored"), ("b-sharp", "reference", 3.0, "scored"),
        ("b-soft", "robust", 0.0, "scored"), ("b-sharp", "robust", 0.0, "scored"),
        ("b-soft", "classic", 0.0, "scored"), ("b-sharp", "classic", 0.0, "failed"),
    ])
    table = kernel_agreement(scores, kernel_pairs(_series()))
    assert set(table["method"]) == {"robust", "classic"}  # the reference is what the others are compared with
    whole = table[table["group"] == "all"].set_index(["method", "comparison"])
    assert whole.loc[("robust", "sharp_vs_soft_reference"), "n"] == 2
    assert whole.loc[("robust", "sharp_vs_soft_reference"), "five_class_accuracy"] == pytest.approx(1.0)
    # the classic sharp series of study B failed: that pair does not count for the classic method
    assert whole.loc[("classic", "sharp_vs_soft_reference"), "n"] == 1
    assert whole.loc[("classic", "sharp_vs_soft_reference"), "five_class_accuracy"] == pytest.approx(0.0)
    assert whole.loc[("classic", "sharp_vs_soft_same_method"), "five_class_accuracy"] == pytest.approx(0.0)
    assert whole.loc[("robust", "sharp_vs_soft_same_method"), "five_class_accuracy"] == pytest.approx(1.0)
    # grouped by kVp and by the soft reference's stratum
    robust = table[(table["method"] == "robust") & (table["comparison"] == "sharp_vs_soft_reference")]
    assert set(zip(robust["group"], robust["value"])) >= {("kvp", "120"), ("kvp", "140"),
                                                          ("reference_stratum", "0"), ("reference_stratum", "11-100")}


def test_no_pair_gives_an_empty_table():
    scores = _scores([("d-soft", "reference", 5.0, "scored"), ("d-soft", "robust", 5.0, "scored")])
    assert kernel_agreement(scores, kernel_pairs(_series())).empty
