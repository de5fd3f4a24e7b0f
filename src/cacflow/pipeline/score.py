"""One scoring job: every series of a shard scored by the classic method and, where a reader's label map exists,
by the ``reference`` method; rows for the ``scores``, ``vessels`` and ``lesions`` tables and a QC picture each.

Methods (all through :func:`cacflow.scoring.scan.score_scan` under one recorded convention):

- ``classic_heart_region``: the seeds' baseline, HU >= 130 inside the heart region of
  :mod:`cacflow.imaging.heart_region` (no weights needed). No heart found: a null score with status ``excluded``.
- ``reference``: the same library inside a reference label map (1 LM, 2 LAD, 3 CX, 4 RCA) from the cohort's
  ``labels`` folder, resampled onto the scoring grid with a slab maximum.
- ``regression``: the regression ConvNet's per-slice outputs from the inference stage, under the convention.
- one method per segmentation scorer (``models.segmentation``, e.g. ``unetpp``): the library inside the scorer's
  label map from the inference stage (:mod:`cacflow.scoring.masks` says what each kind's labels mean), gated at
  130 HU (the library's threshold: a predicted pixel below it is never counted) with 2-D components under the
  minimum area dropped; lesion rows are filled, vessel rows for the vessel-aware kind (``vessel_segmentation``).
  A calcification level model (kind ``calcium_levels``) is scored by
  :func:`cacflow.scoring.robust_agatston.robust_score` instead: its levels replace HU (no HU gate, no vessels;
  mass null).

Every automatic method's calcium passes the bone guard (:mod:`cacflow.imaging.bone`): calcium inside a 3-D structure at
or above 130 HU of 10 mL or more (spine, ribs, sternum, scapulae) is not counted; each such lesion is still
written to the ``lesions`` table, marked ``guard`` = ``bone``. The regression method has no lesions to guard (its
per-slice outputs are guarded only by the heart box); the reference labels are not guarded.

A scan whose heart blood pool measures contrast (:mod:`cacflow.imaging.contrast`: median of the heart box's core
at or above 150 HU) is scored by no method: every row is ``excluded`` with reason ``contrast_enhanced_image``,
whatever its header says.

Every scored row carries the second-reader flag of its scan (:mod:`cacflow.scoring.second_reader`): the automatic
methods disagree on the five-class stratum.

A series whose volume could not be made gets null scores with status ``not_scored`` and the preprocessing reason;
no series is ever given a 0 it did not earn. Each series' rows are cached with a fingerprint of everything they
depend on (volume, convention, region method, label file), so a rerun rescored only what changed.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import dask
import numpy as np
import pandas as pd
from dask import delayed

from cacflow import __version__
from cacflow.config import section_hash
from cacflow.imaging.bone import bone_mask
from cacflow.imaging.contrast import CONTRAST_BLOOD_POOL_HU, BloodPool, blood_pool
from cacflow.imaging.heart_region import HEURISTIC_VERSION, HeartNotFound, HeartRegion, find_heart_region
from cacflow.imaging.resample import ZGrid, resample_labels
from cacflow.io.dicom import read_ids
from cacflow.io.heart_regions import UserRegion
from cacflow.io.labels import LabelMapError, find_label_map, read_label_map
from cacflow.io.sparse_mask import decode_mask
from cacflow.io.tables import read_json, write_json, write_parquet
from cacflow.io.volume_file import is_volume_file, volume_series_uid
from cacflow.io.zarr_store import read_geometry, read_volume
from cacflow.models.heart_box import USER
from cacflow.pipeline.box_columns import box_from_row, has_box, lps_fields, lps_from_row
from cacflow.pipeline.layout import CohortLayout
from cacflow.pipeline.schemas import LESION_COLUMNS, REGION_COLUMNS, SCORE_COLUMNS, VESSEL_COLUMNS, coerce_types
from cacflow.pipeline.shard import grid_volume
from cacflow.pipeline.user_region import UserRegionError, region_fingerprint, region_on_grid, task_regions
from cacflow.progress import Progress
from cacflow.reports.qc import render_qc, write_qc_png
from cacflow.scoring.agatston import AgatstonConvention
from cacflow.scoring.masks import LEVEL_KINDS, hu_region
from cacflow.scoring.regression_rule import regression_totals
from cacflow.scoring.robust_agatston import robust_score
from cacflow.scoring.scan import VESSELS, ScanScore, score_scan
from cacflow.scoring.second_reader import second_reader
from cacflow.scoring.strata import SCHEMES

log = logging.getLogger(__name__)

#: Bump when the rows this stage writes change for the same inputs.
SCORER_VERSION = 6  # 6: the bone guard (cacflow.imaging.bone); 5: contrast recognised from the image
CLASSIC = "classic_heart_region"
REFERENCE = "reference"
REGRESSION = "regression"


@dataclass
class ScoreTask:
    """One series to score (picklable for process workers)."""

    series_key: str
    results: str
    cohort: str
    grid_name: str
    grid: tuple[float, float]
    convention: dict
    volume_fingerprint: str | None  # None: no scoring-grid volume (excluded or failed upstream)
    upstream_reason: str | None = None
    upstream_message: str | None = None
    label_path: str | None = None  # the series' reference label map, if the cohort has one for it
    label_stat: tuple[int, int] | None = None  # (size, mtime_ns) of the label map
    qc_pictures: bool = True
    inference: dict | None = None  # the scan's row of the inference stage (heart box, regression scores)
    segmentation_methods: tuple[str, ...] = ()  # configured segmentation scorers (models.segmentation keys)
    heart_region: str | None = None  # a user-supplied heart region (UserRegion JSON), replacing the heuristic


@dataclass
class SeriesScores:
    """Everything one series contributes to the tables."""

    scores: list[dict] = field(default_factory=list)
    vessels: list[dict] = field(default_factory=list)
    lesions: list[dict] = field(default_factory=list)
    region: dict = field(default_factory=dict)
    exclusions: list[dict] = field(default_factory=list)


def convention_id(convention: dict) -> str:
    """Short stable id of a scoring convention (its hash), recorded in every row."""
    return section_hash(convention)


def score_fingerprint(task: ScoreTask) -> str:
    """Changes when the volume, the convention, a method's code or the label map change."""
    return section_hash(task.volume_fingerprint, task.grid, task.convention, SCORER_VERSION, HEURISTIC_VERSION,
                        task.label_stat, task.qc_pictures, task.inference, list(task.segmentation_methods),
                        region_fingerprint(task.heart_region))


