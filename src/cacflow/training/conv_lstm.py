"""Training the 2.5D conv-LSTM calcium segmenter (seed 002).

Data: the labelled series cropped to their pipeline heart boxes (the crops of the vessel segmentation and the
regressor). A sample is a ``patch`` x ``patch`` window of three adjacent axial slices (z - 1, z, z + 1; edge slices
repeated) and the three-class target of slice z:

- 1 coronary calcium: reference calcium (any vessel label) at or above 130 HU;
- 2 non-coronary calcium: every other pixel at or above 130 HU (bone, aortic and valve calcium, noise: the
  reference labels only coronary lesions);
- 0 background.

A share ``positive_fraction`` of the windows is centred on reference calcium, the rest fall anywhere (the seed's
subset sampling of the majority class). Loss: focal loss over the softmax of the three classes (the seed's cost
function; alpha and gamma are recorded). Model selection by the validation scans' coronary calcium Dice, predicted
as the pipeline predicts.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from cacflow.models.conv_lstm import CalciumLSTM, ConvLSTMSegNet, LSTMArch, stacks_to_input
from cacflow.models.segmentation import CALCIUM_HU, SegmentationArch, SliceLabeller, VesselSegmenter, build_vessel_net
from cacflow.scoring.agatston import AgatstonConvention
from cacflow.training.regressor import CropRecord
from cacflow.training.segmentation import (
    UNET_COMPARISON,
    fit_segmenter,
    patch_corner,
    predict_record,
    slice_weights,
    window,
)


@dataclass(frozen=True)
class LSTMHyper:
    """Hyper-parameters of a conv-LSTM run (recorded in the model card)."""

    widths: tuple[int, ...] = (8, 16, 32)
    patch: int = 96
    batch_size: int = 16
    learning_rate: float = 2e-3
    max_epochs: int = 25  # the shipped run's settings
    patience: int = 8
    samples_per_epoch: int = 2048
    positive_fraction: float = 0.5
    focal_alpha: float | None = None
    focal_gamma: float = 2.0
    val_series: int = 12
    seed: int = 0


def three_class_target(hu: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Target classes (uint8, same shape): 1 reference calcium >= 130 HU, 2 other pixels >= 130 HU, 0 else."""
    calcium = hu >= CALCIUM_HU
    return np.where(calcium, np.where(labels > 0, 1, 2), 0).astype(np.uint8)


def sample_stack(rec: CropRecord, rng: np.random.Generator, hp: LSTMHyper) -> tuple[np.ndarray, np.ndarray]:
    """One (HU stack (3, p, p), target (p, p)) training window of a cropped series."""
    size = hp.patch
    z, cy, cx = patch_corner(rec.labels, rec.positive, rng, size, hp.positive_fraction)
    n = rec.hu.shape[0]
    stack = np.stack([window(rec.hu[k], cy, cx, size, -1000) for k in (max(z - 1, 0), z, min(z + 1, n - 1))])
    return stack, three_class_target(stack[1], window(rec.labels[z], cy, cx, size, 0))


def _batch(records: list[CropRecord], weights: np.ndarray, rng: np.random.Generator, hp: LSTMHyper
           ) -> tuple[torch.Tensor, torch.Tensor]:
    stacks, targets = zip(*(sample_stack(records[int(rng.choice(len(records), p=weights))], rng, hp)
                            for _ in range(hp.batch_size)))
    return stacks_to_input(np.stack(stacks)), torch.from_numpy(np.stack(targets).astype(np.int64))[:, None]


def train_lstm_net(train: list[CropRecord], val: list[CropRecord], hp: LSTMHyper, device: torch.device,
                   rng: np.random.Generator, convention: AgatstonConvention) -> tuple[torch.nn.Module, dict]:
    """Train the conv-LSTM; the state of the epoch with the best validation coronary calcium Dice is kept."""
    from monai.losses import FocalLoss

    net = ConvLSTMSegNet(tuple(hp.widths)).to(device)
    loss_fn = FocalLoss(to_onehot_y=True, use_softmax=True, gamma=hp.focal_gamma, alpha=hp.focal_alpha)
    weights = slice_weights(train)
    card = {"kind": "conv_lstm", "weights_sha256": "training"}
    return fit_segmenter(net, loss_fn, lambda: _batch(train, weights, rng, hp),
                         lambda n: CalciumLSTM(n, LSTMArch(tuple(hp.widths)), card, device), val, hp, device,
                         convention, "conv-LSTM")


def cpu_seconds_per_scan(model: SliceLabeller, records: list[CropRecord], repeats: int = 2) -> float:
    """Median CPU wall-clock seconds to label one scan's heart box (the pipeline's call), over ``records``; the
    best of ``repeats`` runs per scan."""
    times = []
    for rec in records:
        best = float("inf")
        for _ in range(repeats):
            t0 = time.perf_counter()
            predict_record(model, rec)
            best = min(best, time.perf_counter() - t0)
        times.append(best)
    return float(np.median(times))


def cpu_time_against_unet(net: torch.nn.Module, hp: LSTMHyper, records: list[CropRecord], scans: int = 10) -> dict:
    """The seed's speed comparison: CPU seconds per scan of this conv-LSTM and of the 2-D U-Net comparison model
    (its architecture and widths, :data:`~cacflow.training.segmentation.UNET_COMPARISON`; timing does not depend
    on its weights) on the same heart boxes (the first ``scans`` records), in this process, one after the other."""
    records = records[:scans]
    cpu = torch.device("cpu")
    lstm = CalciumLSTM(net.to(cpu), LSTMArch(tuple(hp.widths)), {"kind": "conv_lstm", "weights_sha256": "timing"},
                       cpu)
    features = UNET_COMPARISON.features
    unet = VesselSegmenter(build_vessel_net("unet", features), SegmentationArch("unet", features),
                           {"kind": "vessel_segmentation", "weights_sha256": "timing"}, cpu)
    t_lstm, t_unet = cpu_seconds_per_scan(lstm, records), cpu_seconds_per_scan(unet, records)
    return {"scans": len(records), "threads": torch.get_num_threads(), "conv_lstm_s_per_scan": t_lstm,
            "unet_s_per_scan": t_unet, "ratio_conv_lstm_to_unet": t_lstm / t_unet if t_unet else None,
            "unet_features": list(features)}
