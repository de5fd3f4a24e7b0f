"""Training the kernel-robust calcification level model (seed 000, robust Agatston score).

Data: participants of the labelled cohort with a soft **and** a sharp reconstruction of one acquisition (the
synthetic generator writes such pairs; they lie on the same grid). Both volumes are cropped to the heart box the
pipeline finds on the sharp series (on the soft one where the sharp has none), widened by 8 mm. The target of
both is the level map of the **soft** series inside the reference calcium labels
(:func:`cacflow.scoring.robust_agatston.hu_to_levels`). A sample is a ``patch`` x ``patch`` window of one
slice; its input is the sharp slice with probability ``sharp_fraction`` and the soft slice otherwise (so the model
also scores soft scans as the soft reference would). A share ``positive_fraction`` of the windows is centred near
coronary calcium, a share ``negative_fraction`` near dense tissue that is not coronary calcium (soft-kernel HU at or
above the 130 HU threshold outside the reference labels: bone, aortic and valve calcium, which outnumber coronary
calcium about 100 to 1 in the heart boxes of the synthetic cohort and which a level model without a threshold must
learn to leave at level 0), the rest anywhere. No intensity augmentation (seed 000: colour augmentation hurts level
prediction).

Loss: cross-entropy + Dice (MONAI, levels 1..4, over the whole batch) + information-gain loss
``-1/V Σ_i Σ_D M(D*_i, D) log P(D | z_i)`` with ``M = exp(-α (D* - D)²)`` (:func:`information_gain_loss`).
α is the seed's free constant. Its default, 4, was chosen on the validation pairs (docs/decisions): the loss acts as
a cross-entropy against the soft targets ``M / Σ M``, and with α = 1 every background pixel (the great majority)
is pulled towards 27 % level 1, which kept the level-1 rims from ever winning the argmax (level-1 Dice 0.04); at
α = 4 a neighbour level gets 2 %.
The Dice term is taken over the whole batch per level (``dice_batch``, docs/decisions). Taken per window and averaged
(MONAI's default), most windows lack most levels, and a level absent from a window scores Dice 0 unless the
network puts almost exactly zero probability on it there: the loss is then mostly about absent levels (the runs
that showed it: ``docs/training.md``, level model).
Model selection per epoch by the validation pairs' mean level Dice on the sharp series.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
import torch

from cacflow.evaluation.agreement import agreement
from cacflow.imaging.resample import ZGrid
from cacflow.models.calcium_levels import KIND, LevelArch, LevelPredictor, slices_to_input
from cacflow.models.heart_box import choose_heart_box
from cacflow.models.predict import HeartLocalizer
from cacflow.models.segmentation import label_box, logits
from cacflow.scoring.agatston import DEFAULT_CONVENTION, AgatstonConvention
from cacflow.scoring.robust_agatston import N_LEVELS, hu_to_levels, robust_score
from cacflow.scoring.scan import score_scan
from cacflow.training.common import starting_checkpoint
from cacflow.training.data import LabelledSeries, load_series, widened_crop
from cacflow.training.engine import Engine, Validation, batches_from
from cacflow.training.lesion_filter import box_lesions, choose_threshold, stack_lesions
from cacflow.training.segmentation import (
    check_shares,
    choose_window,
    dense_non_coronary,
    window,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LevelHyper:
    """Hyper-parameters of a calcification level run (recorded in the model card)."""

    backbone: str = "segresnet"  # the one backbone (models.calcium_levels); recorded in cards and checkpoints
    channels: tuple[int, ...] = (16, 32, 64, 128, 256)  # SegResNet: the first is its initial filters
    norm: str | None = "batch"  # keeps absolute HU (models.calcium_levels); None: the backbone's default
    calcium_window: bool = True  # second input channel 100..500 HU -> 0..1 (models.calcium_levels)
    patch: int = 96
    batch_size: int = 16
    learning_rate: float = 1e-3  # AdamW, as the seed
    max_epochs: int = 40
    patience: int = 40
    samples_per_epoch: int = 2048
    positive_fraction: float = 0.5
    negative_fraction: float = 0.25
    sharp_fraction: float = 0.75
    igl_alpha: float = 4.0  # M = exp(-alpha (D* - D)^2); see the module docstring
    #: Dice over the whole batch per level (True) or per window, averaged (False, MONAI's default); see the module
    #: docstring
    dice_batch: bool = True
    val_pairs: int = 8
    lesion_filter_k: int = 15  # neighbours of the lesion filter (models.lesion_filter); 0: no filter
    seed: int = 0
    #: A level checkpoint directory to start from (continuing a run with a new learning-rate schedule, or
    #: fine-tuning on other pairs); "" trains from scratch. Its architecture is kept (see :func:`initial_state`).
    init_from: str = ""


@dataclass
class PairRecord:
    """A soft/sharp pair cropped to the sharp series' heart box: both HU crops, the soft levels, the labels."""

    participant: str
    sharp: LabelledSeries
    soft: LabelledSeries
    sharp_hu: np.ndarray  # int16 (z, h, w)
    soft_hu: np.ndarray
    levels: np.ndarray  # uint8 (z, h, w): soft-kernel levels inside the reference labels
    labels: np.ndarray  # uint8 vessel labels
    inner: tuple[int, int, int, int]
    spacing_zyx: tuple[float, float, float]
    positive: np.ndarray