def _score_row(task: ScoreTask, method: str, status: str, score: ScanScore | None = None, reason: str | None = None,
               message: str | None = None, region: str | None = None, totals: dict | None = None,
               model: str | None = None) -> dict:
    """One ``scores`` row: totals from a :class:`ScanScore` or given as ``totals`` (agatston, volume_mm3, ...);
    every stratum scheme is derived from the Agatston value here."""
    if score is not None:
        t = score.total
        totals = {"agatston": t.agatston, "volume_mm3": t.volume_mm3, "mass_mg": t.mass_mg, "n_lesions": t.n_lesions}
    totals = totals or {}
    value = totals.get("agatston")
    row = {
        "series_key": task.series_key, "method": method, "status": status, "reason": reason, "message": message,
        "agatston": value, "volume_mm3": totals.get("volume_mm3"), "mass_mg": totals.get("mass_mg"),
        "n_lesions": totals.get("n_lesions"), "region": region, "convention_id": convention_id(task.convention),
        "convention": json.dumps(task.convention, sort_keys=True), "grid": task.grid_name, "model": model,
        "second_reader": None, "second_reader_note": None,
    }
    for name, scheme in SCHEMES.items():
        row[name] = scheme.label(value)
        row[f"{name}_index"] = scheme.index(value)
    return row


def _detail_rows(task: ScoreTask, method: str, score: ScanScore, out: SeriesScores, guard: str | None = None,
                 first_index: int = 1) -> None:
    """Vessel and lesion rows of a method's score; with ``guard``, the lesions an anatomy guard removed (lesion
    rows marked with the guard's name and numbered from ``first_index``, no vessel rows: they are not counted)."""
    cid = convention_id(task.convention)
    for name, v in (score.vessels.items() if guard is None else ()):
        out.vessels.append({"series_key": task.series_key, "method": method, "vessel": name, "agatston": v.agatston,
                            "volume_mm3": v.volume_mm3, "mass_mg": v.mass_mg, "n_lesions": v.n_lesions,
                            "convention_id": cid})
    vessel_names = VESSELS if score.vessels else {}
    for les in score.lesions:
        x, y, z = les.centroid_lps_mm
        out.lesions.append({
            "series_key": task.series_key, "method": method, "lesion_index": les.lesion_index + first_index - 1,
            "vessel": vessel_names.get(les.label), "z_first": les.z_first, "z_last": les.z_last,
            "n_slices": les.n_slices, "n_voxels": les.n_voxels, "volume_mm3": les.volume_mm3,
            "peak_hu": les.peak_hu, "mean_hu": les.mean_hu, "agatston": les.agatston, "mass_mg": les.mass_mg,
            "centroid_x_mm": x, "centroid_y_mm": y, "centroid_z_mm": z, "convention_id": cid, "guard": guard})


