"""Agreement statistics on published and hand-computed cases."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cacflow.evaluation.agreement import (
    agreement,
    agreement_table,
    bland_altman_log,
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


def test_localizer_metrics_hand_cases():
    heart = np.zeros((10, 10, 10), bool)
    heart[2:6, 2:6, 2:6] = True
    assert mask_box(heart) == (2, 6, 2, 6, 2, 6)
    assert box_iou((2, 6, 2, 6, 2, 6), (2, 6, 2, 6, 2, 8)) == pytest.approx(64 / 96)
    assert heart_coverage((2, 4, 2, 6, 2, 6), heart) == 0.5
    assert localizer_metrics(None, heart) == {"box_iou": 0.0, "heart_coverage": 0.0}
