"""Training the regression ConvNet on axial slices cropped to the heart box (seed 003).

Each series is cropped once to its heart box (chosen exactly as the pipeline chooses it,
:func:`cacflow.models.heart_box.choose_heart_box`) widened by the jitter margin. A training sample is one slice
whose in-plane box edges are moved independently by up to ``jitter_mm`` (translation and size augmentation; no
intensity change, no flips: the score depends on HU and on which side the vessels are). Its target is computed by
the scoring library on exactly that crop, so a lesion cut by the crop edge counts as much as is visible. Half of
the samples are slices with reference calcium (balanced sampling).

Loss: mean absolute error on the encoded targets (the paper's error measure) for both outputs. Model selection per
epoch on the validation scans' mean |ln(1 + predicted) - ln(1 + reference)| of the Agatston total, and between the
raw and the log target by the same figure (a slice counting from the convention's minimum). A slice counts 0 below
a per-slice floor chosen on the same validation scans (:func:`choose_slice_floor`) for the chosen model and stored
with its weights.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

import numpy as np
import torch

from cacflow.evaluation.agreement import agreement
from cacflow.imaging.resample import ZGrid
from cacflow.models.heart_box import choose_heart_box
from cacflow.models.predict import HeartLocalizer, SliceRegressor
from cacflow.models.regression import INPUT_SIZE, RegressionNet, encode_targets, slices_to_input
from cacflow.scoring.agatston import AgatstonConvention
from cacflow.scoring.regression_rule import regression_totals
from cacflow.training.common import (
    EarlyStopping,
    Timer,
    best_by_strata,
    starting_checkpoint,
    to_device,
    train_autocast,
)
from cacflow.training.data import LabelledSeries, load_many, slice_targets, widened_crop

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RegressorHyper:
    """Hyper-parameters of a regressor run (recorded in the model card)."""

    widths: tuple[int, ...] = (8, 16, 32, 32, 64, 64)
    hidden: tuple[int, int] = (128, 64)
    learning_rate: float = 2e-3
    batch_size: int = 64
    max_epochs: int = 24
    patience: int = 8
    samples_per_epoch: int = 4096
    schedule: str = "cosine"  # "cosine": learning rate annealed to 0 over max_epochs; "constant"
    positive_fraction: float = 0.5
    jitter_mm: float = 8.0
    transforms: tuple[str, ...] = ("log", "raw")
    seed: int = 0
    #: A regressor checkpoint directory to start from (fine-tuning, or continuing a run with a new schedule);
    #: "" trains from scratch. Its architecture and target transform are kept (see :func:`initial_state`).
    init_from: str = ""


@dataclass
class CropRecord:
    """A series cropped to its (widened) heart box: HU and labels, the nominal box inside the crop, reference."""

    series: LabelledSeries
    hu: np.ndarray  # int16 (z, h, w)
    labels: np.ndarray  # uint8 (z, h, w)
    inner: tuple[int, int, int, int]  # nominal in-plane box (y0, y1, x0, x1) in crop coordinates
    spacing_zyx: tuple[float, float, float]
    positive: np.ndarray  # indices of slices with reference calcium
    reference_agatston: float  # the whole scan's reference (labels anywhere)
    reference_volume: float
    box_method: str


def load_crops(series: list[LabelledSeries], localizer: HeartLocalizer, grid: ZGrid,
               convention: AgatstonConvention, margin_mm: float) -> list[CropRecord]:
    """Crop each labelled series to its pipeline heart box widened by ``margin_mm`` in-plane."""
    out = []
    for s, arr in load_many(series, grid, convention):
        choice = choose_heart_box(localizer, arr.hu, arr.spacing_zyx, np.asarray(arr.origin), arr.direction)
        if choice.box_zyx is None:
            log.warning("series %s: no heart box (%s); left out of regressor training", s.series_key, choice.reason)
            continue
        crop, inner = widened_crop(choice.box_zyx, arr.spacing_zyx, arr.hu.shape, margin_mm)
        hu = np.ascontiguousarray(arr.hu[crop])
        labels = np.ascontiguousarray(arr.labels[crop])
        positive = np.nonzero((labels > 0).any(axis=(1, 2)))[0]
        total = arr.per_slice.sum(axis=0)
        out.append(CropRecord(s, hu, labels, inner, arr.spacing_zyx, positive,
                              float(total[0]), float(total[1]), str(choice.method)))
    return out


def _sample(rec: CropRecord, z: int, rng: np.random.Generator, jitter_mm: float, convention: AgatstonConvention
            ) -> tuple[np.ndarray, np.ndarray]:
    """One jittered slice crop (h, w <= 256) and its [Agatston, volume] target on exactly that crop."""
    y0, y1, x0, x1 = rec.inner
    h, w = rec.hu.shape[1:]
    jy, jx = (int(round(jitter_mm / sp)) for sp in rec.spacing_zyx[1:])
    a0 = int(np.clip(y0 + rng.integers(-jy, jy + 1), 0, h - 1))
    a1 = int(np.clip(y1 + rng.integers(-jy, jy + 1), a0 + 1, h))
    b0 = int(np.clip(x0 + rng.integers(-jx, jx + 1), 0, w - 1))
    b1 = int(np.clip(x1 + rng.integers(-jx, jx + 1), b0 + 1, w))
    if a1 - a0 > INPUT_SIZE:
        c = (a0 + a1) // 2
        a0, a1 = c - INPUT_SIZE // 2, c + INPUT_SIZE // 2
    if b1 - b0 > INPUT_SIZE:
        c = (b0 + b1) // 2
        b0, b1 = c - INPUT_SIZE // 2, c + INPUT_SIZE // 2
    hu = rec.hu[z, a0:a1, b0:b1]
    lab = rec.labels[z, a0:a1, b0:b1]
    if lab.any():
        target = slice_targets(hu[None], rec.spacing_zyx, lab[None], convention)[0]
    else:
        target = np.zeros(2)
    return hu, target


def _batch(records: list[CropRecord], rng: np.random.Generator, hp: RegressorHyper, convention: AgatstonConvention,
           transform: str, weights: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    xs, ys, vox = [], [], []
    for _ in range(hp.batch_size):
        rec = records[int(rng.choice(len(records), p=weights))]
        if rng.random() < hp.positive_fraction and len(rec.positive):
            z = int(rng.choice(rec.positive))
        else:
            z = int(rng.integers(0, rec.hu.shape[0]))
        hu, target = _sample(rec, z, rng, hp.jitter_mm, convention)
        xs.append(slices_to_input(hu[None])[0])
        ys.append(target)
        vox.append(rec.spacing_zyx)
    y = encode_targets(np.stack(ys), transform)
    return torch.stack(xs), torch.from_numpy(y), torch.tensor(vox, dtype=torch.float32)


#: Per-slice floors (Agatston units) a training run tries on its validation scans; 0 is the convention's minimum.
FLOOR_CANDIDATES: tuple[float, ...] = (0.0, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0, 5.0)


def raw_predictions(regressor: SliceRegressor, records: list[CropRecord]) -> list[np.ndarray]:
    """Each cropped series' raw per-slice [Agatston, volume mm³] predictions on its nominal box (no rule applied)."""
    out = []
    for rec in records:
        y0, y1, x0, x1 = rec.inner
        raw, _, _ = regressor.predict_box(rec.hu, rec.spacing_zyx, (0, rec.hu.shape[0], y0, y1, x0, x1))
        out.append(raw)
    return out


