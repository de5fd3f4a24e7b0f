"""Agreement statistics on published and hand-computed cases."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cacflow.evaluation.agreement import (
    INTERVAL_METRICS,
    _icc_a1_paired,
    _linear_kappa,
    agreement,
    agreement_table,
    bland_altman_log,
    bootstrap_intervals,
    icc_a1,
    stratum_agreement,
    zero_calcium,
)
from cacflow.evaluation.localizer import box_iou, heart_coverage, localizer_metrics, mask_box


def test_icc_matches_shrout_and_fleiss_worked_example():
    # Shrout & Fleiss (1979), Table 2: 6 targets x 4 judges; ICC(2,1) = .29
    x = np.array([[9, 2, 5, 8], [6, 1, 3, 2], [8, 4, 6, 8], [7, 1, 2, 6], [10, 5, 6, 9], [6, 2, 4, 7]], float)
    assert icc_a1(x) == pytest.approx(0.2898, abs=5e-4)


def test_icc_penalises_a_constant_offset_absolute_agreement():
    ref = np.array([0.0, 10, 50, 200, 800])
    assert icc_a1(np.stack([ref, ref], 1)) == pytest.approx(1.0)
    shifted = icc_a1(np.stack([ref + 100, ref], 1))
    assert shifted < 0.99  # consistency would be 1.0; absolute agreement is not


def test_weighted_kappa_hand_case():
    # five-class indices: reference [0, 1, 2, 3], method [0, 2, 2, 3] -> one disagreement of one class.
    # linear weights w = 1 - |i - j| / 4; observed agreement 1 - 0.25/4; chance agreement from the marginals.
    ref = np.array([0.0, 5, 50, 200])
    met = np.array([0.0, 50, 60, 300])
    a = stratum_agreement(met, ref, "five_class")
    p_o = 1 - (1 / 4) / 4
    pr, pm = np.array([1, 1, 1, 1, 0]) / 4, np.array([1, 0, 2, 1, 0]) / 4
    w = 1 - np.abs(np.subtract.outer(range(5), range(5))) / 4
    p_e = float((w * np.outer(pr, pm)).sum())
    assert a["kappa_linear"] == pytest.approx((p_o - p_e) / (1 - p_e))
    assert a["accuracy"] == 0.75 and a["confusion"][1][2] == 1


def test_zero_calcium_and_bland_altman_hand_cases():
    z = zero_calcium(np.array([0.0, 0, 3, 0]), np.array([0.0, 2, 3, 0]))
    assert z == {"any_calcium_sensitivity": 0.5, "zero_calcium_specificity": 1.0}
    ba = bland_altman_log(np.array([np.e - 1, np.e**2 - 1]), np.array([0.0, np.e - 1]))
    assert ba["ba_log_mean_diff"] == pytest.approx(1.0) and ba["ba_log_sd"] == pytest.approx(0.0, abs=1e-12)


def test_agreement_table_groups_and_refuses_missing_values():
    frame = pd.DataFrame({"method_score": [0.0, 12, 150, 500], "reference_score": [0.0, 11, 160, 450],
                          "kernel_class": ["soft", "sharp", "soft", "sharp"]})
    t = agreement_table(frame, ["kernel_class"])
    assert list(t["value"]) == ["all", "sharp", "soft"] and (t["five_class_accuracy"] == 1.0).all()
    with pytest.raises(ValueError):
        agreement(np.array([1.0, np.nan]), np.array([1.0, 2.0]))


def test_resampled_kappa_hand_case_and_scikit_learn():
    # three classes, reference [0, 1, 2], method [0, 2, 2]: observed weighted disagreement (1/3) x 0.5 = 1/6;
    # marginals reference (1/3, 1/3, 1/3), method (1/3, 0, 2/3): chance weighted disagreement 1/2; kappa 2/3
    assert _linear_kappa(np.array([[0, 1, 2]]), np.array([[0, 2, 2]]), 3)[0] == pytest.approx(2 / 3)
    assert _linear_kappa(np.array([[2, 2]]), np.array([[2, 2]]), 5)[0] == 1.0  # one class on both sides
    from sklearn.metrics import cohen_kappa_score

    rng = np.random.default_rng(3)
    r, m = rng.integers(0, 5, (20, 30)), rng.integers(0, 5, (20, 30))
    m[:, :20] = r[:, :20]
    ours = _linear_kappa(r, m, 5)
    for i in range(20):
        assert ours[i] == pytest.approx(cohen_kappa_score(r[i], m[i], weights="linear", labels=list(range(5))))


def test_resampled_icc_matches_icc_a1():
    rng = np.random.default_rng(4)
    a, b = rng.gamma(1.0, 100.0, (10, 25)), rng.gamma(1.0, 100.0, (10, 25))
    b[:, :15] = a[:, :15] * 1.1
    ours = _icc_a1_paired(a, b)
    for i in range(10):
        assert ours[i] == pytest.approx(icc_a1(np.stack([a[i], b[i]], 1)))
    assert np.isnan(_icc_a1_paired(np.ones((1, 4)), np.ones((1, 4))))[0]  # no variance: no ICC


def _scores(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Reference scores of every stratum and a method that errs by about 30 % (and in one scan in ten by 20 AU)."""
    rng = np.random.default_rng(seed)
    ref = np.where(rng.random(n) < 0.3, 0.0, np.exp(rng.normal(3.0, 2.0, n)))
    return ref * np.exp(rng.normal(0.0, 0.3, n)) + (rng.random(n) < 0.1) * 20.0, ref


