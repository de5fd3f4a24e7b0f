"""What the models learn from, beyond reading labelled series: the training data's hash and heart-box crops.

Reading a labelled cohort (series, participant splits, arrays on the scoring grid) lives in
:mod:`cacflow.pipeline.labelled`, which evaluation uses too; its names are imported here so that the training
modules find everything about their data in one place.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from cacflow.pipeline.labelled import (  # noqa: F401  (the training modules import these from here)
    SPLITS,
    LabelledSeries,
    SeriesArrays,
    labelled_series,
    load_many,
    load_series,
    slice_targets,
    split_of,
)


def data_hash(series: list[LabelledSeries]) -> str:
    """SHA-256 over the series keys, splits and label-file bytes: which data a model learned from."""
    h = hashlib.sha256()
    for s in series:
        h.update(f"{s.series_key}|{s.split}|".encode())
        h.update(Path(s.label_path).read_bytes())
        if s.heart_path is not None:
            h.update(Path(s.heart_path).read_bytes())
    return h.hexdigest()


def widened_crop(box_zyx: tuple[int, int, int, int, int, int], spacing_zyx: tuple[float, float, float],
                 shape_zyx: tuple[int, ...], margin_mm: float
                 ) -> tuple[tuple[slice, slice, slice], tuple[int, int, int, int]]:
    """A heart box (half-open voxel ranges z, y, x) widened in-plane by ``margin_mm`` (clipped to the volume): the
    crop's slices and the nominal box's in-plane ranges (y0, y1, x0, x1) in crop coordinates."""
    z0, z1, y0, y1, x0, x1 = box_zyx
    my, mx = (int(np.ceil(margin_mm / sp)) for sp in spacing_zyx[1:])
    ny, nx = shape_zyx[1:]
    Y0, Y1, X0, X1 = max(0, y0 - my), min(ny, y1 + my), max(0, x0 - mx), min(nx, x1 + mx)
    return (slice(z0, z1), slice(Y0, Y1), slice(X0, X1)), (y0 - Y0, y1 - Y0, x0 - X0, x1 - X0)
