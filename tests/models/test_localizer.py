"""Heart localizer geometry: canvas orientation, presence targets, boxes from probabilities and back to the grid."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cacflow.models.localizer import (
    CANVAS_SIZE,
    BoxEstimate,
    LocalizerError,
    PlaneNet,
    box_from_probabilities,
    build_canvas,
    implausibility,
    plane_slices,
    presence_targets,
)

SPACING = (1.5, 0.75, 0.75)


def _scan(flip_x: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A 100 x 200 x 200 scan of air with a water 'heart' block at known indices (z 30-69, y 80-139, x 60-129)."""
    hu = np.full((100, 200, 200), -1000, np.int16)
    heart = np.zeros(hu.shape, bool)
    heart[30:70, 80:140, 60:130] = True
    hu[heart] = 40
    direction = np.eye(3)
    if flip_x:
        hu, heart = hu[:, :, ::-1].copy(), heart[:, :, ::-1].copy()
        direction = np.diag([-1.0, 1.0, 1.0])
    return hu, heart, direction


def test_canvas_is_canonical_whatever_the_array_flips():
    hu, heart, d = _scan()
    hu_f, heart_f, d_f = _scan(flip_x=True)
    c1, _, (m1,) = build_canvas(hu, SPACING, d, masks=(heart,))
    c2, _, (m2,) = build_canvas(hu_f, SPACING, d_f, masks=(heart_f,))
    assert c1.shape == (CANVAS_SIZE,) * 3
    np.testing.assert_allclose(c1, c2, atol=1e-3)
    np.testing.assert_allclose(m1, m2, atol=1e-6)


