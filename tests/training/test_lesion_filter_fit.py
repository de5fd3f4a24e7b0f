"""Fitting the lesion filter: training lesions of boxes and the validation choice of the threshold, by hand."""

from __future__ import annotations

import math

import numpy as np

from cacflow.training.lesion_filter import LESION_FILTER_THRESHOLDS, box_lesions, choose_threshold, stack_lesions


def test_box_lesions_and_their_stack():
    calcium = np.zeros((2, 4, 4), bool)
    calcium[0, 0, 0:2] = True  # lesion 1: one of two voxels on the reference -> not spurious
    calcium[1, 3, 3] = True  # lesion 2: off the reference -> spurious
    reference = np.zeros((2, 4, 4), np.uint8)
    reference[0, 0, 1] = 3
    features, spurious = box_lesions(calcium, np.array([0.5, 0.7, 0.9]), reference)
    assert features.dtype == np.float32 and features.shape == (2, 4)
    np.testing.assert_allclose(features[:, 3], [0.6, 0.9], rtol=1e-6)
    np.testing.assert_array_equal(spurious, [False, True])
    empty = box_lesions(np.zeros((2, 4, 4), bool), np.zeros(0), reference)
    f, s = stack_lesions([(features, spurious), empty, (features[:1], spurious[:1])])
    assert f.shape == (3, 4) and s.tolist() == [False, True, False]
    assert stack_lesions([])[0].shape == (0, 4)


def test_threshold_choice_by_kappa_then_accuracy_then_fewest_removed():
    # κ rises as the threshold falls to 0.7, then 0.7 and 0.6 tie on κ and accuracy: 0.7 removes fewer lesions
    kappa = {math.inf: 0.5, 1.0: 0.5, 0.9: 0.6, 0.8: 0.7, 0.7: 0.9, 0.6: 0.9, 0.5: 0.8}
    seen = []

    def evaluate(threshold: float) -> dict:
        seen.append(threshold)
        return {"five_class_kappa": kappa[threshold], "five_class_accuracy": 0.8}

    threshold, rows = choose_threshold(evaluate)
    assert threshold == 0.7
    assert seen == [math.inf, 1.0, 0.9, 0.8, 0.7, 0.6, 0.5]  # None is evaluated as no filter (infinity)
    assert [r["threshold"] for r in rows] == list(LESION_FILTER_THRESHOLDS) and rows[0]["threshold"] is None
    # when no threshold beats keeping every lesion, no filter is chosen; NaN κ counts lowest
    flat, _ = choose_threshold(lambda t: {"five_class_kappa": 0.5 if t == math.inf else float("nan"),
                                          "five_class_accuracy": 1.0})
    assert flat is None
