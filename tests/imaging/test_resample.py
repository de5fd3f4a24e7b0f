import numpy as np
import pytest

from cacflow.imaging.resample import ZGrid, box_weights, output_positions, resample_z


def test_constant_volume_stays_constant_and_rows_sum_to_one():
    z = np.arange(40) * 1.25
    vol = np.full((40, 4, 4), 77.0)
    out, z_out = resample_z(vol, z, ZGrid(3.0, 1.5))
    assert np.allclose(out, 77.0)
    w, _ = box_weights(z, ZGrid(3.0, 1.5))
    assert np.allclose(w.sum(axis=1), 1.0)
    assert np.allclose(np.diff(z_out), 1.5)


def test_box_mean_hand_computed_from_one_mm_slices():
    # 1 mm slices at 0..5: intervals [-0.5,0.5], ... ; first 3 mm box [-0.5, 2.5] = mean of slices 0,1,2
    z = np.arange(6, dtype=float)
    vol = np.arange(6, dtype=float)[:, None, None] * np.ones((1, 2, 2))
    out, z_out = resample_z(vol, z, ZGrid(3.0, 1.5))
    assert z_out[0] == pytest.approx(1.0)
    assert out[0, 0, 0] == pytest.approx(1.0)  # (0+1+2)/3
    # second box [1.0, 4.0]: half of slice 1, slices 2 and 3, half of slice 4 -> (0.5*1+2+3+0.5*4)/3
    assert out[1, 0, 0] == pytest.approx((0.5 + 2 + 3 + 2) / 3)


def test_max_reduce_keeps_labels():
    z = np.arange(6, dtype=float) * 2.0
    lab = np.zeros((6, 3, 3), np.uint8)
    lab[3, 1, 1] = 4
    out, _ = resample_z(lab, z, ZGrid(3.0, 1.5), reduce="max")
    assert out.dtype == np.uint8 and out.max() == 4


def test_output_positions_fit_inside_range():
    z = np.arange(10) * 2.5
    zo = output_positions(z, ZGrid(3.0, 1.5))
    assert zo[0] - 1.5 >= z[0] - 1.25 - 1e-9 and zo[-1] + 1.5 <= z[-1] + 1.25 + 1e-9


def test_rejects_unsorted_positions():
    with pytest.raises(ValueError, match="ascending"):
        resample_z(np.zeros((3, 2, 2)), np.array([0.0, 2.0, 1.0]), ZGrid())


def test_grid_starts_at_the_inferior_edge_for_either_slice_order():
    # 2 mm slices at 0..18 mm along the normal: scanned range [-1, 19], 20 mm; 3 mm slabs every 1.5 mm fit 12 times
    z = np.arange(10) * 2.0
    head_ward = output_positions(z, ZGrid(3.0, 1.5), normal_sign=1)  # HFS: positions ascend towards the head
    feet_ward = output_positions(z, ZGrid(3.0, 1.5), normal_sign=-1)  # FFS: positions ascend towards the feet
    assert len(head_ward) == len(feet_ward) == 12
    assert head_ward[0] == pytest.approx(0.5)  # first slab [-1, 2]: starts at the lower (inferior) edge
    assert head_ward[-1] == pytest.approx(17.0)  # last slab [15.5, 18.5]: the 0.5 mm left over is at the head end
    assert feet_ward[-1] == pytest.approx(17.5)  # first slab [16, 19]: starts at the upper (inferior) edge
    assert feet_ward[0] == pytest.approx(1.0)  # the 0.5 mm left over is at the head end again
    assert np.all(np.diff(feet_ward) > 0)
    with pytest.raises(ValueError, match="normal_sign"):
        output_positions(z, ZGrid(), normal_sign=0)


def test_superior_sign_reads_the_normal():
    from cacflow.imaging.resample import superior_sign

    assert superior_sign(np.eye(3)) == 1  # HFS axial: normal +z (towards the head)
    assert superior_sign(np.diag([-1.0, 1.0, -1.0])) == -1  # FFS axial: row cosine -x, normal -z


def test_head_first_and_feet_first_copies_of_one_anatomy_score_identically():
    """The generator renders one phantom on one acquisition twice, head first and feet first; converted as the
    pipeline converts them, put on the scoring grid and scored (every HU >= 130 voxel, bone included), both give
    the same slabs and the same Agatston score."""
    from dataclasses import replace

    from cacflow.imaging.resample import resample_volume
    from cacflow.scoring.agatston import agatston_score
    from cacflow.synth.acquisition import draw_acquisition
    from cacflow.synth.anatomy import build_phantom
    from cacflow.synth.render import make_grid, render_background
    from cacflow.synth.truth import converter_view

    rng = np.random.default_rng(5)
    phantom = build_phantom(rng, 1)
    acq = draw_acquisition(rng, True, phantom.heart_center)
    acq = replace(acq, increment_mm=2.0, thickness_mm=2.0, n_slices=25)  # 50 mm: 0.5 mm left over
    scores, starts = [], []
    for position in ("HFS", "FFS"):
        grid = make_grid(replace(acq, patient_position=position))
        hu = np.round(render_background(phantom, grid, acq.thickness_mm).hu).astype(np.int16)
        native, _ = converter_view(hu, np.zeros(hu.shape, np.uint8), grid.ipp, grid.iop, grid.pixel_spacing)
        assert np.sign(native.direction[2, 2]) == (1 if position == "HFS" else -1)
        on_grid = resample_volume(native, ZGrid(3.0, 1.5), "scoring")
        lps_z = float(np.asarray(on_grid.origin)[2])
        starts.append(sorted([lps_z, lps_z + on_grid.direction[2, 2] * 1.5 * (on_grid.hu.shape[0] - 1)]))
        scores.append(agatston_score(on_grid.hu, on_grid.spacing_zyx).total)
    assert starts[0] == pytest.approx(starts[1])  # the same slab centres in patient z
    assert scores[0] > 0
    assert scores[0] == pytest.approx(scores[1], rel=1e-9)
