"""One inference job: the heart localizer, the regression ConvNet and the segmentation scorers over every scan
of a shard.

The models are loaded once per job. Loader threads read and decode the next scans' scoring-grid volumes (Zarr
decompression releases the GIL; at most ``inference.loader_workers`` + 1 scans ahead, :mod:`cacflow.prefetch`)
while the main thread runs the networks: per scan, the three localizer networks (128 slices each, one batch per
plane) and the regressor over the box's slices in batches of ``inference.batch_size``. CUDA with bf16 autocast
when present, CPU with ``channels_last`` otherwise.

Each scan's row is cached under a fingerprint of its volume and both models' weights, so a rerun of a grown cohort
infers only new or changed scans and a replaced checkpoint reinfers everything it touches. The row holds the
regressor's raw per-slice outputs; the scoring convention (minimum area, slice normalisation) is applied by the
score stage, so changing the convention reruns scoring, not inference. Each segmentation scorer
(``models.segmentation``: {method: model directory}) labels the calcium inside the heart box; its gated label map
is stored in the row as sparse text (:mod:`cacflow.io.sparse_mask`) and scored by the score stage.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from cacflow import __version__
from cacflow.config import grids
from cacflow.imaging.resample import ZGrid
from cacflow.io.heart_regions import UserRegion
from cacflow.io.sparse_mask import encode_box_mask
from cacflow.io.tables import read_json, write_json, write_parquet
from cacflow.io.zarr_store import read_geometry, read_volume
from cacflow.models.heart_box import USER, choose_heart_box
from cacflow.models.mask_scorers import MaskScorer, load_mask_scorer
from cacflow.models.predict import HeartLocalizer, SliceRegressor, pick_device
from cacflow.pipeline.box_columns import BOX_LPS_COLUMNS, BOX_VOXEL_COLUMNS, box_fields
from cacflow.pipeline.layout import CohortLayout
from cacflow.pipeline.shard import grid_volume
from cacflow.pipeline.user_region import GridRegion, UserRegionError, region_fingerprint, region_on_grid, task_regions
from cacflow.prefetch import read_ahead
from cacflow.progress import Progress

log = logging.getLogger(__name__)

#: Bump when the rows this stage writes change for the same inputs and models.
INFER_VERSION = 5  # 5: user-supplied heart regions

INFER_COLUMNS: tuple[str, ...] = (
    "series_key", "status", "reason", "message", "heart_box_method", "localizer_status", "localizer_reason",
    "localizer_confidence", *BOX_VOXEL_COLUMNS, *BOX_LPS_COLUMNS,
    "regression_raw", "regression_spacing_z_mm", "regression_slices", "regression_slice_floor", "crop_truncated",
    "localizer_model", "regressor_model", "segmentation",
)
TYPES: dict[str, str] = {
    **{c: "string" for c in ("series_key", "status", "reason", "message", "heart_box_method", "localizer_status",
                             "localizer_reason", "localizer_model", "regressor_model", "segmentation")},
    "localizer_confidence": "Float64",
    **{c: "Int64" for c in BOX_VOXEL_COLUMNS},
    **{c: "Float64" for c in BOX_LPS_COLUMNS},
    "regression_raw": "string", "regression_spacing_z_mm": "Float64", "regression_slices": "Int64",
    "regression_slice_floor": "Float64", "crop_truncated": "boolean",
}


@dataclass(frozen=True)
class InferTask:
    """One scan to infer: its key, scoring-grid volume and that volume's fingerprint (None: no volume)."""

    series_key: str
    volume_path: str
    volume_fingerprint: str | None
    upstream_reason: str | None = None
    heart_region: str | None = None  # a user-supplied heart region (UserRegion JSON), replacing the localizer
    native_path: str | None = None  # the native-grid store (a user mask is read in its geometry)


def infer_tasks(layout: CohortLayout, shard: str, grid_name: str) -> list[InferTask]:
    """The shard's scans, from the discover task table and each scan's status record."""
    tasks = []
    frame = pd.read_parquet(layout.shard_tasks(shard))
    for r, region in zip(frame.itertuples(index=False), task_regions(frame)):
        fingerprint, record = grid_volume(layout, r.series_key, grid_name)
        tasks.append(InferTask(r.series_key, str(layout.volume(r.series_key, grid_name)), fingerprint,
                               None if fingerprint else (record.get("reason") or "not_preprocessed"),
                               region,
                               str(layout.volume(r.series_key, "native"))))
    return tasks