def test_bootstrap_intervals_hold_the_estimate_and_narrow_with_more_scans():
    method, ref = _scores(40, 0)
    point = agreement(method, ref)
    ci = bootstrap_intervals(method, ref)
    assert set(ci) == {f"{m}_ci_{side}" for m in INTERVAL_METRICS for side in ("low", "high")}
    for m in INTERVAL_METRICS:
        assert ci[f"{m}_ci_low"] <= point[m] <= ci[f"{m}_ci_high"], m
    assert ci["five_class_accuracy_ci_high"] - ci["five_class_accuracy_ci_low"] > 0.1  # 40 scans: wide
    assert bootstrap_intervals(method, ref) == ci  # a fixed seed: the same table each time
    # the same scans four times over: the same estimate, about half the width
    wide = ci["five_class_kappa_ci_high"] - ci["five_class_kappa_ci_low"]
    many = bootstrap_intervals(np.tile(method, 4), np.tile(ref, 4))
    assert many["five_class_kappa_ci_high"] - many["five_class_kappa_ci_low"] < 0.7 * wide


def test_bootstrap_intervals_of_perfect_agreement_and_of_one_scan():
    ref = np.array([0.0, 5.0, 50.0, 200.0, 800.0])
    assert all(v == pytest.approx(1.0) for v in bootstrap_intervals(ref, ref).values())
    assert all(np.isnan(v) for v in bootstrap_intervals(ref[:1], ref[:1]).values())


def test_agreement_table_adds_intervals_when_asked():
    method, ref = _scores(30, 1)
    frame = pd.DataFrame({"method_score": method, "reference_score": ref,
                          "kernel_class": np.where(np.arange(30) % 2, "soft", "sharp")})
    plain, with_ci = agreement_table(frame, ["kernel_class"]), agreement_table(frame, ["kernel_class"], True)
    assert "icc_ci_low" not in plain.columns
    assert list(with_ci.columns[:len(plain.columns)]) == list(plain.columns)
    soft = frame[frame["kernel_class"] == "soft"]
    expected = bootstrap_intervals(soft["method_score"].to_numpy(), soft["reference_score"].to_numpy())
    row = with_ci[with_ci["value"] == "soft"].iloc[0]
    assert {k: row[k] for k in expected} == pytest.approx(expected)


def test_localizer_metrics_hand_cases():
    heart = np.zeros((10, 10, 10), bool)
    heart[2:6, 2:6, 2:6] = True
    assert mask_box(heart) == (2, 6, 2, 6, 2, 6)
    assert box_iou((2, 6, 2, 6, 2, 6), (2, 6, 2, 6, 2, 8)) == pytest.approx(64 / 96)
    assert heart_coverage((2, 4, 2, 6, 2, 6), heart) == 0.5
    assert localizer_metrics(None, heart) == {"box_iou": 0.0, "heart_coverage": 0.0}
