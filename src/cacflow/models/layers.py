"""Building blocks shared by the project's ConvNets."""

from __future__ import annotations

from torch import nn


def conv_pool_stack(widths: tuple[int, ...], in_channels: int = 1) -> nn.Sequential:
    """3 x 3 convolution (no bias), batch normalisation, ELU and 2 x 2 max pooling, once per width.

    Each block halves the image size; the stack's state-dict keys are ``<4 i + k>.*`` (conv 0, BN 1).
    """
    layers: list[nn.Module] = []
    c_in = in_channels
    for w in widths:
        layers += [nn.Conv2d(c_in, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), nn.ELU(inplace=True),
                   nn.MaxPool2d(2)]
        c_in = w
    return nn.Sequential(*layers)
