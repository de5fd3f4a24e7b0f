"""Volume files (NIfTI, NRRD, MetaImage) read with SimpleITK: header records for the inventory, HU volumes for
conversion. Each file is one series.

A volume file carries its grid (size, spacing, origin, direction) but none of the acquisition attributes a DICOM
header has. Those come from an optional sidecar JSON beside the file (``scan.nii.gz`` -> ``scan.json``, BIDS
style: DICOM keywords as keys, see :data:`SIDECAR_KEYS`) or from the cohort's ``volumes.defaults`` in the config;
what neither gives stays unknown (None) and is listed in the record's ``unknown_fields``.

Keys of a volume file's series are derived from its path relative to the cohort root, never the path itself (a file
name can hold an identifier): SeriesInstanceUID and StudyInstanceUID are ``2.25.<integer>`` UIDs hashed from the
path, the participant is a hash of the file's top folder below the root (``<participant>/...``, as DICOM roots are
laid out) unless the sidecar gives PatientID. These reach outputs under the same privacy settings as DICOM values.

SimpleITK reports geometry in LPS (as DICOM does) and its arrays are (z, y, x). Conversion reorients the grid by
axis permutation and flips only (no interpolation) so that x runs to the patient's left, y to posterior and z to
superior, as an axial DICOM series is stacked.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np

from cacflow.imaging.hu import MAX_LOWEST_HU, hu_to_int16, lowest_is_hu
from cacflow.imaging.volume import Volume
from cacflow.io.dicom import FileHeader

#: File name endings read as volume files, and the format recorded for each (longest ending first).
VOLUME_SUFFIXES: dict[str, str] = {
    ".nii.gz": "nifti", ".nii": "nifti", ".nrrd": "nrrd", ".nhdr": "nrrd", ".mha": "metaimage", ".mhd": "metaimage",
}

#: Sidecar keys (DICOM keywords, BIDS style as dcm2niix writes them) -> (FileHeader field, value type). Other keys
#: in a sidecar are ignored. ``StudyDate`` takes YYYYMMDD or YYYY-MM-DD; ``AcquisitionDateTime`` (ISO 8601) is used
#: for the date when StudyDate is absent.
SIDECAR_KEYS: dict[str, tuple[str, type]] = {
    "Modality": ("modality", str),
    "Manufacturer": ("manufacturer", str),
    "ManufacturersModelName": ("model", str),
    "KVP": ("kvp", float),
    "ConvolutionKernel": ("convolution_kernel", str),
    "SliceThickness": ("slice_thickness", float),
    "XRayTubeCurrent": ("tube_current_ma", float),
    "XRayExposure": ("exposure_mas", float),
    "CTDIvol": ("ctdi_vol", float),
    "ContrastBolusAgent": ("contrast_agent", str),
    "BodyPartExamined": ("body_part", str),
    "PatientPosition": ("patient_position", str),
    "SeriesDescription": ("series_description", str),
    "StudyDate": ("study_date", date),
    "AcquisitionDateTime": ("study_date", date),
    "PatientID": ("patient_id", str),
    "StudyInstanceUID": ("study_uid", str),
}

#: Keys a cohort may give for all its volume files (``cohorts.<name>.volumes.defaults``): the sidecar keys that
#: describe an acquisition, not a person or a study.
DEFAULT_KEYS: tuple[str, ...] = tuple(k for k in SIDECAR_KEYS if k not in ("PatientID", "StudyInstanceUID",
                                                                           "AcquisitionDateTime"))

#: The acquisition fields whose absence is recorded in ``unknown_fields``: FileHeader name -> the name written
#: (the manifest's column; ``participant`` when PatientID is not given and a key is derived from the path).
TRACKED_FIELDS: dict[str, str] = {"kvp": "kvp", "convolution_kernel": "kernel", "manufacturer": "manufacturer",
                                  "slice_thickness": "slice_thickness_mm", "study_date": "study_date",
                                  "patient_id": "participant"}

#: Pixel types that can hold CT numbers (SimpleITK names): 16 bits or more, scalar, real.
HU_PIXEL_TYPES: tuple[str, ...] = (
    "16-bit signed integer", "16-bit unsigned integer", "32-bit signed integer", "32-bit unsigned integer",
    "64-bit signed integer", "64-bit unsigned integer", "32-bit float", "64-bit float",
)

_DATA_FILE = {".mhd": re.compile(r"^\s*ElementDataFile\s*=\s*(.+?)\s*$", re.MULTILINE),
              ".nhdr": re.compile(r"^\s*data ?file\s*:\s*(.+?)\s*$", re.MULTILINE | re.IGNORECASE)}


class VolumeReadError(Exception):
    """A volume file could not be used; ``reason`` is a stable code, the message says what and how to fix."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason
        self.message = message


