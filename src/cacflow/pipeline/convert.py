"""DICOM series or volume file -> :class:`~cacflow.imaging.volume.Volume` (HU int16, geometry in LPS mm)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cacflow.imaging.geometry import check_spacing, order_slices
from cacflow.imaging.volume import Volume
from cacflow.io.dicom import DicomReadError, read_slice
from cacflow.io.volume_file import is_volume_file, read_volume_file
from cacflow.privacy import file_key

#: Bump when the conversion output changes, so that finished scans are redone.
CONVERTER_VERSION = 1


def convert_series(root: Path, rel_paths: list[str], metadata: dict | None = None,
                   spacing_tolerance: float = 0.1, show_paths: bool = False) -> Volume:
    """Read the slices of one series and stack them in order along the slice normal.

    Args:
        root: cohort root; ``rel_paths`` are relative to it (messages name files by these relative paths).
        rel_paths: the series' image files, in any order.
        metadata: acquisition attributes to attach to the volume.
        spacing_tolerance: allowed relative deviation of slice gaps (checked again on the decoded slices).
        show_paths: name files by their relative path in error messages; otherwise by their ``file_key``
            (source paths are an identifying field, see :mod:`cacflow.privacy`).

    A series of one volume file (NIfTI, NRRD, MetaImage, by its name's ending) is read with
    :func:`cacflow.io.volume_file.read_volume_file` into the same record.

    Raises:
        DicomReadError: with a reason code when a slice cannot be decoded or the stack is not a regular volume.
        VolumeReadError: with a reason code when a volume file cannot be used.
    """
    if not rel_paths:
        raise DicomReadError("no_pixel_data", "series has no image files")
    if len(rel_paths) == 1 and is_volume_file(rel_paths[0]):
        p = rel_paths[0]
        return read_volume_file(Path(root) / p, label=p if show_paths else file_key(p), metadata=metadata)
    slices = [read_slice(Path(root) / p, label=p if show_paths else file_key(p)) for p in rel_paths]
    shapes = {s.hu.shape for s in slices}
    if len(shapes) != 1:
        raise DicomReadError("inconsistent_geometry", f"slices have different sizes {sorted(shapes)}")
    if any(s.ipp is None or s.iop is None for s in slices):
        raise DicomReadError("missing_geometry", "ImagePositionPatient/ImageOrientationPatient missing in a slice")
    if any(s.pixel_spacing is None for s in slices):
        raise DicomReadError("missing_pixel_spacing", "PixelSpacing missing in a slice")
    iops = np.array([s.iop for s in slices])
    if np.abs(iops - iops[0]).max() > 1e-3:
        raise DicomReadError("inconsistent_geometry", "slices differ in ImageOrientationPatient")
    stack = order_slices(np.array([s.ipp for s in slices]), iops[0])
    spacing = check_spacing(stack.positions_mm, spacing_tolerance) if len(slices) > 1 else None
    if spacing is not None and spacing.reason is not None:
        raise DicomReadError(spacing.reason, spacing.message)
    hu = np.stack([slices[i].hu for i in stack.order])
    ps = slices[0].pixel_spacing
    single = float((metadata or {}).get("slice_thickness_mm") or 1.0)  # one slice: its thickness stands in
    increment = float(stack.increment_mm) if len(slices) > 1 else single
    origin = tuple(float(v) for v in slices[stack.order[0]].ipp)
    return Volume(
        hu=hu,
        spacing_zyx=(increment, float(ps[0]), float(ps[1])),
        origin=origin,
        direction=stack.direction,
        z_positions_mm=stack.positions_mm.copy(),
        metadata=dict(metadata or {}),
    )
