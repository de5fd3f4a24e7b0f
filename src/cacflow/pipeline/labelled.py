"""Labelled series of a processed cohort, split by participant, read as arrays on the scoring grid.

A labelled cohort is any cohort the workflow has preprocessed whose ``labels`` folder holds, per series,
``<SeriesInstanceUID>.nii.gz`` (calcium labels 1 LM, 2 LAD, 3 CX, 4 RCA) and, for the heart localizer,
``heart/<SeriesInstanceUID>.nii.gz`` (1 inside the heart), both in the series' own geometry
(:mod:`cacflow.io.labels`). The synthetic generator writes exactly this.

Participants, not series, are split (the soft and sharp reconstructions of one acquisition stay together), by a
seeded hash of the PatientID, so a participant's split never changes when the cohort grows.

Both training (:mod:`cacflow.training.data`, the models learn from these arrays) and evaluation
(:mod:`cacflow.evaluation.report`, the localizer against the true heart masks) read labelled series through this
module, so neither imports the other for it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from cacflow.imaging.resample import ZGrid, resample_labels
from cacflow.io.dicom import read_ids
from cacflow.io.labels import find_label_map, read_label_map
from cacflow.io.tables import read_json
from cacflow.io.zarr_store import read_geometry, read_volume
from cacflow.pipeline.layout import CohortLayout
from cacflow.pipeline.shard import grid_volume
from cacflow.prefetch import read_ahead
from cacflow.scoring.agatston import AgatstonConvention, agatston_score

SPLITS: tuple[str, ...] = ("train", "val", "test")


def split_of(participant_id: str, seed: int, fractions: tuple[float, float, float]) -> str:
    """'train', 'val' or 'test' for a participant: a seeded SHA-256 of the ID mapped to [0, 1) against fractions."""
    if not np.isclose(sum(fractions), 1.0) or min(fractions) < 0:
        raise ValueError(f"split fractions must be >= 0 and sum to 1, got {fractions}")
    digest = hashlib.sha256(f"{seed}:{participant_id}".encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2**64
    edges = np.cumsum(fractions)
    return SPLITS[int(np.searchsorted(edges, u, side="right")) if u < edges[-1] else 2]


@dataclass(frozen=True)
class LabelledSeries:
    """A preprocessed series with reference labels. Paths are absolute or relative to the working directory."""

    series_key: str
    participant: str
    split: str
    grid_volume: Path
    native_volume: Path
    label_path: Path
    heart_path: Path | None
    kernel_class: str
    kvp: float


def labelled_series(layout: CohortLayout, root: Path, labels_dir: Path, grid_name: str, seed: int,
                    fractions: tuple[float, float, float]) -> list[LabelledSeries]:
    """Every series of the cohort with a scoring-grid volume and a label map, with its split, sorted by key."""
    index = read_json(layout.shard_index) or {"shards": []}
    out = []
    for shard in index["shards"]:
        for r in pd.read_parquet(layout.shard_tasks(shard)).itertuples(index=False):
            if grid_volume(layout, r.series_key, grid_name)[0] is None:
                continue
            ids = read_ids(Path(root) / r.paths[0]) if len(r.paths) else None
            if ids is None:
                continue
            label = find_label_map(labels_dir, ids[1])
            if label is None:
                continue
            meta = json.loads(r.metadata) if r.metadata else {}
            out.append(LabelledSeries(
                series_key=r.series_key, participant=ids[0],
                split=split_of(ids[0], seed, fractions),
                grid_volume=layout.volume(r.series_key, grid_name), native_volume=layout.volume(r.series_key),
                label_path=label, heart_path=find_label_map(Path(labels_dir) / "heart", ids[1]),
                kernel_class=str(meta.get("kernel_class") or ""), kvp=float(meta.get("kvp") or np.nan)))
    return sorted(out, key=lambda s: s.series_key)


@dataclass
class SeriesArrays:
    """One labelled series on the scoring grid (z, y, x; LPS geometry as in :class:`cacflow.imaging.volume.Volume`).

    ``labels``: vessel labels on the grid (slab maximum); ``heart``: true heart on the grid or None;
    ``per_slice``: (z, 2) reference [Agatston, volume mm³] per slice, summing to the reference scores.
    """

    hu: np.ndarray
    spacing_zyx: tuple[float, float, float]
    origin: tuple[float, float, float]
    direction: np.ndarray
    labels: np.ndarray
    heart: np.ndarray | None
    per_slice: np.ndarray


def slice_targets(hu: np.ndarray, spacing_zyx: tuple[float, float, float], labels: np.ndarray,
                  convention: AgatstonConvention) -> np.ndarray:
    """(z, 2) reference [Agatston, volume mm³] of each slice inside the label map (the scoring library's values)."""
    res = agatston_score(hu, spacing_zyx, mask=labels, convention=convention)
    voxel_mm3 = float(np.prod(spacing_zyx))
    volume = (res.lesion_labels > 0).sum(axis=(1, 2)) * voxel_mm3
    return np.stack([res.per_slice, volume], axis=1).astype(np.float64)


def load_series(s: LabelledSeries, grid: ZGrid, convention: AgatstonConvention, targets: bool = True
                ) -> SeriesArrays:
    """Read a labelled series' scoring-grid volume and put its labels (and heart mask) on that grid.

    ``targets=False`` skips the per-slice reference scores (``per_slice`` is then empty): the localizer needs none.
    """
    volume = read_volume(s.grid_volume)
    native = read_geometry(s.native_volume)
    labels = resample_labels(read_label_map(s.label_path, native), native, grid)
    heart = None
    if s.heart_path is not None:
        heart = resample_labels(read_label_map(s.heart_path, native), native, grid) > 0
    return SeriesArrays(volume.hu, tuple(volume.spacing_zyx), tuple(volume.origin), np.asarray(volume.direction),
                        labels, heart, slice_targets(volume.hu, volume.spacing_zyx, labels, convention) if targets
                        else np.zeros((0, 2)))


def load_many(series: list[LabelledSeries], grid: ZGrid, convention: AgatstonConvention, workers: int = 2,
              targets: bool = True):
    """Yield ``(series, SeriesArrays)`` in order, reading ahead with ``workers`` threads (decompression releases the
    GIL, so reading overlaps with the caller's work; at most ``workers`` + 1 series ahead)."""
    yield from zip(series, read_ahead(lambda s: load_series(s, grid, convention, targets), series, workers))