def kernel_pairs(series: list[LabelledSeries]) -> list[tuple[LabelledSeries, LabelledSeries]]:
    """(sharp, soft) series of each participant that has one of each (sorted by participant)."""
    by = defaultdict(dict)
    for s in series:
        if s.kernel_class in ("soft", "sharp"):
            by[s.participant].setdefault(s.kernel_class, s)
    return [(k["sharp"], k["soft"]) for p, k in sorted(by.items()) if len(k) == 2]


def load_pairs(series: list[LabelledSeries], localizer: HeartLocalizer, grid: ZGrid,
               convention: AgatstonConvention, margin_mm: float = 8.0) -> list[PairRecord]:
    """Crop every soft/sharp pair of ``series`` to the sharp series' pipeline heart box widened by ``margin_mm``."""
    out = []
    for sharp, soft in kernel_pairs(series):
        a = load_series(sharp, grid, convention, targets=False)
        b = load_series(soft, grid, convention, targets=False)
        if a.hu.shape != b.hu.shape:
            log.warning("pair %s: soft and sharp grids differ (%s, %s); left out", sharp.participant, a.hu.shape,
                        b.hu.shape)
            continue
        choice = choose_heart_box(localizer, a.hu, a.spacing_zyx, np.asarray(a.origin), a.direction)
        if choice.box_zyx is None:  # same grid: the soft series' box serves (its noise hides the heart less)
            choice = choose_heart_box(localizer, b.hu, b.spacing_zyx, np.asarray(b.origin), b.direction)
        if choice.box_zyx is None:
            log.warning("pair %s: no heart box (%s); left out", sharp.participant, choice.reason)
            continue
        crop, inner = widened_crop(choice.box_zyx, a.spacing_zyx, a.hu.shape, margin_mm)
        labels = np.maximum(a.labels, b.labels)[crop]
        soft_hu = np.ascontiguousarray(b.hu[crop])
        levels = hu_to_levels(soft_hu, labels, convention)
        out.append(PairRecord(sharp.participant, sharp, soft, np.ascontiguousarray(a.hu[crop]), soft_hu, levels,
                              np.ascontiguousarray(labels), inner, a.spacing_zyx,
                              np.nonzero(levels.any(axis=(1, 2)))[0]))
    return out


def information_gain_loss(logits_: torch.Tensor, target: torch.Tensor, alpha: float) -> torch.Tensor:
    """Information-gain loss of class scores (n, C, h, w) against integer levels (n, 1, h, w):
    mean over pixels of ``-Σ_D exp(-α (D* - D)²) log softmax(z)_D`` (near misses are rewarded more than far ones)."""
    n_cls = logits_.shape[1]
    d = torch.arange(n_cls, device=logits_.device, dtype=torch.float32)
    m = torch.exp(-alpha * (d[:, None] - d[None, :]) ** 2)  # (C*, C)
    weights = m[target[:, 0].long()].permute(0, 3, 1, 2)  # (n, C, h, w)
    return -(weights * torch.log_softmax(logits_, dim=1)).sum(dim=1).mean()


def dense_pixels(rec: PairRecord, z: int, convention: AgatstonConvention = DEFAULT_CONVENTION) -> np.ndarray:
    """Pixels of slice ``z`` at or above the convention's threshold on the soft series outside the reference
    labels (bool (h, w)): what a level model must leave at level 0."""
    return dense_non_coronary(rec.soft_hu[z], rec.labels[z], convention.threshold_hu)


def level_arch(hp: LevelHyper) -> LevelArch:
    """The architecture record of a run's hyper-parameters."""
    return LevelArch(hp.backbone, tuple(hp.channels), hp.norm, hp.calcium_window)


def _sample(rec: PairRecord, rng: np.random.Generator, hp: LevelHyper) -> tuple[np.ndarray, np.ndarray]:
    size = hp.patch
    z, cy, cx = choose_window(rec.levels, rec.positive, lambda k: dense_pixels(rec, k), rng, size,
                              hp.positive_fraction, hp.negative_fraction)
    source = rec.sharp_hu if rng.random() < hp.sharp_fraction else rec.soft_hu
    return window(source[z], cy, cx, size, -1000), window(rec.levels[z], cy, cx, size, 0)