def scan_totals(raw: list[np.ndarray], records: list[CropRecord], convention: AgatstonConvention,
                floor_agatston: float) -> np.ndarray:
    """(n, 2) [Agatston, volume] totals of the series' raw per-slice predictions under the convention and a
    per-slice floor (as :meth:`SliceRegressor.score` scores a scan)."""
    out = [regression_totals(r, rec.spacing_zyx[0], convention, floor_agatston) for r, rec in zip(raw, records)]
    return np.array(out, dtype=np.float64).reshape(-1, 2)


def scan_predictions(regressor: SliceRegressor, records: list[CropRecord], convention: AgatstonConvention
                     ) -> np.ndarray:
    """(n, 2) predicted [Agatston, volume] totals of cropped series, scored on their nominal boxes under the
    convention and the regressor's per-slice floor."""
    return scan_totals(raw_predictions(regressor, records), records, convention, regressor.slice_floor)


def choose_slice_floor(raw: list[np.ndarray], spacing_z_mm: list[float], reference: np.ndarray,
                       convention: AgatstonConvention, candidates: tuple[float, ...] = FLOOR_CANDIDATES
                       ) -> tuple[float, list[dict]]:
    """The per-slice floor (Agatston units) whose scan totals agree best with the reference on validation scans.

    ``raw``: each scan's raw per-slice predictions (n_i, 2); ``reference``: their reference Agatston totals. Best
    means the highest five-class linearly weighted κ, then the highest five-class accuracy; among equals the lowest
    floor (the one that drops the least predicted calcium). Returns the floor and one row per candidate (floor,
    κ, accuracy, zero-calcium specificity, any-calcium sensitivity) for the model card.
    """
    reference = np.asarray(reference, dtype=np.float64)
    rows = []
    for floor in candidates:
        totals = np.array([regression_totals(r, dz, convention, floor)[0] for r, dz in zip(raw, spacing_z_mm)])
        a = agreement(totals, reference)
        rows.append({"floor_agatston": float(floor), **{k: float(a[k]) for k in (
            "five_class_kappa", "five_class_accuracy", "zero_calcium_specificity", "any_calcium_sensitivity")}})
    return best_by_strata(rows, lambda row: -row["floor_agatston"])["floor_agatston"], rows


