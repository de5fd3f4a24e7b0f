"""What every training and maintenance run reads before its network: the labelled cohort's series split by
participant with the scoring grid, the convention and the card's data fields (:func:`cohort_setup`), a model's
hyper-parameters from its config section (:func:`hyper_from_config`), and the series cropped to their pipeline heart
boxes (:func:`split_crops`, :func:`heart_box_crops`)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TypeVar

from cacflow.config import grids
from cacflow.imaging.resample import ZGrid
from cacflow.models.predict import HeartLocalizer
from cacflow.pipeline.layout import CohortLayout
from cacflow.scoring.agatston import AgatstonConvention
from cacflow.training import regressor as tr
from cacflow.training.data import SPLITS, LabelledSeries, data_hash, labelled_series

#: A run's hyper-parameter dataclass.
Hyper = TypeVar("Hyper")


def cohort_setup(layout: CohortLayout, root: Path, labels_dir: Path, config: dict
                 ) -> tuple[list[LabelledSeries], ZGrid, AgatstonConvention, dict]:
    """The training cohort's preprocessed series with a label map in ``labels_dir``, each with its split
    (``training.split``), the scoring grid (``scoring.grid``, voxel sizes in mm), the Agatston convention and the
    card's data fields (cohort, data SHA-256, grid, split seed, fractions and sizes). Refused when no series has a
    label map or a split is empty."""
    tcfg = config["training"]
    grid_name = config["scoring"]["grid"]
    series = labelled_series(layout, root, labels_dir, grid_name, int(tcfg["split"]["seed"]),
                             tuple(tcfg["split"]["fractions"]))
    if not series:
        raise ValueError(f"cohort {layout.cohort}: no preprocessed series with a label map in {labels_dir}; "
                         "a training cohort needs <SeriesInstanceUID>.nii.gz labels (see docs/training.md)")
    by_split = {k: [s for s in series if s.split == k] for k in SPLITS}
    for k, v in by_split.items():
        if not v:
            raise ValueError(f"cohort {layout.cohort}: the {k} split is empty ({len(series)} labelled series); "
                             "add participants or change training.split.fractions")
    synthetic = config["cohorts"].get(layout.cohort, {}).get("synthetic")
    info = {"cohort": layout.cohort, "data_sha256": data_hash(series), "grid": grid_name,
            # the generated cohort's phantom anatomy and size, so that its test split can be generated again
            "anatomy": None if synthetic is None else int(synthetic["anatomy"]),
            "cohort_participants": None if synthetic is None else int(synthetic["n"]),
            "split_seed": int(tcfg["split"]["seed"]), "split_fractions": list(tcfg["split"]["fractions"]),
            "split_sizes": {k: {"series": len(v), "participants": len({s.participant for s in v})}
                            for k, v in by_split.items()}}
    return series, grids(config)[grid_name], AgatstonConvention.from_dict(config["scoring"]["convention"]), info


def hyper_from_config(cls: type[Hyper], overrides: dict, defaults: Hyper | None = None) -> Hyper:
    """``defaults`` (the dataclass ``cls``'s own when None) overridden by a config section's ``overrides`` (lists
    become tuples)."""
    hp = cls() if defaults is None else defaults
    kw = {k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()}
    return replace(hp, **kw)


#: In-plane margin (mm) of the segmentation scorers' crops around the heart box.
MASK_CROP_MARGIN_MM = 8.0


def split_crops(series: list[LabelledSeries], localizer: HeartLocalizer, grid: ZGrid,
                convention: AgatstonConvention, margin_mm: float, splits: tuple[str, ...] = SPLITS) -> dict:
    """The labelled series of each split cropped to their pipeline heart boxes widened by ``margin_mm``."""
    return {k: tr.load_crops([s for s in series if s.split == k], localizer, grid, convention, margin_mm)
            for k in splits}


def heart_box_crops(series: list[LabelledSeries], localizer_dir: Path, device, grid: ZGrid,
                    convention: AgatstonConvention) -> tuple[HeartLocalizer, dict]:
    """The localizer and the labelled series of each split cropped to their pipeline heart boxes
    (:data:`MASK_CROP_MARGIN_MM`)."""
    localizer = HeartLocalizer.load(localizer_dir, device)
    return localizer, split_crops(series, localizer, grid, convention, MASK_CROP_MARGIN_MM)