def volume_format(path: str | Path) -> str | None:
    """'nifti', 'nrrd' or 'metaimage' when the file name ends in a volume suffix (any case), else None."""
    name = Path(path).name.lower()
    for suffix, fmt in VOLUME_SUFFIXES.items():
        if name.endswith(suffix):
            return fmt
    return None


def is_volume_file(path: str | Path) -> bool:
    """Whether ``path`` is read as a volume file (by its name's ending)."""
    return volume_format(path) is not None


def sidecar_path(path: Path) -> Path:
    """The sidecar JSON of a volume file: its name with the volume ending replaced by ``.json``."""
    name = path.name
    for suffix in VOLUME_SUFFIXES:
        if name.lower().endswith(suffix):
            return path.with_name(name[: -len(suffix)] + ".json")
    return path.with_name(name + ".json")


def data_files(path: Path) -> list[Path]:
    """The pixel data files a detached header (``.mhd``, ``.nhdr``) names; [] for single-file formats, for data
    stored in the header itself (``LOCAL``) and for file lists or patterns (left to the reader)."""
    suffix = path.suffix.lower()
    if suffix not in _DATA_FILE:
        return []
    try:
        with open(path, encoding="latin-1") as fh:
            text = fh.read(65536)
    except OSError:
        return []
    m = _DATA_FILE[suffix].search(text)
    if m is None:
        return []
    value = m.group(1)
    if value.upper() == "LOCAL" or value.upper().startswith("LIST") or "%" in value or " " in value:
        return []
    return [path.parent / value]


def companion_files(path: Path) -> list[Path]:
    """Files that belong to a volume file and are not series of their own: its sidecar and its data files."""
    return [sidecar_path(path), *data_files(path)]


def derived_uid(kind: str, rel_path: str) -> str:
    """A DICOM-style UID (``2.25.<decimal>``, 128 bits of SHA-256) for a volume file's ``kind`` ('series' or
    'study') from its path relative to the cohort root: stable while the file stays where it is."""
    digest = hashlib.sha256(f"{kind}:{rel_path}".encode()).hexdigest()[:32]
    return f"2.25.{int(digest, 16)}"


def volume_series_uid(rel_path: str) -> str:
    """The SeriesInstanceUID cacflow gives the volume file at ``rel_path`` (relative to the cohort root, POSIX
    separators): use it to name reference label maps or heart regions of volume files."""
    return derived_uid("series", rel_path)


def participant_key(rel_path: str) -> str:
    """A pseudonymous participant key for a volume file without PatientID: a hash of its top folder below the
    root (``<participant>/...``), or of the file itself when it lies directly in the root."""
    top = rel_path.split("/", 1)[0] if "/" in rel_path else rel_path
    return "v" + hashlib.sha256(f"participant:{top}".encode()).hexdigest()[:16]


