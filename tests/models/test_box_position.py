"""Box positions by hand: the place of a voxel along each axis of the nominal heart box."""

from __future__ import annotations

import numpy as np

from cacflow.models.box_position import axis_position, position_channels


def test_axis_position_spans_the_box_by_hand():
    np.testing.assert_allclose(axis_position(np.arange(-1, 5), 4), [-1.25, -0.75, -0.25, 0.25, 0.75, 1.25])
    pos = position_channels(np.array([0, 2]), 3, (1, -1), (2, 3), (4, 2))
    assert pos.shape == (2, 3, 2, 3)
    np.testing.assert_allclose(pos[:, 0, 0, 0], [-2 / 3, 2 / 3])  # z of slices 0 and 2 of 3
    np.testing.assert_allclose(pos[0, 1, :, 0], [-0.25, 0.25])  # rows 1, 2 of 4
    np.testing.assert_allclose(pos[0, 2, 0, :], [-1.5, -0.5, 0.5])  # columns -1, 0, 1 of 2