def test_perfect_probabilities_give_a_box_around_the_heart_on_the_input_grid():
    for flip in (False, True):
        hu, heart, d = _scan(flip)
        _, cmap, (frac,) = build_canvas(hu, SPACING, d, masks=(heart,))
        targets = presence_targets(frac)
        est = box_from_probabilities(targets.astype(np.float64))
        z0, z1, y0, y1, x0, x1 = cmap.canvas_to_input(est.lo, est.hi)
        inside = heart[z0:z1, y0:y1, x0:x1].sum() / heart.sum()
        assert inside == 1.0
        true = (30, 70, 80, 140, 60, 130) if not flip else (30, 70, 80, 140, 70, 140)
        box = (z0, z1, y0, y1, x0, x1)
        for k, (got, want) in enumerate(zip(box, true)):
            # the edge is off by at most the 3 mm margin plus half a 3 mm canvas voxel (and one voxel of rounding)
            assert abs(got - want) <= 4.5 / SPACING[k // 2] + 1, (k, got, want)
        assert est.confidence > 0.9


def test_box_edges_interpolate_the_half_probability_crossing():
    p = np.zeros((3, 128))
    p[:, 40:80] = 1.0
    p[:, 39] = 0.25  # crossing a quarter of the way... smoothed with neighbours, still inside slice 39-40
    est = box_from_probabilities(p, margin_mm=0.0)
    assert 39.0 < est.lo[0] < 40.5 and 79.5 <= est.hi[0] <= 80.5
    assert implausibility(est) is None


def test_a_short_dip_does_not_split_the_heart_but_a_long_one_does():
    p = np.zeros((3, 128))
    p[:, 40:80] = 1.0
    p[0, 60:66] = 0.0  # a 6-slice dip (18 mm): after the 3-slice smoothing 4 slices stay below one half
    est = box_from_probabilities(p, margin_mm=0.0)
    assert est.hi[0] - est.lo[0] < 25.0  # the longer piece only (40-60), and the rest counts as stray
    assert est.per_axis_confidence[0] < 0.5 * est.per_axis_confidence[1]
    p[0, 60:66] = 1.0
    p[0, 61:63] = 0.0  # a 2-slice dip (6 mm): smoothed, 2 slices below one half, bridged
    est = box_from_probabilities(p, margin_mm=0.0)
    assert 39.0 < est.lo[0] < 40.5 and 79.5 <= est.hi[0] <= 80.5
    assert est.per_axis_confidence[0] > 0.9 * est.per_axis_confidence[1]


def test_no_heart_and_implausible_boxes_are_refused():
    with pytest.raises(LocalizerError, match="heart_not_found"):
        box_from_probabilities(np.zeros((3, 128)))
    tiny = BoxEstimate(np.array([60.0, 60, 60]), np.array([62.0, 62, 62]), 1.0, (1.0, 1.0, 1.0))
    assert "extent" in implausibility(tiny)
    off = BoxEstimate(np.array([40.0, 0, 0]), np.array([90.0, 50, 50]), 1.0, (1.0, 1.0, 1.0))
    assert "centre" in implausibility(off)


def test_non_axial_scans_are_refused():
    hu, _, _ = _scan()
    coronal = np.array([[1.0, 0, 0], [0, 0, 1.0], [0, 1.0, 0]])
    with pytest.raises(LocalizerError, match="not_axial"):
        build_canvas(hu, SPACING, coronal)


def test_plane_net_takes_every_slice_of_a_plane():
    canvas = np.full((CANVAS_SIZE,) * 3, -1000.0, np.float32)
    x = plane_slices(canvas, "coronal")
    assert x.shape == (CANVAS_SIZE, 1, CANVAS_SIZE, CANVAS_SIZE) and float(x.max()) == 0.0
    net = PlaneNet().eval()
    with torch.inference_mode():
        assert net(x[:4]).shape == (4,)


def test_a_confident_plausible_box_is_found_and_mapped_to_lps():
    from cacflow.models.predict import HeartLocalizer

    hu, heart, d = _scan()
    _, cmap, (frac,) = build_canvas(hu, SPACING, d, masks=(heart,))
    probs = presence_targets(frac).astype(np.float64)
    est = box_from_probabilities(probs)
    hb = HeartLocalizer._box(est, cmap, SPACING, np.zeros(3), d, probs)
    assert hb.usable and hb.status == "found" and hb.probabilities is not None
    (lo, hi) = hb.box_lps_mm
    assert lo[2] <= 30 * 1.5 and hi[2] >= 69 * 1.5  # the heart's z range in mm (origin 0, z spacing 1.5 mm)
    low = HeartLocalizer._box(BoxEstimate(est.lo, est.hi, 0.3, (0.3,) * 3), cmap, SPACING, np.zeros(3), d, probs)
    assert low.status == "low_confidence" and not low.usable and low.reason == "localizer_low_confidence"


def test_a_checkpoint_holds_one_network_per_plane(tmp_path):
    from cacflow.models.checkpoint import CheckpointError, save_checkpoint
    from cacflow.models.localizer import PLANES
    from cacflow.models.predict import HeartLocalizer

    torch.manual_seed(0)
    arch = {"widths": [4, 4, 8, 8, 8], "hidden": 8}
    nets = {p: PlaneNet(tuple(arch["widths"]), arch["hidden"]).eval() for p in PLANES}
    state = {p: {k: v.clone() for k, v in n.state_dict().items()} for p, n in nets.items()}
    save_checkpoint(tmp_path / "one", {"arch": arch, "state": state}, {"kind": "localizer"})
    one = HeartLocalizer.load(tmp_path / "one", "cpu")
    hu, _, d = _scan()
    canvas, _, _ = build_canvas(hu, SPACING, d)
    got = one.probabilities(canvas)
    assert got.shape == (3, CANVAS_SIZE)
    with torch.inference_mode():
        for a, p in enumerate(PLANES):
            np.testing.assert_allclose(got[a], torch.sigmoid(nets[p](plane_slices(canvas, p))).numpy(), atol=1e-5)
            # a stack of the plane's slices read by slice_probabilities: the same as the whole canvas's
            np.testing.assert_allclose(one.slice_probabilities(np.moveaxis(canvas, a, 0)[40:60], p), got[a][40:60],
                                       atol=1e-5)
    # several networks per plane (an ensemble, an option that was not adopted) are refused by name
    save_checkpoint(tmp_path / "ens", {"arch": arch, "state": {p: [s, s] for p, s in state.items()}},
                    {"kind": "localizer"})
    with pytest.raises(CheckpointError, match="ensembles"):
        HeartLocalizer.load(tmp_path / "ens", "cpu")
