"""Training the vessel-specific calcium segmentation ConvNets (seed 001: U-Net++, a plain U-Net to compare).

Data: the labelled series cropped to their pipeline heart boxes (:func:`cacflow.training.regressor.load_crops`,
the same crops the regressor learns from). A sample is a ``patch`` x ``patch`` window of one axial slice of the
scoring grid; a share ``positive_fraction`` of the samples is centred (up to a third of the patch off) on a
reference calcium pixel, the rest fall anywhere in a random slice (balanced sampling of slices with and without
calcium). With ``position`` the input also carries each window pixel's place in the nominal heart box
(:func:`cacflow.models.box_position.position_channels`; the crop's slices are the box's slices, its in-plane
margin lies outside -1..1). The target is the reference vessel label map gated at 130 HU (what the network can
see in its second input channel); pixels outside the crop are air and background. No flips or rotations: which side a
vessel lies on is what tells LAD from RCA.

Loss: focal loss (alpha 0.5, gamma 3, MONAI's :class:`~monai.losses.FocalLoss` over the softmax of the five
classes). Model selection per epoch by the validation scans' vessel Dice (calcium Dice counting a voxel only when
its vessel is right, :mod:`cacflow.evaluation.segmentation`), predicted as the pipeline predicts: whole axial
slices of the nominal heart box.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from cacflow.evaluation.agreement import agreement, agreement_table, icc_a1
from cacflow.evaluation.segmentation import SegmentationCounts, compare_masks
from cacflow.models.box_position import position_channels
from cacflow.models.segmentation import (
    CALCIUM_HU,
    SegmentationArch,
    VesselSegmenter,
    build_vessel_net,
    gate,
    label_box,
    logits,
    select_calcium,
    slices_to_input,
)
from cacflow.models.vessel_prior import VesselPrior, fit_vessel_prior
from cacflow.scoring.agatston import AgatstonConvention
from cacflow.scoring.masks import hu_region
from cacflow.scoring.scan import VESSELS, score_scan
from cacflow.scoring.strata import SCHEMES
from cacflow.training.engine import Engine, Validation, batches_from
from cacflow.training.lesion_filter import box_lesions, choose_threshold, stack_lesions
from cacflow.training.regressor import CropRecord

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VesselSegHyper:
    """Hyper-parameters of a vessel segmentation run (recorded in the model card); the defaults are the shipped
    U-Net++'s, :data:`UNET_COMPARISON` the plain U-Net's."""

    features: tuple[int, ...] = (8, 8, 16, 32, 64, 8)  # the shipped U-Net++ (widths 16-128 reached Dice 0.55)
    patch: int = 96
    batch_size: int = 16
    learning_rate: float = 2e-3
    max_epochs: int = 24
    patience: int = 24
    samples_per_epoch: int = 2048
    positive_fraction: float = 0.5
    negative_fraction: float = 0.0  # windows centred near dense non-coronary tissue (hard negatives)
    focal_alpha: float = 0.5
    focal_gamma: float = 3.0
    val_series: int = 12  # validation scans predicted after each epoch (all of them in the final evaluation)
    position: bool = True  # three box-position input channels (z, y, x) after the seed's two
    norm: str = "batch"  # keeps the box position (instance normalisation subtracts it)
    prior_bins: int = 12  # vessel prior cells per axis (models.vessel_prior); 0: each voxel keeps its argmax vessel
    prior_sigma_bins: float = 1.0  # Gaussian smoothing of the prior's counts, in cells
    prior_weight: float = 1.0  # weight of the prior's log-probability against the network's
    lesion_filter_k: int = 15  # neighbours of the lesion filter (models.lesion_filter); 0: no filter
    # calcium probability candidates (models.segmentation.select_calcium; None: argmax alone), chosen on validation
    # together with the lesion filter's threshold
    calcium_probabilities: tuple[float | None, ...] = (None, 0.4, 0.3, 0.2)
    seed: int = 0


#: The plain U-Net comparison model's recipe (``models/unet``): wider, shorter, on fewer validation scans.
UNET_COMPARISON = VesselSegHyper(features=(16, 16, 32, 64, 128, 16), max_epochs=16, patience=16,
                                 samples_per_epoch=1024, val_series=6)

#: Config section under ``training`` of each vessel architecture's hyper-parameters, and their defaults.
VESSEL_SECTIONS: dict[str, tuple[str, VesselSegHyper]] = {
    "unetpp": ("vessel_segmentation", VesselSegHyper()), "unet": ("unet_comparison", UNET_COMPARISON)}


def window(a: np.ndarray, cy: int, cx: int, size: int, fill: float) -> np.ndarray:
    """``size`` x ``size`` window of a 2-D array with its top-left at (cy, cx), ``fill`` outside."""
    out = np.full((size, size), fill, dtype=a.dtype)
    h, w = a.shape
    y0, x0 = max(0, cy), max(0, cx)
    y1, x1 = min(h, cy + size), min(w, cx + size)
    if y1 > y0 and x1 > x0:
        out[y0 - cy:y1 - cy, x0 - cx:x1 - cx] = a[y0:y1, x0:x1]
    return out


def patch_corner(foreground: np.ndarray, positive: np.ndarray, rng: np.random.Generator, size: int,
                 positive_fraction: float) -> tuple[int, int, int]:
    """(z, top, left) of a ``size`` x ``size`` training window in a cropped volume (z, h, w).

    With probability ``positive_fraction`` (and when ``positive``, the slices with foreground, is not empty) the
    window is centred, up to a third of its side off, on a random foreground pixel; otherwise it lies anywhere in
    a random slice. The balanced sampling of slices with and without calcium of both segmentation trainings."""
    if rng.random() < positive_fraction and len(positive):
        z = int(rng.choice(positive))
        ys, xs = np.nonzero(foreground[z])
        k = int(rng.integers(len(ys)))
        shift = size // 3
        cy = int(ys[k]) - size // 2 + int(rng.integers(-shift, shift + 1))
        cx = int(xs[k]) - size // 2 + int(rng.integers(-shift, shift + 1))
        return z, cy, cx
    z = int(rng.integers(foreground.shape[0]))
    h, w = foreground.shape[1:]
    cy = int(rng.integers(min(0, h - size), max(1, h - size + 1)))
    cx = int(rng.integers(min(0, w - size), max(1, w - size + 1)))
    return z, cy, cx


def dense_non_coronary(hu: np.ndarray, labels: np.ndarray, threshold_hu: float = CALCIUM_HU) -> np.ndarray:
    """Pixels at or above the calcium threshold outside the reference labels (bool, the shape of ``hu``): bone,
    aortic and valve calcium, what a coronary calcium model must leave as background."""
    return (hu >= threshold_hu) & (labels == 0)


def choose_window(foreground: np.ndarray, positive: np.ndarray, dense: Callable[[int], np.ndarray],
                  rng: np.random.Generator, size: int, positive_fraction: float, negative_fraction: float
                  ) -> tuple[int, int, int]:
    """(z, top, left) of a training window: with probability ``negative_fraction`` centred near a pixel of
    ``dense(z)`` (the hard negatives, :func:`dense_non_coronary`) of a random slice ``z`` (anywhere in it when it has
    none); otherwise :func:`patch_corner`, with the positive share rescaled so that the overall share of windows
    near ``foreground`` stays ``positive_fraction``."""
    if negative_fraction and rng.random() < negative_fraction:
        z = int(rng.integers(foreground.shape[0]))
        near = dense(z)
        _, cy, cx = patch_corner(near[None], np.array([0] if near.any() else [], dtype=int), rng, size, 1.0)
        return z, cy, cx
    return patch_corner(foreground, positive, rng, size, positive_fraction / (1.0 - negative_fraction))


def check_shares(hp, section: str) -> None:
    """Refuse window shares (``hp.positive_fraction``, ``hp.negative_fraction``) that are not parts of one whole."""
    pos, neg = hp.positive_fraction, hp.negative_fraction
    if not (0 <= neg < 1 and 0 <= pos <= 1 - neg):
        raise ValueError(f"{section}: positive_fraction ({pos}) and negative_fraction ({neg}) must be shares of one "
                         "whole (each >= 0, together <= 1, negative_fraction < 1)")


def sample_patch(rec: CropRecord, rng: np.random.Generator, hp: VesselSegHyper
                 ) -> tuple[np.ndarray, np.ndarray, torch.Tensor | None]:
    """One (HU, gated label, box-position channels or None) patch of ``hp.patch`` pixels from a cropped series."""
    size = hp.patch
    z, cy, cx = choose_window(rec.labels, rec.positive, lambda k: dense_non_coronary(rec.hu[k], rec.labels[k]), rng,
                              size, hp.positive_fraction, hp.negative_fraction)
    hu = window(rec.hu[z], cy, cx, size, -1000)
    lab = window(rec.labels[z], cy, cx, size, 0)
    pos = window_position(z, rec.hu.shape[0], cy, cx, size, rec.inner) if hp.position else None
    return hu, gate(lab, hu), pos


def window_position(z: int, depth: int, cy: int, cx: int, size: int, inner: tuple[int, int, int, int]
                    ) -> torch.Tensor:
    """Box-position channels (3, size, size) of a training window whose top-left pixel is (cy, cx) in slice ``z``
    of a crop ``depth`` slices deep, whose nominal heart box spans rows/columns ``inner`` (y0, y1, x0, x1) of the
    crop: the channels the scorer computes for the same pixels when it labels the whole box."""
    y0, y1, x0, x1 = inner
    return position_channels(np.array([z]), depth, (cy - y0, cx - x0), (size, size), (y1 - y0, x1 - x0))[0]


def _batch(records: list[CropRecord], weights: np.ndarray, rng: np.random.Generator, hp: VesselSegHyper
           ) -> tuple[torch.Tensor, torch.Tensor]:
    his, labs, poss = [], [], []
    for _ in range(hp.batch_size):
        hu, lab, pos = sample_patch(records[int(rng.choice(len(records), p=weights))], rng, hp)
        his.append(hu)
        labs.append(lab)
        poss.append(pos)
    x = slices_to_input(np.stack(his), torch.stack(poss) if hp.position else None)
    return x, torch.from_numpy(np.stack(labs).astype(np.int64))[:, None]


def predict_record(seg, rec: CropRecord) -> np.ndarray:
    """Predicted labels on the record's crop (z, h, w), predicted inside the nominal box only (any segmentation
    scorer with ``predict_box``)."""
    y0, y1, x0, x1 = rec.inner
    return seg.predict_box(rec.hu, (0, rec.hu.shape[0], y0, y1, x0, x1))


def evaluate_records(seg, records: list[CropRecord], convention: AgatstonConvention
                     ) -> tuple[SegmentationCounts, list[dict]]:
    """Pooled voxel/lesion counts and one row per scan (predicted and reference totals, and vessel scores) of the
    labels ``seg`` predicts (any segmentation scorer with ``predict_box``: :func:`evaluate_label_maps`)."""
    return evaluate_label_maps(seg.kind, records, (predict_record(seg, r) for r in records), convention)


def evaluate_label_maps(kind: str, records: list[CropRecord], label_maps: Iterable[np.ndarray],
                        convention: AgatstonConvention) -> tuple[SegmentationCounts, list[dict]]:
    """Pooled voxel/lesion counts and one row per scan of predicted label maps on the records' crops (z, h, w).

    ``kind`` (a model card's) says how a map is HU-scored (:func:`cacflow.scoring.masks.hu_region`); a model
    without vessel labels gets lesion detection by reference vessel and no predicted vessel scores."""
    counts = SegmentationCounts()
    rows = []
    origin, direction = np.zeros(3), np.eye(3)
    for rec, labels in zip(records, label_maps):
        region, vessel_aware = hu_region(kind, labels)
        region = region.astype(np.uint8)
        counts.add(compare_masks(rec.hu, rec.spacing_zyx, region, rec.labels, convention, vessel_aware))
        p = score_scan(rec.hu, rec.spacing_zyx, origin, direction, region, vessel_labels=vessel_aware,
                       convention=convention)
        r = score_scan(rec.hu, rec.spacing_zyx, origin, direction, rec.labels, vessel_labels=True,
                       convention=convention)
        rows.append({"series_key": rec.series.series_key, "kernel_class": rec.series.kernel_class,
                     "kvp": rec.series.kvp, "predicted_agatston": p.total.agatston,
                     "reference_agatston": rec.reference_agatston,
                     **{f"predicted_{v}": p.vessels[v].agatston for v in VESSELS.values() if vessel_aware},
                     **{f"reference_{v}": r.vessels[v].agatston for v in VESSELS.values()}})
    return counts, rows


def segmentation_metrics(counts: SegmentationCounts, rows: list[dict]) -> dict:
    """Calcium Dice, lesion detection per vessel, total agreement (ICC, strata, κ) and per-vessel ICC (vessel-aware
    models only; None otherwise)."""
    frame = pd.DataFrame(rows)
    pred, ref = frame["predicted_agatston"].to_numpy(float), frame["reference_agatston"].to_numpy(float)
    table = frame.assign(method_score=pred, reference_score=ref, kvp=[f"{v:g}" for v in frame["kvp"]],
                         reference_stratum=[SCHEMES["five_class"].label(v) for v in ref])
    vessel_aware = all(f"predicted_{v}" in frame for v in VESSELS.values())
    return {
        "calcium_dice": counts.dice, "vessel_dice": counts.vessel_dice if vessel_aware else None,
        "voxels": {"tp": counts.tp, "fp": counts.fp, "fn": counts.fn},
        "lesion_detection_rate": counts.detection_rate(), "reference_lesions": dict(counts.lesions),
        "agatston": agreement(pred, ref),
        "vessel_icc": ({v: icc_a1(frame[[f"predicted_{v}", f"reference_{v}"]].to_numpy(float))
                        for v in VESSELS.values()} if vessel_aware else None),
        "table": agreement_table(table, ["kernel_class", "kvp", "reference_stratum"]).to_dict(orient="records"),
    }


def fit_segmenter(net: torch.nn.Module, loss_fn, next_batch, wrap, val: list[CropRecord], hp, device: torch.device,
                  convention: AgatstonConvention, label: str, forward=logits, criterion: str = "dice"
                  ) -> tuple[torch.nn.Module, dict]:
    """Train a HU-scored segmentation scorer with Adam at ``hp.learning_rate`` under cosine annealing
    (:class:`~cacflow.training.engine.Engine`); after each epoch ``wrap(net)`` (the scorer the pipeline runs)
    predicts the first ``hp.val_series`` validation scans, and the epoch with the best ``criterion`` of their pooled
    counts (``"dice"``, calcium Dice, or ``"vessel_dice"`` for the vessel-aware models) is kept."""
    def val_dice() -> float:
        return getattr(evaluate_records(wrap(net), val[:hp.val_series], convention)[0], criterion)

    engine = Engine(net, torch.optim.Adam(net.parameters(), lr=hp.learning_rate), loss_fn, device, forward=forward)
    return engine.fit(batches_from(next_batch), max(1, hp.samples_per_epoch // hp.batch_size), hp.max_epochs,
                      hp.patience, Validation(val_dice, "val_dice", higher_is_better=True), label)


def box_labels(rec: CropRecord) -> np.ndarray:
    """The record's reference vessel labels gated at 130 HU, on its nominal heart box (z, y, x)."""
    y0, y1, x0, x1 = rec.inner
    return gate(rec.labels[:, y0:y1, x0:x1], rec.hu[:, y0:y1, x0:x1])


def fit_prior(train: list[CropRecord], hp: VesselSegHyper) -> VesselPrior | None:
    """The vessel prior of the training boxes' reference labels (None when ``hp.prior_bins`` is 0)."""
    if not hp.prior_bins:
        return None
    boxes = [box_labels(r) for r in train]
    if not any(b.any() for b in boxes):
        log.warning("vessel prior: no labelled calcium in the training boxes; the prior is uniform (each lesion "
                    "takes the network's vessel)")
    return fit_vessel_prior(boxes, hp.prior_bins, hp.prior_sigma_bins,
                            weight=hp.prior_weight)


def box_outputs(seg: VesselSegmenter, rec: CropRecord) -> tuple[np.ndarray, np.ndarray]:
    """The network's outputs on the record's nominal heart box: the mask (z, y, x) of voxels at or above 130 HU and
    the class log-probabilities (m, 5) there (:meth:`~cacflow.models.segmentation.VesselSegmenter.gated_outputs`);
    :func:`cacflow.models.segmentation.select_calcium` turns them into calcium at any calcium probability."""
    y0, y1, x0, x1 = rec.inner
    return seg.gated_outputs(rec.hu[:, y0:y1, x0:x1])


def training_lesions(seg: VesselSegmenter, train: list[CropRecord],
                     outputs: list[tuple[np.ndarray, np.ndarray]] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The lesions ``seg``'s network predicts on the training boxes at its calcium probability: features (n, 4)
    and spurious flags (n,) against the gated reference labels (:func:`cacflow.training.lesion_filter.box_lesions`).
    ``outputs``: the records' :func:`box_outputs` when already computed."""
    out = []
    for rec, gated in zip(train, outputs or (box_outputs(seg, r) for r in train)):
        calcium, log_probs = select_calcium(*gated, seg.calcium_probability)
        out.append(box_lesions(calcium, 1.0 - np.exp(log_probs[:, 0]), box_labels(rec)))
    return stack_lesions(out)


def validation_figures(seg: VesselSegmenter, val: list[CropRecord], convention: AgatstonConvention,
                       outputs: list[tuple[np.ndarray, np.ndarray]] | None = None
                       ) -> Callable[[float | None], dict]:
    """``evaluate(threshold)``: the validation figures of ``seg`` at its calcium probability with its lesion filter
    at ``threshold`` (None: the filter's own; ``math.inf`` keeps every lesion): κ, accuracy, zero-calcium
    specificity, any-calcium sensitivity, calcium Dice and detection. The network runs once per scan, here, or not
    at all when ``outputs`` (the records' :func:`box_outputs`) are given."""
    calcium = [select_calcium(*g, seg.calcium_probability) for g in (outputs or (box_outputs(seg, r) for r in val))]

    def evaluate(threshold: float | None) -> dict:
        maps = [label_box(rec.hu, (0, rec.hu.shape[0], *rec.inner),
                          lambda _, c=c, lp=log_probs: seg.label_calcium(c, lp, threshold))
                for rec, (c, log_probs) in zip(val, calcium)]
        m = segmentation_metrics(*evaluate_label_maps(seg.kind, val, maps, convention))
        return {**{k: float(m["agatston"][k]) for k in ("five_class_kappa", "five_class_accuracy",
                                                        "zero_calcium_specificity", "any_calcium_sensitivity")},
                "calcium_dice": float(m["calcium_dice"]), "lesion_detection_rate": m["lesion_detection_rate"]}

    return evaluate


def choose_lesion_threshold(seg: VesselSegmenter, val: list[CropRecord], convention: AgatstonConvention,
                            outputs: list[tuple[np.ndarray, np.ndarray]] | None = None
                            ) -> tuple[float | None, list[dict]]:
    """The threshold of ``seg.lesion_filter`` chosen on the validation scans at ``seg``'s calcium probability
    (:func:`cacflow.training.lesion_filter.choose_threshold` of :func:`validation_figures`); each candidate's row
    holds the figures."""
    return choose_threshold(validation_figures(seg, val, convention, outputs))


def train_vessel_net(arch: str, train: list[CropRecord], val: list[CropRecord], hp: VesselSegHyper,
                     device: torch.device, rng: np.random.Generator, convention: AgatstonConvention,
                     prior: VesselPrior | None = None) -> tuple[torch.nn.Module, dict]:
    """Train one architecture; the state of the epoch with the best validation vessel Dice (lesion vessels from
    ``prior`` when given, as the shipped scorer labels them) is kept."""
    from monai.losses import FocalLoss

    check_shares(hp, "training.vessel_segmentation")
    net = build_vessel_net(arch, hp.features, hp.position, hp.norm).to(device)
    if device.type == "cpu":
        net = net.to(memory_format=torch.channels_last)
    loss_fn = FocalLoss(to_onehot_y=True, use_softmax=True, gamma=hp.focal_gamma, alpha=hp.focal_alpha)
    weights = slice_weights(train)
    card = {"kind": "vessel_segmentation", "weights_sha256": "training"}
    spec = SegmentationArch(arch, hp.features, hp.position, hp.norm)
    return fit_segmenter(net, loss_fn, lambda: _batch(train, weights, rng, hp),
                         lambda n: VesselSegmenter(n, spec, card, device, prior=prior), val, hp,
                         device, convention, arch, criterion="vessel_dice")


def slice_weights(records: list[CropRecord]) -> np.ndarray:
    """Probability of drawing each record: proportional to its number of slices."""
    sizes = np.array([r.hu.shape[0] for r in records], dtype=np.float64)
    return sizes / sizes.sum()