def _batch(records: list[PairRecord], weights: np.ndarray, rng: np.random.Generator, hp: LevelHyper
           ) -> tuple[torch.Tensor, torch.Tensor]:
    his, levs = zip(*(_sample(records[int(rng.choice(len(records), p=weights))], rng, hp)
                      for _ in range(hp.batch_size)))
    return slices_to_input(np.stack(his), hp.calcium_window), torch.from_numpy(np.stack(levs).astype(np.int64))[:, None]


@dataclass
class LevelCounts:
    """Pooled per-level pixel counts (levels 1..4) on the nominal boxes."""

    tp: np.ndarray
    fp: np.ndarray
    fn: np.ndarray

    @classmethod
    def empty(cls) -> LevelCounts:
        return cls(np.zeros(N_LEVELS, np.int64), np.zeros(N_LEVELS, np.int64), np.zeros(N_LEVELS, np.int64))

    def add(self, pred: np.ndarray, ref: np.ndarray) -> None:
        for k in range(1, N_LEVELS):
            p, r = pred == k, ref == k
            self.tp[k] += int((p & r).sum())
            self.fp[k] += int((p & ~r).sum())
            self.fn[k] += int((~p & r).sum())
        p, r = pred > 0, ref > 0
        self.tp[0] += int((p & r).sum())
        self.fp[0] += int((p & ~r).sum())
        self.fn[0] += int((~p & r).sum())

    def dice(self) -> dict:
        """Per-level Dice (1..4), their mean (``mean_level``: the seed's figure) and the calcium (level >= 1) Dice."""
        d = [float(2 * t / (2 * t + f + n)) if (2 * t + f + n) else 1.0 for t, f, n in zip(self.tp, self.fp, self.fn)]
        return {"mean_level": float(np.mean(d[1:])), "calcium": d[0], **{f"level_{k}": d[k] for k in range(1, 5)}}


def _nominal(rec: PairRecord) -> tuple[int, int, int, int, int, int]:
    y0, y1, x0, x1 = rec.inner
    return (0, rec.sharp_hu.shape[0], y0, y1, x0, x1)


def evaluate_pairs(model: LevelPredictor, records: list[PairRecord], convention: AgatstonConvention
                   ) -> tuple[LevelCounts, list[dict]]:
    """Level Dice on the sharp series and one row per pair: robust score of the sharp (and soft) series, the
    classic score of the sharp series inside the reference labels (the seed's baseline) and the soft reference."""
    counts = LevelCounts.empty()
    rows = []
    origin, direction = np.zeros(3), np.eye(3)
    for rec in records:
        pred_sharp = model.predict_box(rec.sharp_hu, _nominal(rec))
        pred_soft = model.predict_box(rec.soft_hu, _nominal(rec))
        y0, y1, x0, x1 = rec.inner
        counts.add(pred_sharp[:, y0:y1, x0:x1], rec.levels[:, y0:y1, x0:x1])
        sp = rec.spacing_zyx
        rows.append({
            "participant": rec.participant, "sharp_series": rec.sharp.series_key, "kvp": rec.sharp.kvp,
            "reference_soft": robust_score(rec.levels, sp, origin, direction, convention).total.agatston,
            "robust_sharp": robust_score(pred_sharp, sp, origin, direction, convention).total.agatston,
            "robust_soft": robust_score(pred_soft, sp, origin, direction, convention).total.agatston,
            "classic_sharp": score_scan(rec.sharp_hu, sp, origin, direction, rec.labels,
                                        convention=convention).total.agatston,
        })
    return counts, rows


def level_metrics(counts: LevelCounts, rows: list[dict]) -> dict:
    """Dice on the level maps and the robust/classic scores of the sharp series against the soft reference."""
    f = pd.DataFrame(rows)
    ref = f["reference_soft"].to_numpy(float)

    def brief(values: np.ndarray) -> dict:
        a = agreement(values, ref)
        return {k: a[k] for k in ("n", "icc", "icc_log", "five_class_accuracy", "five_class_kappa",
                                  "four_class_accuracy", "cac_drs_accuracy", "ba_log_mean_diff")} | \
            {"five_class_confusion": a["confusion"]["five_class"]}

    return {"dice": counts.dice(), "robust_sharp_vs_soft_reference": brief(f["robust_sharp"].to_numpy(float)),
            "classic_sharp_vs_soft_reference": brief(f["classic_sharp"].to_numpy(float)),
            "robust_soft_vs_soft_reference": brief(f["robust_soft"].to_numpy(float))}


