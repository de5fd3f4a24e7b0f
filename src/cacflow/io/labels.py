"""Reference annotations: label maps of coronary calcium per series (NIfTI), read onto the series' own grid.

A cohort may name a folder of label maps, one per series, ``<SeriesInstanceUID>.nii.gz`` (or ``.nii``), in the
geometry of the DICOM series (any axis order or flip of it), with labels 0 background, 1 LM, 2 LAD, 3 CX, 4 RCA.
NIfTI stores a voxel-to-RAS affine; DICOM and cacflow use LPS, so the first two rows are negated on the way in and
out. A label map whose grid does not coincide with the series (up to axis permutation and flips, within
``tolerance_mm``) is refused with :class:`LabelMapError` rather than resampled silently.
"""

from __future__ import annotations

import os
from pathlib import Path

import nibabel as nib
import numpy as np

from cacflow.imaging.volume import Geometry

#: Label values allowed in reference label maps (0 = background).
ALLOWED_LABELS = (0, 1, 2, 3, 4)
_RAS_FROM_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])
SUFFIXES = (".nii.gz", ".nii")


class LabelMapError(Exception):
    """A reference label map that cannot be used; ``reason`` is a stable code, ``message`` names file and fix."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason, self.message = reason, message


def find_label_map(folder: Path, series_uid: str) -> Path | None:
    """The label map of a series in ``folder`` (``<uid>.nii.gz`` or ``<uid>.nii``), or None."""
    for suffix in SUFFIXES:
        p = Path(folder) / f"{series_uid}{suffix}"
        if p.is_file():
            return p
    return None


def write_label_map(path: Path, labels: np.ndarray, geometry: Geometry) -> Path:
    """Write labels (z, y, x) on ``geometry`` (a series' grid) as NIfTI (uint8, scanner sform/qform), atomically."""
    if labels.shape != geometry.shape_zyx:
        raise ValueError(f"labels {labels.shape} do not match the grid {geometry.shape_zyx}")
    img = nib.Nifti1Image(np.ascontiguousarray(labels.astype(np.uint8).transpose(2, 1, 0)),
                          _RAS_FROM_LPS @ geometry.affine_lps())
    img.set_sform(img.affine, code=1)
    img.set_qform(img.affine, code=1)
    img.header["descrip"] = b"cacflow labels 1 LM 2 LAD 3 CX 4 RCA"
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = ".nii.gz" if path.name.endswith(".gz") else ".nii"  # nibabel picks compression from the suffix
    tmp = path.with_name(f".tmp-{os.getpid()}-{path.name[: -len(suffix)]}{suffix}")
    nib.save(img, str(tmp))
    os.replace(tmp, path)
    return path


def read_label_map(path: Path, geometry: Geometry, tolerance_mm: float = 0.01) -> np.ndarray:
    """Labels (uint8, z, y, x) on ``geometry`` (the series' native grid).

    Raises:
        LabelMapError: ``reference_unreadable``, ``reference_geometry_mismatch`` or ``reference_labels_invalid``.
    """
    name = Path(path).name
    try:
        img = nib.load(str(path))
        data = np.asanyarray(img.dataobj)
        affine = _RAS_FROM_LPS @ np.asarray(img.affine, dtype=np.float64)
    except Exception as exc:  # nibabel raises several types for corrupt files
        raise LabelMapError("reference_unreadable",
                            f"label map {name}: cannot be read as NIfTI ({type(exc).__name__}); re-export it") from None
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise LabelMapError("reference_geometry_mismatch", f"label map {name}: {data.ndim}-D, expected 3-D")
    # index transform: label voxel (i, j, k) -> series voxel (x, y, z)
    transform = np.linalg.inv(geometry.affine_lps()) @ affine
    rot = transform[:3, :3]
    perm = np.abs(np.round(rot))
    ok = (np.allclose(rot, np.round(rot),
                      atol=1e-3) and np.all(perm.sum(axis=0) == 1) and np.all(perm.sum(axis=1) == 1))
    target_xyz = tuple(geometry.shape_zyx[::-1])
    if ok:
        # series axis a takes label axis src[a], possibly flipped
        src = [int(np.argmax(perm[a])) for a in range(3)]
        out = np.transpose(data, src)
        for a in range(3):
            if np.round(rot[a, src[a]]) < 0:
                out = np.flip(out, axis=a)
        # after the flips, the label grid's first voxel must land on the series' first voxel
        origin_err = _origin_error(transform, data.shape, src, rot)
        spacing_mm = np.array(geometry.spacing_zyx[::-1])
        ok = out.shape == target_xyz and bool(np.all(np.abs(origin_err) * spacing_mm <= tolerance_mm))
    if not ok:
        raise LabelMapError("reference_geometry_mismatch",
                            f"label map {name}: grid {data.shape} with its affine does not coincide with the series "
                            f"grid {target_xyz} (x, y, z); export it in the series' own geometry")
    values = np.unique(out)
    bad = sorted(set(values.tolist()) - set(ALLOWED_LABELS))
    if bad or not np.all(np.equal(np.mod(values, 1), 0)):
        raise LabelMapError("reference_labels_invalid", f"label map {name}: values {bad[:5]} outside "
                            f"{list(ALLOWED_LABELS)} (1 LM, 2 LAD, 3 CX, 4 RCA)")
    return np.ascontiguousarray(out.transpose(2, 1, 0)).astype(np.uint8)


def _origin_error(transform: np.ndarray, shape: tuple[int, ...], src: list[int], rot: np.ndarray) -> np.ndarray:
    """Offset (in series voxels, x, y, z) of the reoriented label grid's first voxel from the series' first voxel."""
    ijk = np.zeros(3)
    for a in range(3):
        if np.round(rot[a, src[a]]) < 0:
            ijk[src[a]] = shape[src[a]] - 1
    return (transform @ np.append(ijk, 1.0))[:3]