def _empty_row(key: str, status: str, reason: str | None, message: str | None) -> dict:
    row = {c: None for c in INFER_COLUMNS}
    row.update(series_key=key, status=status, reason=reason, message=message)
    return row


def infer_scan(localizer: HeartLocalizer, regressor: SliceRegressor, key: str, volume,
               segmenters: dict[str, MaskScorer] | None = None, user_region: GridRegion | None = None) -> dict:
    """The inference row of one scan (volume: a :class:`~cacflow.imaging.volume.Volume` on the scoring grid).

    ``regression_raw`` is the JSON list of the box slices' raw [Agatston, volume mm³] predictions (cranial-caudal
    order of the grid); :func:`cacflow.scoring.regression_rule.regression_totals` turns it into the scan's scores,
    with the regressor's per-slice floor ``regression_slice_floor`` (Agatston units; 0: the convention's minimum).
    ``segmentation`` is JSON {method: {"model": id, "kind": card kind, "mask": sparse text}} of each segmentation
    scorer's map on the grid (z, y, x; 0 outside the heart box), labels as :mod:`cacflow.scoring.masks` says per
    kind (vessel labels, coronary / non-coronary calcium, or calcification levels 0..4).

    ``user_region``: a user-supplied heart region on the grid; the localizer does not run and every scorer works
    in that region's box (``heart_box_method`` 'user')."""
    origin, direction = np.asarray(volume.origin), np.asarray(volume.direction)
    choice = choose_heart_box(localizer, volume.hu, volume.spacing_zyx, origin, direction,
                              None if user_region is None else (user_region.box_zyx, user_region.box_lps_mm))
    row = _empty_row(key, "done", None, None)
    row.update(regressor_model=regressor.id, heart_box_method=choice.method, localizer_status="not_run")
    if (hb := choice.localizer) is not None:
        row.update(localizer_status=hb.status, localizer_reason=hb.reason,
                   localizer_confidence=float(hb.confidence), localizer_model=localizer.id)
    if choice.box_zyx is None:
        row.update(status="excluded", reason=choice.reason or "heart_not_found",
                   message=f"series {key}: no heart box ({choice.message})")
        return row
    raw, _, truncated = regressor.predict_box(volume.hu, volume.spacing_zyx, choice.box_zyx)
    row.update(box_fields(choice.box_zyx, choice.box_lps_mm))
    row.update(regression_raw=json.dumps(np.asarray(raw, dtype=np.float64).tolist()),
               regression_spacing_z_mm=float(volume.spacing_zyx[0]), regression_slices=int(raw.shape[0]),
               regression_slice_floor=float(regressor.slice_floor), crop_truncated=bool(truncated))
    if segmenters:
        row["segmentation"] = json.dumps({
            name: {"model": seg.id, "kind": seg.kind,
                   "mask": encode_box_mask(*seg.predict_in_box(volume.hu, choice.box_zyx), volume.hu.shape)}
            for name, seg in sorted(segmenters.items())}, sort_keys=True)
    return row


def infer_fingerprint(task: InferTask, localizer: HeartLocalizer, regressor: SliceRegressor,
                      segmenters: dict[str, MaskScorer] | None = None) -> str:
    """Changes when the scan's volume, any model's weights, the set of segmentation scorers or this stage's code
    change."""
    doc = {"v": INFER_VERSION, "volume": task.volume_fingerprint, "user_region": region_fingerprint(task.heart_region),
           "localizer": localizer.card["weights_sha256"],
           "regressor": regressor.card["weights_sha256"],
           "segmentation": {k: s.card["weights_sha256"] for k, s in sorted((segmenters or {}).items())}}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def _infer_one(localizer: HeartLocalizer, regressor: SliceRegressor, task: InferTask, volume, grid: ZGrid,
               segmenters: dict[str, MaskScorer]) -> dict:
    """:func:`infer_scan` of one task, with its user-supplied heart region put on the grid first (if any)."""
    if task.heart_region is None:
        return infer_scan(localizer, regressor, task.series_key, volume, segmenters)
    try:
        region = region_on_grid(UserRegion.from_json(task.heart_region), volume,
                                read_geometry(Path(str(task.native_path))), grid)
    except UserRegionError as exc:
        row = _empty_row(task.series_key, "excluded", exc.reason, f"series {task.series_key}: {exc.message}")
        row.update(heart_box_method=USER, localizer_status="not_run", regressor_model=regressor.id)
        return row
    return infer_scan(localizer, regressor, task.series_key, volume, segmenters, region)