def training_lesions(model: LevelPredictor, train: list[PairRecord]) -> tuple[np.ndarray, np.ndarray]:
    """The lesions (components of level >= 1) the model predicts on the training pairs' boxes, sharp and soft
    series both (the model is trained on both): features (n, 4) and spurious flags (n,) against the reference
    levels (:func:`cacflow.training.lesion_filter.box_lesions`)."""
    out = []
    for rec in train:
        y0, y1, x0, x1 = rec.inner
        for hu in (rec.sharp_hu, rec.soft_hu):
            levels, probability = model.level_outputs(hu[:, y0:y1, x0:x1])
            out.append(box_lesions(levels > 0, probability, rec.levels[:, y0:y1, x0:x1]))
    return stack_lesions(out)


def choose_lesion_threshold(model: LevelPredictor, val: list[PairRecord], convention: AgatstonConvention
                            ) -> tuple[float | None, list[dict]]:
    """The threshold of ``model.lesion_filter`` chosen on the validation pairs by the robust score of the sharp
    series against the soft reference (:func:`cacflow.training.lesion_filter.choose_threshold`; the network runs
    once per pair)."""
    origin, direction = np.zeros(3), np.eye(3)
    outputs = [model.level_outputs(rec.sharp_hu[:, rec.inner[0]:rec.inner[1], rec.inner[2]:rec.inner[3]])
               for rec in val]
    reference = np.array([robust_score(rec.levels, rec.spacing_zyx, origin, direction, convention).total.agatston
                          for rec in val])

    def evaluate(threshold: float) -> dict:
        scores = [robust_score(label_box(rec.sharp_hu, _nominal(rec),
                                         lambda _, lv=levels, p=probability: model.filter_levels(lv, p, threshold)),
                               rec.spacing_zyx, origin, direction, convention).total.agatston
                  for rec, (levels, probability) in zip(val, outputs)]
        a = agreement(np.array(scores), reference)
        return {k: float(a[k]) for k in ("five_class_kappa", "five_class_accuracy", "zero_calcium_specificity",
                                         "any_calcium_sensitivity", "icc")}

    return choose_threshold(evaluate)


def initial_state(hp: LevelHyper) -> tuple[LevelHyper, dict | None, dict | None]:
    """The run's hyper-parameters and starting weights when ``hp.init_from`` names a level checkpoint.

    The checkpoint's architecture (backbone, channels, norm, calcium window) replaces the run's,
    since its weights only fit that; returns (hyper-parameters, state dict, provenance for the model card), or
    (hp, None, None) when training from scratch. The lesion filter is not carried over: the run fits its own."""
    if not hp.init_from:
        return hp, None, None
    payload, origin = starting_checkpoint(hp.init_from, KIND, "training.calcium_levels.init_from")
    arch = LevelPredictor.read_arch(payload["arch"])
    hp = replace(hp, backbone=arch.backbone, channels=tuple(arch.channels), norm=arch.norm,
                 calcium_window=arch.calcium_window)
    return hp, payload["state"], origin


def train_level_net(train: list[PairRecord], val: list[PairRecord], hp: LevelHyper, device: torch.device,
                    rng: np.random.Generator, convention: AgatstonConvention, init_state: dict | None = None
                    ) -> tuple[torch.nn.Module, dict]:
    """Train one backbone (from ``init_state`` when given, else from scratch); the state of the epoch with the best
    validation mean level Dice is kept, the starting weights counting as epoch -1."""
    check_shares(hp, "training.calcium_levels")
    from monai.losses import DiceLoss

    arch = level_arch(hp)
    net = LevelPredictor.build(arch)
    if init_state is not None:
        net.load_state_dict(init_state)
    net = net.to(device)
    if device.type == "cpu":
        net = net.to(memory_format=torch.channels_last)
    dice_loss = DiceLoss(to_onehot_y=True, softmax=True, include_background=False, batch=hp.dice_batch)
    sizes = np.array([r.sharp_hu.shape[0] for r in train], dtype=np.float64)
    weights = sizes / sizes.sum()

    def loss_fn(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return (torch.nn.functional.cross_entropy(out, y[:, 0]) + dice_loss(out, y)
                + information_gain_loss(out, y, hp.igl_alpha))

    def val_dice() -> float:
        model = LevelPredictor(net, arch, {"kind": "calcium_levels", "weights_sha256": "training"}, device)
        return evaluate_pairs(model, val[:hp.val_pairs], convention)[0].dice()["mean_level"]

    engine = Engine(net, torch.optim.AdamW(net.parameters(), lr=hp.learning_rate), loss_fn, device, forward=logits)
    return engine.fit(batches_from(lambda: _batch(train, weights, rng, hp)),
                      max(1, hp.samples_per_epoch // hp.batch_size), hp.max_epochs, hp.patience,
                      Validation(val_dice, "val_mean_level_dice", higher_is_better=True), f"levels {hp.backbone}",
                      score_start=init_state is not None)
