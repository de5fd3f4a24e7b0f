"""The 2.5D conv-LSTM calcium segmenter (seed 002): three adjacent axial slices, three classes.

Input: axial slices of the scoring grid (z, y, x order; 3 mm slabs every 1.5 mm) inside the heart box, one channel
each, HU windowed as the seed does (min-max between -800 and 1200 HU, :func:`window_hu`). For an output slice ``z``
the network sees the sequence (z - 1, z + 1, z): a shared 2-D encoder turns every slice into feature maps, a
convolutional LSTM (:class:`ConvLSTMCell`, written here: MONAI has none) runs over the three slices' coarsest maps,
and its last hidden state becomes a spatial attention map that weights the centre slice's features before a small
decoder with skip connections of the centre slice. Output: per-pixel scores of three classes, :data:`CLASSES`
(0 background, 1 coronary calcium, 2 non-coronary calcium: bone, aortic and valve calcium).

The heart box (the localizer's or the anatomical fallback) plays the part of the seed's heart-silhouette network:
nothing outside it is predicted, which removes the bone over-calling that motivated the seed's second model. The
predicted map is gated at 130 HU like every HU-based scorer; only class 1 is scored (as one coronary mask, no
vessels).

Speed by design: :meth:`CalciumLSTM.predict_slices` encodes each slice of a scan once and reuses its features in
the three windows it belongs to, so a scan costs one light encoder pass per slice plus the LSTM and decoder.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from cacflow.models.segmentation import BoxLabeller, gate, pad_to

KIND = "conv_lstm"
#: Output classes of the conv-LSTM.
CLASSES = {0: "background", 1: "coronary calcium", 2: "non-coronary calcium"}
#: The seed's HU window (min-max normalisation), HU.
WINDOW_HU = (-800.0, 1200.0)
#: Slice sides must be multiples of this (two 2 x 2 down-samplings).
DIVISOR = 4


def window_hu(hu: torch.Tensor) -> torch.Tensor:
    """HU -> [0, 1]: clip to :data:`WINDOW_HU` and scale (air and padding 0)."""
    lo, hi = WINDOW_HU
    return (hu.clamp(lo, hi) - lo) / (hi - lo)


def _conv(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True))


class ConvLSTMCell(nn.Module):
    """A convolutional LSTM cell: the four gates are one 3 x 3 convolution of [input, hidden]."""

    def __init__(self, in_channels: int, hidden: int) -> None:
        super().__init__()
        self.hidden = hidden
        self.gates = nn.Conv2d(in_channels + hidden, 4 * hidden, 3, padding=1)

    def forward(self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor] | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """One step: input (n, c, h, w) and (hidden, cell) -> new (hidden, cell); zeros when ``state`` is None."""
        if state is None:
            z = x.new_zeros(x.shape[0], self.hidden, *x.shape[2:])
            state = (z, z)
        h, c = state
        i, f, o, g = torch.chunk(self.gates(torch.cat([x, h], dim=1)), 4, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(c), c


class ConvLSTMSegNet(nn.Module):
    """Shared encoder (full, 1/2 and 1/4 resolution, widths ``widths``), conv-LSTM over the slice sequence at 1/4,
    attention-weighted fusion with the centre slice, decoder with the centre slice's skips, three classes."""

    def __init__(self, widths: tuple[int, int, int] = (8, 16, 32)) -> None:
        super().__init__()
        c1, c2, c3 = widths
        self.enc1 = nn.Sequential(_conv(1, c1), _conv(c1, c1))
        self.enc2 = nn.Sequential(_conv(c1, c2, 2), _conv(c2, c2))
        self.enc3 = nn.Sequential(_conv(c2, c3, 2), _conv(c3, c3))
        self.lstm = ConvLSTMCell(c3, c3)
        self.attention = nn.Conv2d(c3, 1, 1)
        self.fuse = _conv(2 * c3, c3)
        self.dec2 = _conv(c3 + c2, c2)
        self.dec1 = _conv(c2 + c1, c1)
        self.head = nn.Conv2d(c1, len(CLASSES), 1)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Windowed slices (n, 1, h, w) -> features at full, 1/2 and 1/4 resolution."""
        f1 = self.enc1(x)
        f2 = self.enc2(f1)
        return f1, f2, self.enc3(f2)

    def decode(self, sequence: list[torch.Tensor], f1: torch.Tensor, f2: torch.Tensor) -> torch.Tensor:
        """Coarse features of the slice sequence (centre slice last) and the centre's skips -> class scores."""
        state = None
        for f in sequence:
            state = self.lstm(f, state)
        h = state[0]
        centre = sequence[-1]
        fused = self.fuse(torch.cat([centre * torch.sigmoid(self.attention(h)), h], dim=1))
        d2 = self.dec2(torch.cat([F.interpolate(fused, size=f2.shape[2:], mode="nearest"), f2], dim=1))
        d1 = self.dec1(torch.cat([F.interpolate(d2, size=f1.shape[2:], mode="nearest"), f1], dim=1))
        return self.head(d1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Three adjacent windowed slices (n, 3, h, w), order (z - 1, z, z + 1) -> scores (n, 3, h, w) of z."""
        n, s, h, w = x.shape
        f1, f2, f3 = self.encode(x.reshape(n * s, 1, h, w))
        f1, f2, f3 = (f.reshape(n, s, *f.shape[1:]) for f in (f1, f2, f3))
        return self.decode([f3[:, 0], f3[:, 2], f3[:, 1]], f1[:, 1], f2[:, 1])


def neighbours(hu: np.ndarray) -> np.ndarray:
    """HU slices (n, h, w) -> stacks (n, 3, h, w) of slices (z - 1, z, z + 1), edge slices repeated."""
    idx = np.arange(len(hu))
    return np.stack([hu[np.maximum(idx - 1, 0)], hu, hu[np.minimum(idx + 1, len(hu) - 1)]], axis=1)


def stacks_to_input(stacks: np.ndarray) -> torch.Tensor:
    """HU stacks (n, 3, h, w) -> network input (n, 3, h, w) in [0, 1]."""
    return window_hu(torch.from_numpy(np.ascontiguousarray(stacks, dtype=np.float32)))


@dataclass(frozen=True)
class LSTMArch:
    """What a conv-LSTM checkpoint needs to rebuild its network."""

    widths: tuple[int, int, int]


class CalciumLSTM(BoxLabeller):
    """A conv-LSTM checkpoint: gated three-class maps (0, 1 coronary, 2 non-coronary calcium) of axial slices."""

    kind = KIND

    @staticmethod
    def read_arch(arch: dict) -> LSTMArch:
        return LSTMArch(tuple(arch["widths"]))

    @staticmethod
    def build(arch: LSTMArch) -> nn.Module:
        return ConvLSTMSegNet(arch.widths)

    def predict_block(self, hu: np.ndarray) -> np.ndarray:
        return self.predict_slices(hu)

    @torch.inference_mode()
    def predict_slices(self, hu: np.ndarray) -> np.ndarray:
        """Gated labels (n, h, w) uint8 of consecutive HU slices (n, h, w); the first and last slice see
        themselves as their missing neighbour. Each slice is encoded once."""
        n, h, w = hu.shape
        if n == 0:
            return np.zeros((0, h, w), np.uint8)
        padded, _ = pad_to(hu, DIVISOR)
        feats: list[list[torch.Tensor]] = [[], [], []]
        for i in range(0, n, self.batch_size):
            x = window_hu(torch.from_numpy(np.ascontiguousarray(padded[i:i + self.batch_size], np.float32)))
            x = self._place(x[:, None])
            with self._precision():
                for k, f in enumerate(self.net.encode(x)):
                    feats[k].append(f)
        f1, f2, f3 = (torch.cat(f) for f in feats)
        out = []
        for i in range(0, n, self.batch_size):
            z = torch.arange(i, min(n, i + self.batch_size), device=f3.device)
            before, after = (z - 1).clamp(min=0), (z + 1).clamp(max=n - 1)
            with self._precision():
                y = self.net.decode([f3[before], f3[after], f3[z]], f1[z], f2[z])
            out.append(y.float().argmax(dim=1).to(torch.uint8).cpu().numpy())
        labels = np.concatenate(out)[:, :h, :w]
        return gate(labels, hu)
