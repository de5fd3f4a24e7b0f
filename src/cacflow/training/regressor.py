"""Training the regression ConvNet on axial slices cropped to the heart box (seed 003).

Each series is cropped once to its heart box (chosen exactly as the pipeline chooses it,
:func:`cacflow.models.heart_box.choose_heart_box`) widened by the jitter margin. A training sample is one slice
whose in-plane box edges are moved independently by up to ``jitter_mm`` (translation and size augmentation; no
intensity change, no flips: the score depends on HU and on which side the vessels are). Its target is computed by
the scoring library on exactly that crop, so a lesion cut by the crop edge counts as much as is visible. Half of
the samples are slices with reference calcium (balanced sampling).

Loss: mean absolute error on the encoded targets, ``ln(1 + y)`` (the paper's error measure and its third
experiment's target; :data:`cacflow.models.regression.TARGET_TRANSFORM`), for both outputs. Model selection per
epoch on the validation scans' mean |ln(1 + predicted) - ln(1 + reference)| of the Agatston total (a slice counting
from the convention's minimum). A run trains its stages in order, each continuing from the best weights of the one
before (:class:`RegressorHyper`). A slice counts 0 below a per-slice floor chosen on the same validation scans
(:func:`choose_slice_floor`) and stored with the weights.
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
from cacflow.models.regression import (
    INPUT_SIZE,
    RegressionNet,
    check_target_transform,
    encode_targets,
    slices_to_input,
)
from cacflow.scoring.agatston import AgatstonConvention
from cacflow.scoring.regression_rule import regression_totals
from cacflow.training.common import best_by_strata, starting_checkpoint
from cacflow.training.data import LabelledSeries, load_many, slice_targets, widened_crop
from cacflow.training.engine import SCHEDULES, Engine, Validation, batches_from

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RegressorStage:
    """One stage of a regressor run: ``max_epochs`` epochs at ``learning_rate`` (annealed by the run's schedule),
    stopping after ``patience`` epochs without a better validation log-MAE."""

    learning_rate: float
    max_epochs: int
    patience: int


#: The shipped recipe: 40 epochs from scratch at 2e-3, then 36 more from that stage's best weights at 1e-3 (the
#: continued stage raised test κ 0.89 -> 0.95 on the phantom; ``docs/decisions/regressor-options-not-adopted.md``).
SHIPPED_STAGES: tuple[RegressorStage, ...] = (RegressorStage(2e-3, 40, 12), RegressorStage(1e-3, 36, 12))


@dataclass(frozen=True)
class RegressorHyper:
    """Hyper-parameters of a regressor run (recorded in the model card). The run trains its ``stages`` in order,
    each continuing from the best weights of the one before (the first from ``init_from``, or from scratch)."""

    widths: tuple[int, ...] = (8, 16, 32, 32, 64, 64)
    hidden: tuple[int, int] = (128, 64)
    batch_size: int = 64
    samples_per_epoch: int = 6144
    schedule: str = "cosine"  # per stage: "cosine" anneals the rate to 0 over the stage's max_epochs; "constant"
    positive_fraction: float = 0.5
    jitter_mm: float = 8.0
    seed: int = 0
    stages: tuple[RegressorStage, ...] = SHIPPED_STAGES
    #: A regressor checkpoint directory the first stage starts from (fine-tuning, or continuing a run); "" trains
    #: from scratch. Its architecture is kept (see :func:`initial_state`).
    init_from: str = ""

    def __post_init__(self) -> None:
        stages = tuple(s if isinstance(s, RegressorStage) else RegressorStage(**s) for s in self.stages)
        object.__setattr__(self, "stages", stages)
        if not stages:
            raise ValueError("training.regressor.stages: give at least one stage")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"training.regressor.schedule {self.schedule!r}: use one of {', '.join(SCHEDULES)}")


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
           weights: np.ndarray) -> tuple[tuple[torch.Tensor, torch.Tensor], torch.Tensor]:
    """A training batch: ((slices (n, 1, 256, 256), voxel sizes (n, 3) mm), encoded targets (n, 2))."""
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
    y = encode_targets(np.stack(ys))
    return (torch.stack(xs), torch.tensor(vox, dtype=torch.float32)), torch.from_numpy(y)


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

    The checkpoint's architecture (widths, hidden) replaces the run's, since its weights only fit it. Returns
    (hyper-parameters, state dict, provenance for the model card), or (hp, None, None) when training from scratch.
    """
    if not hp.init_from:
        return hp, None, None
    payload, origin = starting_checkpoint(hp.init_from, "regressor", "training.regressor.init_from")
    check_target_transform(payload["transform"], f"training.regressor.init_from: {hp.init_from}")
    arch = payload["arch"]
    hp = replace(hp, widths=tuple(arch["widths"]), hidden=tuple(arch["hidden"]))
    return hp, payload["state"], origin


def train_stage(train: list[CropRecord], val: list[CropRecord], hp: RegressorHyper, stage: RegressorStage,
                device: torch.device, rng: np.random.Generator, convention: AgatstonConvention,
                init_state: dict | None = None) -> tuple[RegressionNet, dict]:
    """Train one stage (from ``init_state`` when given, else from scratch) with Adam and an L1 loss on the encoded
    targets; the state of the epoch with the lowest validation log-MAE (:func:`selection_figure`) is kept, the
    starting weights counting as epoch -1."""
    net = RegressionNet(hp.widths, hp.hidden)
    if init_state is not None:
        net.load_state_dict(init_state)
    net = net.to(device)
    if device.type == "cpu":
        net = net.to(memory_format=torch.channels_last)
    sizes = np.array([r.hu.shape[0] for r in train], dtype=np.float64)
    weights = sizes / sizes.sum()
    val_ref = np.array([r.reference_agatston for r in val])
    val_dz = [r.spacing_zyx[0] for r in val]
    regressor = SliceRegressor(net, {"kind": "regressor", "weights_sha256": "training"}, device)

    def val_log_mae() -> float:
        return selection_figure(raw_predictions(regressor, val), val_dz, val_ref, convention)

    engine = Engine(net, torch.optim.Adam(net.parameters(), lr=stage.learning_rate, betas=(0.9, 0.999)),
                    torch.nn.functional.l1_loss, device, schedule=hp.schedule)
    return engine.fit(batches_from(lambda: _batch(train, rng, hp, convention, weights)),
                      max(1, hp.samples_per_epoch // hp.batch_size), stage.max_epochs, stage.patience,
                      Validation(val_log_mae, "val_log_mae", higher_is_better=False),
                      f"regressor (lr {stage.learning_rate:g})", score_start=init_state is not None)