def _date(value, key: str) -> str:
    text = str(value).strip()
    m = re.match(r"^(\d{4})-?(\d{2})-?(\d{2})", text)
    if not m:
        raise ValueError(f"{key} {text!r} is not a date (YYYYMMDD or YYYY-MM-DD)")
    date(int(m.group(1)), int(m.group(2)), int(m.group(3)))  # raises for impossible dates
    return m.group(1) + m.group(2) + m.group(3)


def acquisition_fields(values: dict, source: str) -> dict:
    """FileHeader fields from sidecar-style ``values`` (keys of :data:`SIDECAR_KEYS`; others ignored).

    Raises ValueError naming ``source``, the key and the expected type when a value has the wrong type.
    """
    out: dict = {}
    for key in sorted(values, key=lambda k: k == "StudyDate"):  # StudyDate wins over AcquisitionDateTime
        if key not in SIDECAR_KEYS or values[key] is None:
            continue
        field, kind = SIDECAR_KEYS[key]
        value = values[key]
        try:
            if kind is float:
                try:
                    value = float(value) if not isinstance(value, bool) else None
                except (TypeError, ValueError):
                    value = None
                if value is None:
                    raise ValueError(f"{key} must be a number, got {values[key]!r}")
                if not np.isfinite(value):
                    raise ValueError(f"{key} must be finite, got {value!r}")
            elif kind is date:
                value = _date(value, key)
            else:
                if not isinstance(value, (str, int, float)) or isinstance(value, bool):
                    raise ValueError(f"{key} must be a string, got {value!r}")
                value = str(value).strip() or None
        except ValueError as exc:
            raise ValueError(f"{source}: {exc}") from None
        if value is not None:
            out[field] = value
    return out


