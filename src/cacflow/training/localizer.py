"""Training the heart localizer: one :class:`~cacflow.models.localizer.PlaneNet` per plane on canvas slices.

Targets come from the true heart mask (:func:`~cacflow.models.localizer.presence_targets`). Augmentation shifts a
slice in its plane by a few canvas voxels and, with ``appearance_probability``, changes its appearance
(:mod:`cacflow.training.appearance`: breasts, zoom, lung vessels, a table, a tissue HU remap); the answer "is the
heart in this slice" does not change. The localizer is the one model whose intensities may be altered: it never
reads a score off the HU. Each plane's network keeps the state of its best validation loss (binary cross-entropy)
and stops after ``patience`` epochs without improvement.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from cacflow.evaluation.localizer import localizer_metrics, nodule_probe_slices
from cacflow.imaging.resample import ZGrid
from cacflow.models.localizer import (
    CANVAS_SIZE,
    PLANES,
    LocalizerError,
    PlaneNet,
    box_from_probabilities,
    build_canvas,
    normalise_hu,
    presence_targets,
)
from cacflow.models.predict import HeartLocalizer
from cacflow.scoring.agatston import AgatstonConvention
from cacflow.training.appearance import SliceContext, augment_slice, body_box
from cacflow.training.batches import batch_rng, batch_stream, resolve_workers
from cacflow.training.common import to_device
from cacflow.training.data import LabelledSeries, SeriesArrays, load_many
from cacflow.training.engine import Engine, Validation

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LocalizerHyper:
    """Hyper-parameters of a localizer run (recorded in the model card)."""

    widths: tuple[int, ...] = (16, 32, 32, 64, 64)
    hidden: int = 64
    learning_rate: float = 1e-3
    batch_size: int = 64
    max_epochs: int = 20  # the appearance changes make validation noisier: longer runs, more patience
    patience: int = 6
    samples_per_epoch: int = 4096
    shift_voxels: int = 8
    #: probability of each appearance change of :func:`cacflow.training.appearance.augment_slice` (0: none)
    appearance_probability: float = 0.5
    seed: int = 0
    #: processes that build the training batches while the network trains (:mod:`cacflow.training.batches`);
    #: -1: auto (on CUDA the allocated CPUs but one, at most 8; on the CPU none). The batches, and so the run's
    #: result, are the same for every count.
    workers: int = -1


@dataclass
class CanvasRecord:
    series: LabelledSeries
    canvas: np.ndarray  # float16 HU (128, 128, 128)
    targets: np.ndarray  # (3, 128)
    body: tuple | None = None  # the body's canvas bounding box (lo, hi), computed when first needed

    def context(self, index: int) -> SliceContext:
        """Where slice ``index`` (of any plane) lies in this canvas, for :func:`augment_slice`."""
        if self.body is None:
            self.body = body_box(self.canvas)
        heart = np.nonzero(self.targets[0] > 0.5)[0]
        heart_z = float(heart.mean()) if len(heart) else self.canvas.shape[0] / 2.0
        return SliceContext(int(index), self.body[0], self.body[1], heart_z)


def load_canvases(series: list[LabelledSeries], grid: ZGrid, convention: AgatstonConvention) -> list[CanvasRecord]:
    """Canvases and presence targets of series that have a heart mask."""
    return [_canvas_record(s, arr) for s, arr in
            load_many([s for s in series if s.heart_path is not None], grid, convention, targets=False)]


def _canvas_record(series: LabelledSeries, arr: SeriesArrays) -> CanvasRecord:
    """The canvas and presence targets of one loaded series with a heart mask."""
    canvas, _, (heart,) = build_canvas(arr.hu, arr.spacing_zyx, arr.direction, masks=(arr.heart,))
    return CanvasRecord(series, canvas.astype(np.float16), presence_targets(heart))


def training_batch(records: list[CanvasRecord], plane: int, hp: LocalizerHyper, stream: int, index: int
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Training batch ``index`` of a plane's ``stream``: ``batch_size`` (record, slice) picks drawn uniformly,
    in-plane shifts of up to ``shift_voxels`` canvas voxels and the augmentation of :func:`_batch`, all drawn
    from :func:`~cacflow.training.batches.batch_rng` (stream, index). Input (n, 1, 128, 128), targets (n,)."""
    rng = batch_rng(stream, index)
    picks = np.stack([rng.integers(0, len(records), hp.batch_size),
                      rng.integers(0, records[0].canvas.shape[plane], hp.batch_size)], 1)
    shifts = rng.integers(-hp.shift_voxels, hp.shift_voxels + 1, (hp.batch_size, 2))
    return _batch(records, plane, picks, shifts, rng, hp)