def _read(task: InferTask):
    try:
        return read_volume(Path(task.volume_path)), None
    except Exception as exc:  # reported per scan, never stops the shard
        return None, exc


def run_infer_shard(layout: CohortLayout, shard: str, config: dict, localizer_dir: Path, regressor_dir: Path,
                    segmentation_dirs: dict[str, Path] | None = None, use_cache: bool = True) -> pd.DataFrame:
    """Infer every scan of a shard and write ``shards/infer/<shard>.parquet``; returns the rows.

    ``segmentation_dirs``: {method name: model directory} of the segmentation scorers to run (None: none).
    ``use_cache=False`` infers every scan again (benchmarks); results are identical either way.
    """
    icfg = config["inference"]
    device = pick_device(icfg["device"])
    t0 = time.perf_counter()
    localizer = HeartLocalizer.load(localizer_dir, device)
    regressor = SliceRegressor.load(regressor_dir, device, batch_size=int(icfg["batch_size"]))
    segmenters = {name: load_mask_scorer(Path(d), device) for name, d in sorted((segmentation_dirs or {}).items())}
    load_s = time.perf_counter() - t0
    tasks = infer_tasks(layout, shard, config["scoring"]["grid"])
    grid = grids(config)[config["scoring"]["grid"]]
    rows: list[dict] = []
    todo: list[tuple[InferTask, str]] = []
    for t in tasks:
        if t.volume_fingerprint is None:
            rows.append(_empty_row(t.series_key, "not_run", t.upstream_reason,
                                   f"series {t.series_key}: no scoring volume ({t.upstream_reason})"))
            continue
        fp = infer_fingerprint(t, localizer, regressor, segmenters)
        cached = read_json(layout.infer_cache(t.series_key)) if use_cache else None
        if cached and cached.get("fingerprint") == fp:
            rows.append({**cached["row"], "state": "up_to_date"})
        else:
            todo.append((t, fp))
    log.info("%s %s: %d scans, %d to infer on %s (models loaded in %.2f s)", layout.cohort, shard, len(tasks),
             len(todo), device, load_s)
    infer_s = 0.0
    progress = Progress(len(todo), f"infer {layout.cohort} {shard}")
    if todo:
        volumes = read_ahead(lambda tf: _read(tf[0]), todo, int(icfg["loader_workers"]))
        for (t, fp), (volume, error) in zip(todo, volumes):
            t1 = time.perf_counter()
            if error is not None:
                row = _empty_row(t.series_key, "failed", "volume_unreadable",
                                 f"series {t.series_key}: scoring volume unreadable ({type(error).__name__}); "
                                 "rerun preprocessing")
            else:
                try:
                    row = _infer_one(localizer, regressor, t, volume, grid, segmenters)
                except Exception as exc:  # one scan must never stop its shard
                    row = _empty_row(t.series_key, "failed", "inference_failed",
                                     f"series {t.series_key}: inference failed: {type(exc).__name__}: "
                                     f"{str(exc)[:200]}")
                write_json({"fingerprint": fp, "cacflow_version": __version__, "row": row},
                           layout.infer_cache(t.series_key))
            dt = time.perf_counter() - t1
            infer_s += dt
            log.info("series %s: %s (%s) in %.2f s", t.series_key, row["status"], row["heart_box_method"], dt)
            rows.append({**row, "state": "inferred"})
            progress.advance()
    wall = time.perf_counter() - t0
    frame = pd.DataFrame(rows, columns=list(INFER_COLUMNS)).astype(TYPES)
    meta = {"cacflow_version": __version__, "shard": shard, "device": str(device), "wall_s": wall,
            "model_load_s": load_s, "infer_s": infer_s, "inferred": len(todo), "scans": len(tasks),
            "localizer": localizer.id, "regressor": regressor.id,
            "segmentation": {k: s.id for k, s in segmenters.items()}}
    write_parquet(frame, layout.shard_infer(shard), meta)
    log.info("%s %s: inferred %d of %d scans in %.1f s (model load %.2f s)", layout.cohort, shard, len(todo),
             len(tasks), wall, load_s)
    return frame