#: Guard name of the lesions removed as bone (:mod:`cacflow.imaging.bone`), in the ``lesions`` table's ``guard``.
BONE_GUARD = "bone"


def _split_bone(region: np.ndarray, bone: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """A method's region or label map (z, y, x) without the bone voxels, and its part inside bone (None when it has
    none); both keep the map's values and type."""
    removed = np.where(bone, region, np.zeros_like(region))
    if not removed.any():
        return region, None
    return np.where(bone, np.zeros_like(region), region), removed


def _guarded_score(task: ScoreTask, method: str, hu: np.ndarray, spacing: tuple[float, float, float],
                   origin: np.ndarray, direction: np.ndarray, region: np.ndarray, bone: np.ndarray,
                   vessel_labels: bool, convention: AgatstonConvention, out: SeriesScores) -> ScanScore:
    """The method's score in its region without bone; the calcium it had inside bone is scored apart and
    recorded as lesion rows with ``guard`` 'bone' (not counted in any total)."""
    kept, removed = _split_bone(region, bone)
    score = score_scan(hu, spacing, origin, direction, kept, vessel_labels=vessel_labels, convention=convention)
    if removed is not None:  # numbered after the counted lesions, so (series, method, lesion_index) stays a key
        in_bone = score_scan(hu, spacing, origin, direction, removed, vessel_labels=vessel_labels,
                             convention=convention)
        _detail_rows(task, method, in_bone, out, guard=BONE_GUARD, first_index=len(score.lesions) + 1)
    return score


def _exclusion(task: ScoreTask, method: str, reason: str, message: str) -> dict:
    return {"series_key": task.series_key, "level": "series", "stage": "score", "method": method,
            "reason": reason, "message": message}


def _region_row(task: ScoreTask, region: HeartRegion | None, status: str, reason: str | None,
                n_slices: int | None, qc: str | None) -> dict:
    row = {c: None for c in REGION_COLUMNS}
    method = region.method if region is not None else (USER if task.heart_region else "heuristic")
    row.update(series_key=task.series_key, heart_region_method=method, heart_region_status=status,
               heart_region_reason=reason, scoring_slices=n_slices, reference_labels=task.label_path is not None,
               qc_picture=qc)
    if region is not None:
        row.update(lps_fields(region.box_lps_mm, "heart_box"),
                   heart_region_volume_ml=float(region.qc.get("region_volume_ml", np.nan)),
                   heart_region_confidence=float(region.qc.get("confidence", np.nan)))
    inf = task.inference
    if inf:
        row.update(heart_box_method=inf.get("heart_box_method"), heart_box_flag=inf.get("localizer_reason")
                   if inf.get("heart_box_method") != "localizer" else None,
                   localizer_status=inf.get("localizer_status"), localizer_confidence=inf.get("localizer_confidence"),
                   localizer_model=inf.get("localizer_model"), regressor_model=inf.get("regressor_model"))
        if has_box(inf):  # the box every scorer used
            row.update(lps_fields(lps_from_row(inf), "heart_box"))
    return row


def inference_box(task: ScoreTask) -> tuple[int, int, int, int, int, int] | None:
    """The heart box the inference stage chose for the scan (localizer or heuristic fallback), or None."""
    return box_from_row(task.inference)


def _regression_scores(task: ScoreTask) -> tuple[float, float]:
    """(Agatston, volume mm³) of the regression method: the inference row's raw per-slice outputs under the
    configured convention and the regressor's per-slice floor."""
    inf = task.inference
    assert inf is not None and inf["status"] == "done"
    floor = inf.get("regression_slice_floor")
    return regression_totals(json.loads(inf["regression_raw"]), float(inf["regression_spacing_z_mm"]),
                             AgatstonConvention.from_dict(task.convention),
                             0.0 if floor is None or pd.isna(floor) else float(floor))


def _regression_row(task: ScoreTask) -> tuple[dict, dict | None]:
    """The ``regression`` method's score row (and exclusion) from the scan's inference row."""
    inf = task.inference
    assert inf is not None
    if inf["status"] == "done":
        agatston, volume = _regression_scores(task)
        totals = {"agatston": agatston, "volume_mm3": volume}
        return _score_row(task, REGRESSION, "scored", region=inf["heart_box_method"], totals=totals,
                          model=inf.get("regressor_model")), None
    status = {"excluded": "excluded", "failed": "failed"}.get(inf["status"], "not_scored")
    row = _score_row(task, REGRESSION, status, reason=inf["reason"], message=inf["message"])
    return row, (_exclusion(task, REGRESSION, inf["reason"], inf["message"]) if status != "not_scored" else None)


def _segmentation_rows(task: ScoreTask, hu: np.ndarray, spacing: tuple[float, float, float], origin: np.ndarray,
                       direction: np.ndarray, convention: AgatstonConvention, bone: np.ndarray, out: SeriesScores
                       ) -> dict[str, np.ndarray]:
    """Rows of every configured segmentation scorer from its label map in the scan's inference row (none when the
    inference stage did not run for the cohort, as for the regression method). Returns each HU-gated method's
    counted voxels (bool, z, y, x) for the QC picture."""
    counted: dict[str, np.ndarray] = {}
    if not task.inference:
        return counted
    inf = task.inference
    masks = json.loads(inf["segmentation"]) if inf.get("segmentation") else {}
    for method in task.segmentation_methods:
        if inf.get("status") != "done":
            status = {"excluded": "excluded", "failed": "failed"}.get(inf.get("status"), "not_scored")
            reason = inf.get("reason") or "not_inferred"
            message = inf.get("message") or f"series {task.series_key}: no inference row"
            out.scores.append(_score_row(task, method, status, reason=reason, message=message))
            if status != "not_scored":
                out.exclusions.append(_exclusion(task, method, reason, message))
            continue
        entry = masks.get(method)
        if entry is None:  # configured after this shard was inferred: the infer stage reruns on the next run
            msg = f"series {task.series_key}: no {method} mask in the inference row; rerun the infer stage"
            out.scores.append(_score_row(task, method, "not_scored", reason="not_inferred", message=msg))
            continue
        try:
            labels = decode_mask(entry["mask"])
            if labels.shape != hu.shape:
                raise ValueError(f"mask shape {labels.shape} differs from the scoring grid {hu.shape}")
            if entry.get("kind") in LEVEL_KINDS:  # levels replace HU: no threshold of the scan's HU
                t = robust_score(_split_bone(labels, bone)[0], spacing, origin, direction, convention).total
                totals = {"agatston": t.agatston, "volume_mm3": t.volume_mm3, "mass_mg": None,
                          "n_lesions": t.n_lesions}  # no lesion rows: their HU fields would be level stand-ins
                out.scores.append(_score_row(task, method, "scored", region=inf.get("heart_box_method"),
                                             totals=totals, model=entry.get("model")))
                continue
            region, vessel_labels = hu_region(entry.get("kind", "vessel_segmentation"), labels)
            score = _guarded_score(task, method, hu, spacing, origin, direction, region, bone, vessel_labels,
                                   convention, out)
            out.scores.append(_score_row(task, method, "scored", score, region=inf.get("heart_box_method"),
                                         model=entry.get("model")))
            _detail_rows(task, method, score, out)
            if score.result is not None:
                counted[method] = score.result.counted()
        except Exception as exc:  # one method's fault never costs the others' rows
            msg = f"series {task.series_key}: {method} scoring failed: {type(exc).__name__}: {str(exc)[:200]}"
            out.scores.append(_score_row(task, method, "failed", reason="scoring_failed", message=msg))
            out.exclusions.append(_exclusion(task, method, "scoring_failed", msg))
    return counted


def _flag_second_reader(out: SeriesScores) -> None:
    """Set the second-reader flag and note on every score row of the scan (automatic methods only count)."""
    strata = {r["method"]: (int(r["five_class_index"]), r["five_class"]) for r in out.scores
              if r["status"] == "scored" and r["method"] != REFERENCE and r["five_class_index"] is not None}
    flag, note = second_reader(strata)
    for r in out.scores:
        r["second_reader"], r["second_reader_note"] = flag, note


def score_series(task: ScoreTask) -> SeriesScores:
    """Score one series by every applicable method; never raises for bad input."""
    out = _score_series(task)
    _flag_second_reader(out)
    return out


def _score_series(task: ScoreTask) -> SeriesScores:
    out = SeriesScores()
    layout = CohortLayout(Path(task.results), task.cohort)
    if task.volume_fingerprint is None:
        reason = task.upstream_reason or "not_preprocessed"
        message = f"series {task.series_key}: no scoring volume ({reason})"
        out.scores.append(_score_row(task, CLASSIC, "not_scored", reason=reason, message=message))
        if task.inference:
            out.scores.append(_score_row(task, REGRESSION, "not_scored", reason=reason, message=message))
        if task.label_path:
            out.scores.append(_score_row(task, REFERENCE, "not_scored", reason=reason, message=message))
        for method in task.segmentation_methods if task.inference else ():
            out.scores.append(_score_row(task, method, "not_scored", reason=reason, message=message))
        out.region = _region_row(task, None, "not_run", reason, None, None)
        return out
    if task.inference:
        row, excl = _regression_row(task)
        out.scores.append(row)
        if excl:
            out.exclusions.append(excl)
    convention = AgatstonConvention.from_dict(task.convention)
    try:
        volume = read_volume(layout.volume(task.series_key, task.grid_name))
    except Exception as exc:
        msg = f"series {task.series_key}: scoring volume unreadable ({type(exc).__name__}); rerun preprocessing"
        for method in (((CLASSIC, REFERENCE) if task.label_path else (CLASSIC,))
                       + (task.segmentation_methods if task.inference else ())):
            out.scores.append(_score_row(task, method, "failed", reason="volume_unreadable", message=msg))
            out.exclusions.append(_exclusion(task, method, "volume_unreadable", msg))
        out.region = _region_row(task, None, "not_run", "volume_unreadable", None, None)
        return out
    origin, direction = np.asarray(volume.origin), np.asarray(volume.direction)

    box = inference_box(task)
    pool = None if box is None else blood_pool(volume.hu, box)
    if pool is not None and pool.contrast_enhanced:
        return _contrast_excluded(task, layout, volume.hu, volume.spacing_zyx, None, box, pool)
    bone = bone_mask(volume.hu, volume.spacing_zyx)  # the anatomy guard of every automatic method
    region: HeartRegion | None = None
    classic: ScanScore | None = None
    try:
        if task.heart_region is not None:  # the user's region replaces the heuristic (phantoms, special cases)
            user = region_on_grid(UserRegion.from_json(task.heart_region), volume,
                                  read_geometry(layout.volume(task.series_key, "native")), ZGrid(*task.grid))
            region = HeartRegion(user.box_zyx, user.mask, user.box_lps_mm, USER, {})
        else:
            region = find_heart_region(volume.hu, volume.spacing_zyx, origin, direction)
        pool = pool or blood_pool(volume.hu, region.box_zyx)
        if pool is not None and pool.contrast_enhanced:
            return _contrast_excluded(task, layout, volume.hu, volume.spacing_zyx, region, box, pool)
        mask, where = region.mask, region.method
        if box is not None and task.inference.get("heart_box_method") == "localizer":
            # the localizer's box bounds every scorer; the heuristic mask inside it keeps lung and bone out
            mask = np.zeros_like(region.mask)
            z0, z1, y0, y1, x0, x1 = box
            mask[z0:z1, y0:y1, x0:x1] = region.mask[z0:z1, y0:y1, x0:x1]
            where = "heuristic_in_localizer_box"
        classic = _guarded_score(task, CLASSIC, volume.hu, volume.spacing_zyx, origin, direction, mask, bone, False,
                                 convention, out)
        out.scores.append(_score_row(task, CLASSIC, "scored", classic, region=where))
        _detail_rows(task, CLASSIC, classic, out)
        region_status, region_reason = "found", None
    except (HeartNotFound, UserRegionError) as exc:
        msg = f"series {task.series_key}: {exc.message}"
        out.scores.append(_score_row(task, CLASSIC, "excluded", reason=exc.reason, message=msg))
        out.exclusions.append(_exclusion(task, CLASSIC, exc.reason, msg))
        region_status, region_reason = "not_found", exc.reason
    except Exception as exc:  # one scan must never stop its shard
        msg = f"series {task.series_key}: classic scoring failed: {type(exc).__name__}: {str(exc)[:200]}"
        out.scores.append(_score_row(task, CLASSIC, "failed", reason="scoring_failed", message=msg))
        out.exclusions.append(_exclusion(task, CLASSIC, "scoring_failed", msg))
        region_status, region_reason = "failed", "scoring_failed"

    reference: ScanScore | None = None
    if task.label_path:
        try:
            native = read_geometry(layout.volume(task.series_key, "native"))  # grid only: no voxels read
            labels = read_label_map(Path(task.label_path), native)
            on_grid = resample_labels(labels, native, ZGrid(*task.grid))
            if on_grid.shape != volume.hu.shape:
                raise LabelMapError("reference_geometry_mismatch", "label map and scoring grid differ in shape")
            reference = score_scan(volume.hu, volume.spacing_zyx, origin, direction, on_grid, vessel_labels=True,
                                   convention=convention)
            out.scores.append(_score_row(task, REFERENCE, "scored", reference, region="reference_labels"))
            _detail_rows(task, REFERENCE, reference, out)
        except LabelMapError as exc:
            msg = f"series {task.series_key}: {exc.message}"
            out.scores.append(_score_row(task, REFERENCE, "excluded", reason=exc.reason, message=msg))
            out.exclusions.append(_exclusion(task, REFERENCE, exc.reason, msg))
        except Exception as exc:
            msg = f"series {task.series_key}: reference scoring failed: {type(exc).__name__}: {str(exc)[:200]}"
            out.scores.append(_score_row(task, REFERENCE, "failed", reason="scoring_failed", message=msg))
            out.exclusions.append(_exclusion(task, REFERENCE, "scoring_failed", msg))

    counted = _segmentation_rows(task, volume.hu, volume.spacing_zyx, origin, direction, convention, bone, out)

    qc_rel = None
    if task.qc_pictures:
        masks = {m: sc.result.counted() for m, sc in ((CLASSIC, classic), (REFERENCE, reference))
                 if sc is not None and sc.result is not None}
        try:
            qc_rel = _write_picture(task, layout, volume.hu, volume.spacing_zyx, region, classic, box,
                                    {**masks, **counted}, out.scores)
        except Exception as exc:  # a picture must never cost a score
            log.warning("series %s: QC picture failed: %s", task.series_key, type(exc).__name__)
    out.region = _region_row(task, region, region_status, region_reason, int(volume.hu.shape[0]), qc_rel)
    return out


#: Reason of every method's exclusion when the image shows contrast (:mod:`cacflow.imaging.contrast`).
CONTRAST_IMAGE = "contrast_enhanced_image"


def _contrast_excluded(task: ScoreTask, layout: CohortLayout, hu: np.ndarray, spacing: tuple[float, float, float],
                       region: HeartRegion | None, box: tuple[int, int, int, int, int, int] | None,
                       pool: BloodPool) -> SeriesScores:
    """Every method of a contrast-enhanced scan excluded (reference labels too: the 130 HU threshold counts the
    iodinated lumen), with the blood-pool reading in the message and the QC picture."""
    out = SeriesScores()
    msg = (f"series {task.series_key}: contrast enhanced: the heart's blood pool measures {pool.median_hu:.0f} HU "
           f"(median of {pool.voxels} voxels in the core of its box; unenhanced blood is 30-60 HU, the limit "
           f"{CONTRAST_BLOOD_POOL_HU:.0f} HU); calcium scores on contrast CT are not valid")
    methods = ((CLASSIC,) + ((REGRESSION, *task.segmentation_methods) if task.inference else ())
               + ((REFERENCE,) if task.label_path else ()))
    for method in methods:
        out.scores.append(_score_row(task, method, "excluded", reason=CONTRAST_IMAGE, message=msg))
        out.exclusions.append(_exclusion(task, method, CONTRAST_IMAGE, msg))
    qc_rel = None
    if task.qc_pictures:
        try:
            qc_rel = _write_picture(task, layout, hu, spacing, region, None, box, {}, out.scores)
        except Exception as exc:  # a picture must never cost a row
            log.warning("series %s: QC picture failed: %s", task.series_key, type(exc).__name__)
    out.region = _region_row(task, region, "contrast_enhanced", CONTRAST_IMAGE, int(hu.shape[0]), qc_rel)
    return out


def _write_picture(task: ScoreTask, layout: CohortLayout, hu: np.ndarray, spacing: tuple[float, float, float],
                   region: HeartRegion | None, classic: ScanScore | None,
                   box: tuple[int, int, int, int, int, int] | None, masks: dict[str, np.ndarray],
                   rows: list[dict]) -> str:
    """The scan's QC picture: cuts through the heart box (the inference box, else the heuristic region's box, else
    the volume's centre), the classic method's calcium by weight, every method's counted calcium on its own panel,
    and a header line per method (its score and stratum, or why it was not scored)."""
    if box is None and region is not None:
        box = region.box_zyx
    scored = [r for r in rows if r["status"] == "scored"]
    title = f"series {task.series_key}"
    if not scored:
        title += " | not scored: " + ", ".join(sorted({str(r["reason"]) for r in rows}))
    notes = []
    for r in rows:
        if r["status"] == "scored":
            notes.append(f"{r['method']}: Agatston {r['agatston']:.1f} ({r['five_class']})"
                         + (f", box: {r['region']}" if r["method"] == REGRESSION else ""))
        else:
            notes.append(f"{r['method']}: {r['status']} ({r['reason']}): {r['message'] or ''}")
    weights = classic.result.weight_map() if classic is not None and classic.result is not None else \
        np.zeros(hu.shape, dtype=np.uint8)
    image = render_qc(hu, spacing, box, weights, title, region_mask=None if region is None else region.mask,
                      method_masks=masks or None, notes=tuple(notes))
    path = layout.qc_picture(task.series_key)
    write_qc_png(path, image)
    return str(path.relative_to(layout.results))


def cached_score_series(task: ScoreTask) -> dict:
    """:func:`score_series` with a per-series cache: rows are reused while the fingerprint is unchanged."""
    layout = CohortLayout(Path(task.results), task.cohort)
    path = layout.score_cache(task.series_key)
    fp = score_fingerprint(task)
    t0 = time.perf_counter()
    cached = read_json(path)
    if cached and cached.get("fingerprint") == fp and _picture_present(layout, cached["rows"]):
        return {**cached["rows"], "state": "up_to_date", "seconds": time.perf_counter() - t0}
    try:
        rows = asdict(score_series(task))
    except Exception as exc:  # a fault no method caught: the scan is excluded, its shard goes on; not cached
        log.exception("series %s: scoring failed", task.series_key)
        return {**asdict(_failed_series(task, exc)), "state": "failed", "seconds": time.perf_counter() - t0}
    write_json({"fingerprint": fp, "cacflow_version": __version__, "rows": rows}, path)
    return {**rows, "state": "scored", "seconds": time.perf_counter() - t0}


def _picture_present(layout: CohortLayout, rows: dict) -> bool:
    """False when cached rows name a QC picture that has been deleted (the scan is then scored again)."""
    picture = (rows.get("region") or {}).get("qc_picture")
    return picture is None or (Path(layout.results) / picture).exists()


def _failed_series(task: ScoreTask, exc: Exception) -> SeriesScores:
    """Rows of a scan whose scoring raised outside every method's own handling: each method 'failed' with reason
    scoring_failed and an exclusion, so the cohort's tables say what happened to it."""
    out = SeriesScores()
    msg = f"series {task.series_key}: scoring failed: {type(exc).__name__}: {str(exc)[:200]}"
    methods = ([CLASSIC] + ([REGRESSION] if task.inference else []) + ([REFERENCE] if task.label_path else [])
               + (list(task.segmentation_methods) if task.inference else []))
    for method in methods:
        out.scores.append(_score_row(task, method, "failed", reason="scoring_failed", message=msg))
        out.exclusions.append(_exclusion(task, method, "scoring_failed", msg))
    out.region = _region_row(task, None, "failed", "scoring_failed", None, None)
    return out


def load_score_tasks(layout: CohortLayout, shard: str, root: Path, config: dict, labels_dir: Path | None
                     ) -> list[ScoreTask]:
    """Score tasks of one shard, from the discover step's task table and the preprocessing status records."""
    scoring = config["scoring"]
    grid_name = scoring["grid"]
    g = config["resample"]["grids"][grid_name]
    convention = AgatstonConvention.from_dict(scoring["convention"]).as_dict()
    tasks = []
    status = pd.read_parquet(layout.shard_status(shard)).set_index("series_key")
    inferred = {}
    if layout.shard_infer(shard).exists():
        inferred = {r["series_key"]: r for r in _plain_rows(pd.read_parquet(layout.shard_infer(shard)))}
    frame = pd.read_parquet(layout.shard_tasks(shard))
    for r, region in zip(frame.itertuples(index=False), task_regions(frame)):
        fingerprint, _ = grid_volume(layout, r.series_key, grid_name)
        has_volume = fingerprint is not None
        upstream = status.loc[r.series_key] if r.series_key in status.index else None
        label_path = label_stat = None
        if labels_dir is not None and len(r.paths):
            # a volume file's series UID is derived from its path (cacflow.io.volume_file.volume_series_uid)
            ids = (("", volume_series_uid(r.paths[0])) if is_volume_file(r.paths[0])
                   else read_ids(Path(root) / r.paths[0]))
            found = find_label_map(labels_dir, ids[1]) if ids else None
            if found is not None:
                st = found.stat()
                label_path, label_stat = str(found), (int(st.st_size), int(st.st_mtime_ns))
        tasks.append(ScoreTask(
            series_key=r.series_key, results=str(layout.results), cohort=layout.cohort, grid_name=grid_name,
            grid=(float(g["thickness_mm"]), float(g["increment_mm"])), convention=convention,
            volume_fingerprint=fingerprint,
            upstream_reason=None if upstream is None or has_volume else (upstream.get("reason") or "not_preprocessed"),
            upstream_message=None if upstream is None else upstream.get("message"),
            label_path=label_path, label_stat=label_stat, qc_pictures=bool(scoring["qc_pictures"]),
            inference=inferred.get(r.series_key),
            segmentation_methods=tuple(sorted(config.get("models", {}).get("segmentation", {}))),
            heart_region=region))
    return tasks


def _plain_rows(frame: pd.DataFrame) -> list[dict]:
    """Table rows as dicts of plain Python values (None for missing): JSON- and hash-stable."""
    return [{k: (None if pd.isna(v) else (v.item() if hasattr(v, "item") else v)) for k, v in r.items()}
            for r in frame.astype(object).to_dict(orient="records")]


def run_score_shard(layout: CohortLayout, shard: str, root: Path, config: dict, labels_dir: Path | None = None,
                    workers: int = 1) -> dict[str, pd.DataFrame]:
    """Score every series of ``shard`` and write the shard's scores/vessels/lesions/regions/exclusions tables."""
    tasks = load_score_tasks(layout, shard, root, config, labels_dir)
    scheduler = config["sharding"]["scheduler"]
    if workers <= 1 or len(tasks) <= 1:
        scheduler = "synchronous"
    log.info("%s %s: scoring %d series (%s, %d workers)", layout.cohort, shard, len(tasks), scheduler, workers)
    t0 = time.perf_counter()
    with Progress(len(tasks), f"score {layout.cohort} {shard}"):
        results = list(dask.compute(*[delayed(cached_score_series)(t) for t in tasks], scheduler=scheduler,
                                    num_workers=max(1, workers))) if tasks else []
    wall = time.perf_counter() - t0
    states = pd.Series([r["state"] for r in results]).value_counts().to_dict() if results else {}
    log.info("%s %s scored in %.1f s: %s", layout.cohort, shard, wall, states)
    for t, r in zip(tasks, results):
        log.info("series %s: %s in %.2f s", t.series_key, r["state"], r["seconds"])
    frames = {
        "scores": pd.DataFrame([row for r in results for row in r["scores"]], columns=list(SCORE_COLUMNS)),
        "vessels": pd.DataFrame([row for r in results for row in r["vessels"]], columns=list(VESSEL_COLUMNS)),
        "lesions": pd.DataFrame([row for r in results for row in r["lesions"]], columns=list(LESION_COLUMNS)),
        "regions": pd.DataFrame([r["region"] for r in results], columns=list(REGION_COLUMNS)),
        "exclusions": pd.DataFrame([row for r in results for row in r["exclusions"]],
                                   columns=["series_key", "level", "stage", "method", "reason", "message"]),
    }
    frames = {k: coerce_types(k, v) for k, v in frames.items()}
    meta = {"cacflow_version": __version__, "shard": shard, "wall_s": wall, "states": states}
    for name, frame in frames.items():
        write_parquet(frame, layout.shard_scores(shard, name), meta)
    return frames