def _batch(records: list[CanvasRecord], plane: int, picks: np.ndarray, shifts: np.ndarray | None,
           rng: np.random.Generator | None = None, hp: LocalizerHyper | None = None
           ) -> tuple[torch.Tensor, torch.Tensor]:
    """Slices ``picks`` ((record, index) pairs) of ``plane`` and their presence targets. With ``rng`` and ``hp``
    (training), each appearance change applies with probability ``appearance_probability``."""
    xs, ys = [], []
    for k, (i, j) in enumerate(picks):
        img = np.take(records[i].canvas, j, axis=plane).astype(np.float32)
        if hp is not None and rng is not None:  # training: augmented (validation slices are read as they are)
            img = augment_slice(img, PLANES[plane], rng, hp.appearance_probability, records[i].context(j))
        if shifts is not None:
            img = np.roll(img, tuple(shifts[k]), axis=(0, 1))
        xs.append(img)
        ys.append(float(records[i].targets[plane, j]))
    x = normalise_hu(torch.from_numpy(np.stack(xs)))[:, None]
    return x, torch.tensor(ys, dtype=torch.float32)


def _val_loss(net: PlaneNet, records: list[CanvasRecord], plane: int, device: torch.device) -> float:
    net.eval()
    total, n = 0.0, 0
    with torch.inference_mode():
        for i in range(len(records)):
            picks = np.array([(i, j) for j in range(records[i].canvas.shape[plane])])
            x, y = _batch(records, plane, picks, None)
            logits = net(to_device(x, device)).float().cpu()
            total += float(F.binary_cross_entropy_with_logits(logits, y, reduction="sum"))
            n += len(y)
    return total / max(n, 1)


