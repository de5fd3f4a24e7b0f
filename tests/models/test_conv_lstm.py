"""The 2.5D conv-LSTM: the LSTM cell against a hand-computed step, the three-slice network's shapes and order,
the once-per-slice encoding of whole scans against the plain forward pass, gating and the heart box."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from cacflow.models.checkpoint import save_checkpoint
from cacflow.models.conv_lstm import (
    CLASSES,
    CalciumLSTM,
    ConvLSTMCell,
    ConvLSTMSegNet,
    LSTMArch,
    neighbours,
    stacks_to_input,
    window_hu,
)
from cacflow.models.segmentation import gate, pad_to

WIDTHS = (4, 8, 8)


def test_hu_window_is_the_seeds_min_max_between_minus_800_and_1200():
    out = window_hu(torch.tensor([-1000.0, -800.0, 200.0, 1200.0, 3000.0]))
    np.testing.assert_allclose(out.numpy(), [0.0, 0.0, 0.5, 1.0, 1.0])


def test_lstm_cell_step_by_hand():
    # gate convolution weights 0: every gate is its bias. i, f, o = sigmoid(0) = 0.5, g = tanh(1)
    cell = ConvLSTMCell(1, 1)
    with torch.no_grad():
        cell.gates.weight.zero_()
        cell.gates.bias.copy_(torch.tensor([0.0, 0.0, 0.0, 1.0]))
    x = torch.zeros(1, 1, 2, 2)
    h1, c1 = cell(x)  # from zero state: c = 0.5 * 0 + 0.5 * tanh(1)
    c_exp = 0.5 * math.tanh(1.0)
    np.testing.assert_allclose(c1.detach().numpy(), c_exp, rtol=1e-6)
    np.testing.assert_allclose(h1.detach().numpy(), 0.5 * math.tanh(c_exp), rtol=1e-6)
    h2, c2 = cell(x, (h1, c1))  # c = 0.5 * c1 + 0.5 * tanh(1)
    np.testing.assert_allclose(c2.detach().numpy(), 0.5 * c_exp + c_exp, rtol=1e-6)


def test_network_gives_three_class_maps_and_depends_on_the_neighbours():
    torch.manual_seed(0)
    net = ConvLSTMSegNet(WIDTHS).eval()
    x = torch.rand(2, 3, 32, 40)
    with torch.no_grad():
        y = net(x)
        assert y.shape == (2, len(CLASSES), 32, 40)
        x2 = x.clone()
        x2[:, 0] = 0  # another slice before the centre changes the output: the sequence is used
        assert not torch.equal(net(x2), y)


def test_neighbour_stacks_repeat_the_edge_slices():
    hu = np.arange(3)[:, None, None] * np.ones((3, 2, 2))
    st = neighbours(hu)
    assert st.shape == (3, 3, 2, 2)
    np.testing.assert_array_equal(st[:, :, 0, 0], [[0, 0, 1], [0, 1, 2], [1, 2, 2]])


def _scorer(tmp_path, net: ConvLSTMSegNet, batch_size: int = 4) -> CalciumLSTM:
    save_checkpoint(tmp_path, {"arch": {"widths": list(WIDTHS)}, "state": net.state_dict()}, {"kind": "conv_lstm"})
    return CalciumLSTM.load(tmp_path, torch.device("cpu"), batch_size=batch_size)


def test_scan_prediction_encodes_each_slice_once_and_equals_the_plain_forward_pass(tmp_path):
    torch.manual_seed(1)
    net = ConvLSTMSegNet(WIDTHS)
    with torch.no_grad():  # a bias towards the calcium classes so the argmax is not all background
        net.head.bias.copy_(torch.tensor([0.0, 0.3, 0.2]))
    lstm = _scorer(tmp_path, net, batch_size=3)
    assert lstm.arch == LSTMArch(WIDTHS) and lstm.id.startswith("conv_lstm-")
    hu = np.random.default_rng(0).normal(100, 300, (7, 30, 37)).astype(np.int16)
    labels = lstm.predict_slices(hu)
    padded, _ = pad_to(hu, 4)
    with torch.inference_mode():
        plain = lstm.net(stacks_to_input(neighbours(padded))).argmax(1).numpy().astype(np.uint8)[:, :30, :37]
    np.testing.assert_array_equal(labels, gate(plain, hu))
    assert set(np.unique(labels)) <= {0, 1, 2} and not labels[hu < 130].any() and labels.any()


def test_nothing_is_labelled_outside_the_heart_box(tmp_path):
    net = ConvLSTMSegNet(WIDTHS)
    with torch.no_grad():
        net.head.weight.zero_()
        net.head.bias.copy_(torch.tensor([0.0, 5.0, 0.0]))  # coronary calcium everywhere
    lstm = _scorer(tmp_path, net)
    hu = np.full((5, 20, 24), 400, dtype=np.int16)
    hu[:, :, :4] = 0
    labels = lstm.predict_box(hu, (1, 4, 2, 18, 0, 20))
    expected = np.zeros(hu.shape, np.uint8)
    expected[1:4, 2:18, 4:20] = 1
    np.testing.assert_array_equal(labels, expected)


@pytest.mark.parametrize("n", [0, 1])
def test_short_boxes(tmp_path, n):
    lstm = _scorer(tmp_path, ConvLSTMSegNet(WIDTHS))
    assert lstm.predict_slices(np.zeros((n, 9, 9), np.int16)).shape == (n, 9, 9)