def read_sidecar(path: Path, label: str) -> dict:
    """The sidecar of volume file ``path`` as FileHeader fields ({} when there is none). Raises ValueError with a
    message naming the sidecar as ``label``'s ``.json`` when it is not a JSON object or a value has the wrong type."""
    side = sidecar_path(path)
    if not side.is_file():
        return {}
    name = label[: -len(path.name)] + side.name if label.endswith(path.name) else side.name
    try:
        values = json.loads(side.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{name}: not readable as JSON ({type(exc).__name__}: {str(exc)[:100]})") from None
    if not isinstance(values, dict):
        raise ValueError(f"{name}: must be a JSON object of DICOM keywords (e.g. {{\"KVP\": 120}})")
    return acquisition_fields(values, name)


def read_volume_header(path: Path, root: Path, defaults: dict | None = None) -> FileHeader:
    """The header record of one volume file (no pixel data): grid from SimpleITK, acquisition fields from the
    sidecar, then from ``defaults`` (sidecar-style keys), the rest unknown.

    Never raises for bad files: an unusable file comes back with ``error`` (a reason code) and ``message``.
    """
    import SimpleITK as sitk

    rel = Path(os.path.relpath(path, root)).as_posix()
    rec = FileHeader(path=rel, source_format=volume_format(path), has_pixel_data=True)
    try:
        st = path.stat()
        rec.size_bytes, rec.mtime_ns = int(st.st_size), int(st.st_mtime_ns)
        for extra in data_files(path):
            if not extra.is_file():
                rec.error = "volume_data_missing"
                rec.message = (f"{rel}: its header names the pixel data file {extra.name}, which is missing; copy it "
                               "beside the header or remove the header")
                return rec
            est = extra.stat()
            rec.size_bytes += int(est.st_size)
            rec.mtime_ns = max(rec.mtime_ns, int(est.st_mtime_ns))
    except OSError as exc:
        rec.error, rec.message = "unreadable_file", f"{rel}: cannot stat file ({exc.strerror})"
        return rec
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as exc:
        rec.error = "volume_file_unreadable"
        rec.message = f"{rel}: SimpleITK cannot read its header ({_first_line(exc)}); re-export the file"
        return rec
    rec.dimension = int(reader.GetDimension())
    rec.volume_size = [int(n) for n in reader.GetSize()]
    rec.volume_spacing = [float(s) for s in reader.GetSpacing()]
    rec.direction = [float(v) for v in reader.GetDirection()]
    rec.pixel_type = sitk.GetPixelIDValueAsString(reader.GetPixelID())
    rec.samples_per_pixel = int(reader.GetNumberOfComponents())
    if rec.dimension == 3:
        rec.ipp = [float(v) for v in reader.GetOrigin()]
    try:
        fields = {**acquisition_fields(defaults or {}, "volumes.defaults"), **read_sidecar(path, rel)}
    except ValueError as exc:
        rec.error = "sidecar_invalid"
        rec.message = f"{exc}; fix the sidecar (keys: docs/guide.md, 'Volume files')"
        return rec
    for name, value in fields.items():
        setattr(rec, name, value)
    rec.series_uid = volume_series_uid(rel)
    rec.study_uid = rec.study_uid or derived_uid("study", rel)
    missing = [written for f, written in TRACKED_FIELDS.items() if getattr(rec, f) is None]
    if rec.patient_id is None:
        rec.patient_id = participant_key(rel)
    rec.unknown_fields = ",".join(missing) if missing else None
    return rec


def read_volume_headers(paths: list[Path], root: Path, defaults: dict | None = None) -> list[dict]:
    """Header rows (dicts) for a batch of volume files."""
    return [read_volume_header(Path(p), root, defaults).as_row() for p in paths]


def _header_text(path: Path) -> tuple[dict[str, str], int]:
    """Fields of an NRRD (``key: value``) or MetaImage (``key = value``) header and the byte offset where inline
    pixel data start (after the NRRD header's blank line, after MetaImage's ``ElementDataFile`` line)."""
    fields: dict[str, str] = {}
    offset = 0
    nrrd = path.suffix.lower() in (".nrrd", ".nhdr")
    with open(path, "rb") as fh:
        for raw in fh:
            offset += len(raw)
            line = raw.decode("latin-1").strip()
            if nrrd and not line:
                break
            if line.startswith("#"):
                continue
            key, sep, value = line.partition(":=" if nrrd and ":=" in line else (":" if nrrd else "="))
            if sep:
                fields[key.strip().lower()] = value.strip()
            if not nrrd and key.strip().lower() == "elementdatafile":
                break
            if offset > 1 << 20:  # no header is this long: binary data without the expected end of header
                break
    return fields, offset


def _stored_data(path: Path, image_bytes: int) -> tuple[Path, int, int, str] | None:
    """Where a volume file's stored pixels are: (data file, byte offset of the pixels, their length in bytes, encoding
    'raw' or 'deflate'); None for layouts not checked (NRRD ascii/hex/bzip2, data file lists, byte skips).
    ``image_bytes``: voxels x components x bytes per component as SimpleITK reports them (NRRD, MetaImage)."""
    fmt = volume_format(path)
    if fmt == "nifti":
        import nibabel as nib

        header = nib.load(str(path)).header
        nbytes = int(np.prod(header.get_data_shape(), dtype=np.int64)) * header.get_data_dtype().itemsize
        compressed = path.name.lower().endswith(".gz")
        return path, int(header.get_data_offset()), nbytes, "deflate" if compressed else "raw"
    fields, offset = _header_text(path)
    detached = data_files(path)
    target = detached[0] if detached else path
    start = 0 if detached else offset
    if fmt == "nrrd":
        encoding = fields.get("encoding", "raw").lower()
        if ("byte skip" in fields and fields["byte skip"] != "0") or ("line skip" in fields
                                                                      and fields["line skip"] != "0"):
            return None
        if encoding == "raw":
            return target, start, image_bytes, "raw"
        if encoding in ("gzip", "gz"):
            return target, start, image_bytes, "deflate"
        return None
    if fields.get("headersize", "0") not in ("0", "-1"):
        return None
    compressed = fields.get("compresseddata", "false").lower() == "true"
    return target, start, image_bytes, "deflate" if compressed else "raw"


def _inflated_length(path: Path, start: int, limit: int) -> tuple[int, bool]:
    """(bytes a gzip or zlib stream from ``start`` inflates to, up to ``limit``; whether it ended properly)."""
    import zlib

    total, ended = 0, False
    with open(path, "rb") as fh:
        fh.seek(start)
        d = zlib.decompressobj(wbits=47)  # gzip or zlib header, detected
        while total < limit:
            chunk = d.unconsumed_tail or fh.read(1 << 20)
            if not chunk:
                break
            total += len(d.decompress(chunk, 1 << 24))
            if d.eof:
                ended = True
                if not d.unused_data:
                    break
                rest = d.unused_data  # a further gzip member
                d = zlib.decompressobj(wbits=47)
                total += len(d.decompress(rest, 1 << 24))
                ended = d.eof
    return total, ended or total >= limit


def check_complete(path: Path, image_bytes: int) -> str | None:
    """None when the file holds all its pixel data, else what is missing. ITK fills the missing part of a truncated
    file with zeros without an error, so this is checked here, from the stored layout, before reading."""
    import zlib

    try:
        where = _stored_data(path, image_bytes)
    except Exception as exc:  # nibabel raises several types on damaged headers
        return f"its header cannot be parsed ({type(exc).__name__}: {str(exc)[:100]})"
    if where is None:
        return None
    target, start, nbytes, encoding = where
    if encoding == "raw":
        have = target.stat().st_size - start
        return None if have >= nbytes else (f"{target.name} holds {max(0, have)} bytes of pixel data, the header "
                                            f"needs {nbytes}")
    try:
        have, ended = _inflated_length(target, 0 if volume_format(path) == "nifti" else start,
                                       nbytes + (start if volume_format(path) == "nifti" else 0))
    except zlib.error as exc:
        return f"its compressed data are corrupt ({exc})"
    if volume_format(path) == "nifti":
        have -= start
    if have < nbytes or not ended:
        return f"its compressed data end after {max(0, have)} of {nbytes} bytes of pixel data"
    return None


def _first_line(exc: Exception) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    # ITK messages start with the source location; the description is the last informative line
    text = lines[-1] if lines else type(exc).__name__
    for prefix in ("sitk::ERROR:", "itk::ERROR:"):
        text = text.split(prefix, 1)[-1].strip()
    return text[:200]


@dataclass(frozen=True)
class PixelCheck:
    """Outcome of :func:`check_pixel_type`: ``reason`` is None when the pixels can be converted."""

    reason: str | None
    message: str


def check_pixel_type(dimension: int, pixel_type: str, components: int, size: list[int]) -> PixelCheck:
    """Whether a volume file's grid and pixel type can hold one CT volume: 3-D, one scalar real component of 16 bits
    or more (:data:`HU_PIXEL_TYPES`)."""
    if dimension != 3:
        return PixelCheck("volume_not_3d", f"a {dimension}-D image (size {'x'.join(map(str, size))}); cacflow needs "
                          "one 3-D CT volume per file: split a 4-D file into one file per volume, stack 2-D "
                          "images into a 3-D file")
    if components != 1 or pixel_type not in HU_PIXEL_TYPES:
        return PixelCheck("volume_pixel_type", f"pixel type '{pixel_type}' with {components} component(s); a CT "
                          "volume needs one scalar value per voxel of 16 bits or more (int16, uint16, int32, float) to "
                          "hold CT numbers from -1024 HU; export the CT numbers, not a rendering, a mask or an RGB "
                          "image")
    return PixelCheck(None, "ok")


def read_volume_file(path: Path, label: str | None = None, metadata: dict | None = None) -> Volume:
    """Read one volume file into a :class:`Volume` (int16 HU, (z, y, x), LPS mm).

    The grid is reoriented by axis permutation and flips (``DICOMOrient`` to LPS, no interpolation) so that x runs
    to patient left, y to posterior and z to superior; voxel values and physical positions are unchanged.
    Values are taken as HU as stored (NIfTI ``scl_slope``/``scl_inter`` applied by SimpleITK) and rounded with
    :func:`hu_to_int16`.

    Raises :class:`VolumeReadError` with a reason code (``volume_file_unreadable``, ``volume_not_3d``,
    ``volume_pixel_type``, ``not_hu``); messages name the file as ``label`` (default: the path).
    """
    import SimpleITK as sitk

    name = label or str(path)
    missing = [p.name for p in data_files(path) if not p.is_file()]
    if missing:
        raise VolumeReadError("volume_data_missing", f"{name}: its header names the pixel data file {missing[0]}, "
                              "which is missing; copy it beside the header")
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
        bits = re.search(r"(\d+)-bit", sitk.GetPixelIDValueAsString(reader.GetPixelID()))
        image_bytes = (int(np.prod(reader.GetSize(), dtype=np.int64)) * int(reader.GetNumberOfComponents())
                       * (int(bits.group(1)) // 8 if bits else 1))
        problem = check_complete(path, image_bytes)
        if problem is not None:
            raise VolumeReadError("volume_file_unreadable", f"{name}: truncated: {problem}; copy or export the "
                                  "file again")
        image = reader.Execute()
    except RuntimeError as exc:
        raise VolumeReadError("volume_file_unreadable", f"{name}: SimpleITK cannot read its pixels "
                              f"({_first_line(exc)}); the file is truncated or corrupt: copy or export it again"
                              ) from None
    check = check_pixel_type(image.GetDimension(), image.GetPixelIDTypeAsString(),
                             image.GetNumberOfComponentsPerPixel(), list(image.GetSize()))
    if check.reason is not None:
        raise VolumeReadError(check.reason, f"{name}: {check.message}")
    image = sitk.DICOMOrient(image, "LPS")
    values = sitk.GetArrayViewFromImage(image)  # (z, y, x)
    if values.size == 0:
        raise VolumeReadError("volume_not_3d", f"{name}: the volume has no voxels (size {image.GetSize()})")
    if np.issubdtype(values.dtype, np.floating) and not np.isfinite(values).all():
        raise VolumeReadError("not_hu", f"{name}: holds NaN or infinite values; CT numbers are finite HU")
    lowest = float(values.min())
    if not lowest_is_hu(lowest):
        raise VolumeReadError("not_hu", f"{name}: values range from {lowest:g} to {float(values.max()):g}, and a CT "
                              f"in HU holds air or lung below {MAX_LOWEST_HU:g} HU: stored values without their "
                              "rescale (e.g. 0-4095 without the -1024 HU offset), a mask or a non-CT image; write "
                              "the volume in HU")
    hu = hu_to_int16(values) if values.dtype != np.int16 else np.array(values, dtype=np.int16)
    sx, sy, sz = (float(s) for s in image.GetSpacing())
    origin = tuple(float(v) for v in image.GetOrigin())
    direction = np.asarray(image.GetDirection(), dtype=np.float64).reshape(3, 3)
    z0 = float(np.asarray(origin) @ direction[:, 2])
    return Volume(
        hu=hu,
        spacing_zyx=(sz, sy, sx),
        origin=(origin[0], origin[1], origin[2]),
        direction=direction,
        z_positions_mm=z0 + sz * np.arange(hu.shape[0], dtype=np.float64),
        metadata=dict(metadata or {}),
    )


__all__ = [
    "DEFAULT_KEYS", "HU_PIXEL_TYPES", "SIDECAR_KEYS", "VOLUME_SUFFIXES", "VolumeReadError", "check_pixel_type",
    "companion_files", "data_files", "is_volume_file", "participant_key", "read_sidecar", "read_volume_file",
    "read_volume_header", "read_volume_headers", "sidecar_path", "volume_format", "volume_series_uid",
]