def train_plane(plane: str, train: list[CanvasRecord], val: list[CanvasRecord], hp: LocalizerHyper,
                device: torch.device, rng: np.random.Generator) -> tuple[PlaneNet, dict]:
    """Train one plane's network (Adam at a constant learning rate, binary cross-entropy on slice presence; the
    epoch with the lowest validation BCE is kept); returns it in eval mode, and its history."""
    axis = PLANES.index(plane)
    net = PlaneNet(hp.widths, hp.hidden).to(device)
    if device.type == "cpu":
        net = net.to(memory_format=torch.channels_last)
    steps = max(1, hp.samples_per_epoch // hp.batch_size)
    stream = int(rng.integers(2**63))  # this network's batches; the next plane draws its own
    workers = resolve_workers(hp.workers, device)

    def make(index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return training_batch(train, axis, hp, stream, index)

    engine = Engine(net, torch.optim.Adam(net.parameters(), lr=hp.learning_rate),
                    F.binary_cross_entropy_with_logits, device, schedule="constant")
    validation = Validation(lambda: _val_loss(net, val, axis, device), "val_bce", higher_is_better=False)
    with batch_stream(make, steps * hp.max_epochs, workers, pin_memory=device.type == "cuda") as batches:
        net, history = engine.fit(batches, steps, hp.max_epochs, hp.patience, validation,
                                  f"localizer {plane} ({workers} batch worker processes)")
    return net, {**history, "batch_workers": workers}


def evaluate_localizer(localizer: HeartLocalizer, series: list[LabelledSeries], grid: ZGrid,
                       convention: AgatstonConvention, keep_canvases: list[CanvasRecord] | None = None
                       ) -> list[dict]:
    """Per-series box IoU, heart coverage and status of a localizer on labelled series (with heart masks).
    With ``keep_canvases``, each series' canvas record is appended to it as well (for :func:`nodule_probe`,
    without reading the volumes again)."""
    rows = []
    for s, arr in load_many([s for s in series if s.heart_path is not None], grid, convention, targets=False):
        if keep_canvases is not None:
            keep_canvases.append(_canvas_record(s, arr))
        hb = localizer.locate(arr.hu, arr.spacing_zyx, np.asarray(arr.origin), arr.direction)
        rows.append({"series_key": s.series_key, "kernel_class": s.kernel_class, "kvp": s.kvp, "status": hb.status,
                     "confidence": hb.confidence, **localizer_metrics(hb.box_zyx, arr.heart)})
    return rows


#: Radii (canvas voxels of 3 mm) of the nodule probe's blobs: none, 18 mm and 30 mm across.
PROBE_RADII_VOXELS: tuple[float, ...] = (0.0, 3.0, 5.0)


def nodule_probe(localizer: HeartLocalizer, records: list[CanvasRecord],
                 radii: tuple[float, ...] = PROBE_RADII_VOXELS) -> dict[str, dict[str, float]]:
    """Per plane and blob radius, the share of heart-free canvas slices with lung that the localizer calls heart
    (p > 0.5) once a round soft-tissue nodule is drawn in their lung
    (:func:`cacflow.evaluation.localizer.nodule_probe_slices`); radius 0 is the slices as they are. A localizer
    trained without nodules called 68 % of sagittal slices with a 30 mm nodule heart (``docs/training.md``)."""
    out: dict[str, dict[str, float]] = {}
    for axis, plane in enumerate(PLANES):
        out[plane] = {}
        for radius in radii:
            slices = [nodule_probe_slices(r.canvas, r.targets, axis, radius) for r in records]
            x = np.concatenate(slices) if slices else np.zeros((0, CANVAS_SIZE, CANVAS_SIZE), np.float32)
            share = float(np.mean(localizer.slice_probabilities(x, plane) > 0.5)) if len(x) else float("nan")
            out[plane][f"radius_{radius:g}"] = share
        out[plane]["n_slices"] = int(len(x))
    return out


#: Box margins (mm) tried on the validation series after training.
MARGIN_CANDIDATES_MM: tuple[float, ...] = (0.0, 1.0, 2.0, 3.0, 4.5, 6.0)
#: The margin must keep >= 98 % of the heart inside the box in at least this share of validation scans.
MIN_COVERED_SHARE = 0.98


def choose_margin(localizer: HeartLocalizer, series: list[LabelledSeries], grid: ZGrid,
                  convention: AgatstonConvention, margins: tuple[float, ...] = MARGIN_CANDIDATES_MM
                  ) -> tuple[float, list[dict]]:
    """The box margin with the best median IoU among those that cover the heart (>= 98 % of its voxels) in >= 98 %
    of validation scans (the largest margin if none does), and the table it was chosen from."""
    per_series = []
    for _, arr in load_many([s for s in series if s.heart_path is not None], grid, convention, targets=False):
        canvas, cmap, _ = build_canvas(arr.hu, arr.spacing_zyx, arr.direction)
        per_series.append((localizer.probabilities(canvas), cmap, arr.heart))
    table = []
    for m in margins:
        cov, iou = [], []
        for probs, cmap, heart in per_series:
            try:
                est = box_from_probabilities(probs, m)
                met = localizer_metrics(cmap.canvas_to_input(est.lo, est.hi), heart)
            except LocalizerError:
                met = localizer_metrics(None, heart)
            cov.append(met["heart_coverage"])
            iou.append(met["box_iou"])
        table.append({"margin_mm": m, "share_coverage_ge_0.98": float(np.mean(np.array(cov) >= 0.98)),
                      "median_iou": float(np.median(iou))})
    ok = [r for r in table if r["share_coverage_ge_0.98"] >= MIN_COVERED_SHARE]
    best = max(ok, key=lambda r: r["median_iou"]) if ok else table[-1]
    return float(best["margin_mm"]), table


def summarise_localizer(rows: list[dict]) -> dict:
    """The acceptance figures: share of scans with >= 98 % of the heart inside, median IoU, usable boxes."""
    if not rows:
        return {"n": 0}
    cov = np.array([r["heart_coverage"] for r in rows])
    iou = np.array([r["box_iou"] for r in rows])
    return {"n": len(rows), "share_coverage_ge_0.98": float((cov >= 0.98).mean()),
            "median_coverage": float(np.median(cov)), "median_iou": float(np.median(iou)),
            "min_iou": float(iou.min()), "share_found": float(np.mean([r["status"] == "found" for r in rows]))}