def log_mae(pred: np.ndarray, ref: np.ndarray) -> float:
    """Mean |ln(1 + predicted) - ln(1 + reference)|: the model-selection figure."""
    return float(np.mean(np.abs(np.log1p(pred) - np.log1p(ref))))


def selection_figure(raw: list[np.ndarray], spacing_z_mm: list[float], reference: np.ndarray,
                     convention: AgatstonConvention) -> float:
    """An epoch's validation figure: :func:`log_mae` of the scan totals of its raw per-slice outputs, a slice
    counting from the convention's minimum."""
    totals = np.array([regression_totals(r, dz, convention, 0.0)[0] for r, dz in zip(raw, spacing_z_mm)])
    return log_mae(totals, np.asarray(reference, dtype=np.float64))


def initial_state(hp: RegressorHyper) -> tuple[RegressorHyper, dict | None, dict | None]:
    """The run's hyper-parameters and starting weights when ``hp.init_from`` names a regressor checkpoint.

    The checkpoint's architecture (widths, hidden) and target transform replace the run's, since its weights only
    fit those. Returns (hyper-parameters, state dict, provenance for the model card), or (hp, None, None) when
    training from scratch.
    """
    if not hp.init_from:
        return hp, None, None
    payload, origin = starting_checkpoint(hp.init_from, "regressor", "training.regressor.init_from")
    arch = payload["arch"]
    hp = replace(hp, widths=tuple(arch["widths"]), hidden=tuple(arch["hidden"]), transforms=(payload["transform"],))
    return hp, payload["state"], {**origin, "transform": payload["transform"]}


def train_one(train: list[CropRecord], val: list[CropRecord], hp: RegressorHyper, transform: str,
              device: torch.device, rng: np.random.Generator, convention: AgatstonConvention,
              init_state: dict | None = None) -> tuple[RegressionNet, dict]:
    """Train one regressor with one target transform (from ``init_state`` when given, else from scratch); the
    state of the best validation epoch is kept, the starting weights counting as epoch -1."""
    net = RegressionNet(hp.widths, hp.hidden)
    if init_state is not None:
        net.load_state_dict(init_state)
    net = net.to(device)
    if device.type == "cpu":
        net = net.to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(net.parameters(), lr=hp.learning_rate, betas=(0.9, 0.999))
    steps = max(1, hp.samples_per_epoch // hp.batch_size)
    if hp.schedule not in ("cosine", "constant"):
        raise ValueError(f"regressor schedule {hp.schedule!r}: use 'cosine' or 'constant'")
    sched = (torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=hp.max_epochs * steps)
             if hp.schedule == "cosine" else None)
    stop = EarlyStopping(hp.patience)
    sizes = np.array([r.hu.shape[0] for r in train], dtype=np.float64)
    weights = sizes / sizes.sum()
    val_ref = np.array([r.reference_agatston for r in val])
    val_dz = [r.spacing_zyx[0] for r in val]
    timer = Timer()

    def val_score() -> float:
        net.eval()
        raw = raw_predictions(SliceRegressor(net, {"kind": "regressor", "weights_sha256": "training"}, transform,
                                             device), val)
        net.train()
        return selection_figure(raw, val_dz, val_ref, convention)

    if init_state is not None:  # the starting weights are epoch -1: a continued run never ends worse on validation
        score = val_score()
        log.info("regressor %s start: val log-MAE %.4f", transform, score)
        stop.update(-1, score, net)
    for epoch in range(hp.max_epochs):
        net.train()
        running = 0.0
        for _ in range(steps):
            x, y, vox = _batch(train, rng, hp, convention, transform, weights)
            with train_autocast(device):
                out = net(to_device(x, device), vox.to(device)).float()
            loss = torch.nn.functional.l1_loss(out, y.to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if sched is not None:
                sched.step()
            running += loss.item()
        score = val_score()
        log.info("regressor %s epoch %d: train L1 %.4f, val log-MAE %.4f (%.0f s)", transform, epoch,
                 running / steps, score, timer())
        if stop.update(epoch, score, net, train=running / steps):
            break
    net.load_state_dict(stop.best_state)
    return net.eval(), {"best_epoch": stop.best_epoch, "best_val_log_mae": stop.best, "history": stop.history}

