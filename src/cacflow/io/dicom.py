"""DICOM reading: header-only records for the inventory, and HU pixel decoding for conversion.

Only the tags listed in :data:`HEADER_KEYWORDS` are parsed (``specific_tags``), so identifying attributes such
as PatientName or PatientBirthDate are never read into memory, let alone written anywhere.
"""

from __future__ import annotations

import os
import struct
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import pydicom
from pydicom.errors import InvalidDicomError
from pydicom.uid import DeflatedExplicitVRLittleEndian, ExplicitVRBigEndian, ImplicitVRLittleEndian

from cacflow.imaging.hu import hu_to_int16

# A Philips private tag in real data is stored with a length that contradicts its dictionary VR; without this
# pydicom raises when the element is touched. This is pydicom's own documented switch, set once on import.
pydicom.config.convert_wrong_length_to_UN = True
# Malformed values (non-conformant UIDs, odd lengths) are common in cohort data; they are judged by the selection
# rules, not by pydicom warnings, which would also echo header values into logs.
pydicom.config.settings.reading_validation_mode = pydicom.config.IGNORE

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
ENHANCED_CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2.1"
SECONDARY_CAPTURE_STORAGE = "1.2.840.10008.5.1.4.1.1.7"

#: The attributes read from every file. Nothing else is parsed.
HEADER_KEYWORDS: tuple[str, ...] = (
    "SOPClassUID", "SOPInstanceUID", "Modality", "ImageType", "StudyInstanceUID", "SeriesInstanceUID",
    "FrameOfReferenceUID", "PatientID", "StudyDate", "SeriesDate", "AcquisitionDate", "SeriesNumber",
    "AcquisitionNumber", "InstanceNumber", "ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing",
    "SliceThickness", "SpacingBetweenSlices", "Rows", "Columns", "BitsAllocated", "BitsStored", "HighBit",
    "PixelRepresentation", "SamplesPerPixel", "PhotometricInterpretation", "NumberOfFrames", "RescaleSlope",
    "RescaleIntercept", "PixelPaddingValue", "KVP", "ConvolutionKernel", "Manufacturer", "ManufacturerModelName",
    "GantryDetectorTilt", "ContrastBolusAgent", "SeriesDescription", "BodyPartExamined", "PatientPosition",
    "XRayTubeCurrent", "Exposure", "CTDIvol",
)

_PIXEL_DATA_TAG_LE = b"\xe0\x7f\x10\x00"
_PIXEL_DATA_TAG_BE = b"\x7f\xe0\x00\x10"


class DicomReadError(Exception):
    """A file could not be used; ``reason`` is a stable code, the message says what and how to fix."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass
class FileHeader:
    """Header fields of one DICOM file (no pixel data). Lengths in mm, positions in LPS mm."""

    path: str  # relative to the cohort root, POSIX separators
    size_bytes: int = 0
    mtime_ns: int = 0
    error: str | None = None  # reason code when the file is unusable
    message: str | None = None
    transfer_syntax: str | None = None
    sop_class_uid: str | None = None
    sop_instance_uid: str | None = None
    modality: str | None = None
    image_type: str | None = None  # values joined by "\\", upper case
    study_uid: str | None = None
    series_uid: str | None = None
    frame_of_reference_uid: str | None = None
    patient_id: str | None = None
    study_date: str | None = None
    series_number: int | None = None
    acquisition_number: int | None = None
    instance_number: int | None = None
    ipp: list[float] | None = None  # ImagePositionPatient (3)
    iop: list[float] | None = None  # ImageOrientationPatient (6)
    pixel_spacing: list[float] | None = None  # (row spacing, column spacing)
    slice_thickness: float | None = None
    spacing_between_slices: float | None = None
    rows: int | None = None
    columns: int | None = None
    bits_allocated: int | None = None
    bits_stored: int | None = None
    pixel_representation: int | None = None
    samples_per_pixel: int | None = None
    photometric: str | None = None
    number_of_frames: int | None = None
    rescale_slope: float | None = None
    rescale_intercept: float | None = None
    pixel_padding_value: int | None = None
    kvp: float | None = None
    convolution_kernel: str | None = None
    manufacturer: str | None = None
    model: str | None = None
    gantry_tilt: float | None = None
    contrast_agent: str | None = None
    series_description: str | None = None
    body_part: str | None = None
    patient_position: str | None = None
    tube_current_ma: float | None = None
    exposure_mas: float | None = None
    ctdi_vol: float | None = None
    has_pixel_data: bool | None = None
    pixel_data_length: int | None = None  # bytes, None when encapsulated or unknown
    # volume files (cacflow.io.volume_file) only; None for DICOM files
    source_format: str | None = None  # nifti | nrrd | metaimage
    dimension: int | None = None  # image dimension (3 for a CT volume)
    volume_size: list[int] | None = None  # voxels along the file's (x, y, z, ...) axes
    volume_spacing: list[float] | None = None  # mm along the file's (x, y, z, ...) axes
    direction: list[float] | None = None  # direction matrix, row-major, columns = image axes in LPS
    pixel_type: str | None = None  # SimpleITK pixel type name
    unknown_fields: str | None = None  # acquisition fields neither the sidecar nor the cohort defaults give

    def as_row(self) -> dict:
        """The record as a flat dict (lists kept as lists)."""
        return asdict(self)


FILE_HEADER_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(FileHeader))


def _text(value) -> str | None:
    if value is None:
        return None
    if isinstance(value, pydicom.multival.MultiValue):
        return "\\".join(str(v) for v in value)
    text = str(value).strip()
    return text or None


def _float(value) -> float | None:
    if value is None or value == "":
        return None
    if isinstance(value, (pydicom.multival.MultiValue, list, tuple)):
        value = value[0] if len(value) else None
        if value is None:
            return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _int(value) -> int | None:
    f = _float(value)
    return None if f is None else int(round(f))


def _floats(value, n: int) -> list[float] | None:
    if value is None:
        return None
    try:
        out = [float(v) for v in value]
    except (TypeError, ValueError):
        return None
    return out if len(out) == n and all(np.isfinite(out)) else None


def _probe_pixel_data(fp, transfer_syntax: str | None, file_size: int) -> tuple[bool | None, int | None]:
    """After a ``stop_before_pixels`` read, look at the next element: is it Pixel Data, and how long?

    The length returned is the smaller of the declared length and the bytes actually left in the file, so a file
    cut inside its pixel data is seen as truncated from its header alone.
    """
    if transfer_syntax == DeflatedExplicitVRLittleEndian:
        return None, None
    start = fp.tell()
    head = fp.read(12)
    big = transfer_syntax == ExplicitVRBigEndian
    if len(head) < 8 or head[:4] != (_PIXEL_DATA_TAG_BE if big else _PIXEL_DATA_TAG_LE):
        return False, None
    implicit = transfer_syntax == ImplicitVRLittleEndian or transfer_syntax is None and head[4:6] not in (b"OB", b"OW")
    if implicit:
        length, header_bytes = struct.unpack("<I", head[4:8])[0], 8
    else:
        if len(head) < 12:
            return True, None
        length, header_bytes = struct.unpack(">I" if big else "<I", head[8:12])[0], 12
    if length == 0xFFFFFFFF:
        return True, None
    return True, int(min(length, max(0, file_size - start - header_bytes)))


def read_header(path: Path, root: Path) -> FileHeader:
    """Read the header of one file without its pixel data.

    Never raises for bad files: an unusable file comes back with ``error`` (a reason code) and ``message``.
    """
    rel = Path(os.path.relpath(path, root)).as_posix()
    rec = FileHeader(path=rel)
    try:
        st = path.stat()
        rec.size_bytes, rec.mtime_ns = int(st.st_size), int(st.st_mtime_ns)
    except OSError as exc:
        rec.error, rec.message = "unreadable_file", f"{rel}: cannot stat file ({exc.strerror})"
        return rec
    try:
        with open(path, "rb") as fp:
            try:
                ds = pydicom.dcmread(fp, stop_before_pixels=True, specific_tags=list(HEADER_KEYWORDS))
            except InvalidDicomError:
                fp.seek(0)
                ds = pydicom.dcmread(fp, stop_before_pixels=True, specific_tags=list(HEADER_KEYWORDS), force=True)
                if not any(k in ds for k in ("SOPClassUID", "Modality", "SeriesInstanceUID", "StudyInstanceUID")):
                    raise InvalidDicomError("no DICOM preamble and no DICOM identifying attributes") from None
            meta = getattr(ds, "file_meta", None)
            ts = str(meta.TransferSyntaxUID) if meta is not None and "TransferSyntaxUID" in meta else None
            rec.transfer_syntax = ts
            rec.has_pixel_data, rec.pixel_data_length = _probe_pixel_data(fp, ts, rec.size_bytes)
            sop_class = _text(ds.get("SOPClassUID"))
            if sop_class is None and meta is not None:
                sop_class = _text(meta.get("MediaStorageSOPClassUID"))
    except Exception as exc:  # pydicom raises many types on corrupt input
        rec.error = "not_dicom"
        rec.message = f"{rel}: not a readable DICOM file ({type(exc).__name__}: {str(exc)[:120]})"
        return rec
    rec.sop_class_uid = sop_class
    rec.sop_instance_uid = _text(ds.get("SOPInstanceUID"))
    rec.modality = _text(ds.get("Modality"))
    image_type = ds.get("ImageType")
    rec.image_type = _text(image_type).upper() if image_type is not None and _text(image_type) else None
    rec.study_uid = _text(ds.get("StudyInstanceUID"))
    rec.series_uid = _text(ds.get("SeriesInstanceUID"))
    rec.frame_of_reference_uid = _text(ds.get("FrameOfReferenceUID"))
    rec.patient_id = _text(ds.get("PatientID"))
    rec.study_date = _text(ds.get("StudyDate")) or _text(ds.get("SeriesDate")) or _text(ds.get("AcquisitionDate"))
    rec.series_number = _int(ds.get("SeriesNumber"))
    rec.acquisition_number = _int(ds.get("AcquisitionNumber"))
    rec.instance_number = _int(ds.get("InstanceNumber"))
    rec.ipp = _floats(ds.get("ImagePositionPatient"), 3)
    rec.iop = _floats(ds.get("ImageOrientationPatient"), 6)
    rec.pixel_spacing = _floats(ds.get("PixelSpacing"), 2)
    rec.slice_thickness = _float(ds.get("SliceThickness"))
    rec.spacing_between_slices = _float(ds.get("SpacingBetweenSlices"))
    for name, key in (("rows", "Rows"), ("columns", "Columns"), ("bits_allocated", "BitsAllocated"),
                      ("bits_stored", "BitsStored"), ("pixel_representation", "PixelRepresentation"),
                      ("samples_per_pixel", "SamplesPerPixel"), ("number_of_frames", "NumberOfFrames"),
                      ("pixel_padding_value", "PixelPaddingValue")):
        setattr(rec, name, _int(ds.get(key)))
    rec.photometric = _text(ds.get("PhotometricInterpretation"))
    rec.rescale_slope = _float(ds.get("RescaleSlope"))
    rec.rescale_intercept = _float(ds.get("RescaleIntercept"))
    rec.kvp = _float(ds.get("KVP"))
    rec.convolution_kernel = _text(ds.get("ConvolutionKernel"))
    rec.manufacturer = _text(ds.get("Manufacturer"))
    rec.model = _text(ds.get("ManufacturerModelName"))
    rec.gantry_tilt = _float(ds.get("GantryDetectorTilt"))
    rec.contrast_agent = _text(ds.get("ContrastBolusAgent"))
    rec.series_description = _text(ds.get("SeriesDescription"))
    rec.body_part = _text(ds.get("BodyPartExamined"))
    rec.patient_position = _text(ds.get("PatientPosition"))
    rec.tube_current_ma = _float(ds.get("XRayTubeCurrent"))
    rec.exposure_mas = _float(ds.get("Exposure"))
    rec.ctdi_vol = _float(ds.get("CTDIvol"))
    return rec


def read_headers(paths: list[Path], root: Path) -> list[dict]:
    """Header rows (dicts) for a batch of files; used as one task of the parallel inventory."""
    return [read_header(Path(p), root).as_row() for p in paths]


@dataclass
class SliceRescale:
    """Per-slice stored-value to HU mapping."""

    slope: float = 1.0
    intercept: float = 0.0
    padding: int | None = None


def read_ids(path: Path) -> tuple[str, str] | None:
    """(PatientID, SeriesInstanceUID) of one file, or None when unreadable. For finding a series' label maps and
    splitting by participant in memory only: callers never write them anywhere."""
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["PatientID", "SeriesInstanceUID"])
        return str(ds.get("PatientID", "")), str(ds.SeriesInstanceUID)
    except Exception:
        return None


def stored_to_hu(stored: np.ndarray, rescale: SliceRescale) -> np.ndarray:
    """HU (float64) = stored * slope + intercept; stored padding values map to -1024 HU."""
    hu = stored.astype(np.float64) * rescale.slope + rescale.intercept
    if rescale.padding is not None:
        hu[stored == rescale.padding] = -1024.0
    return hu


_NATIVE_SYNTAXES = {ImplicitVRLittleEndian, "1.2.840.10008.1.2.1"}


@dataclass
class DecodedSlice:
    """One decoded slice: HU (int16, (rows, columns)) and the geometry tags read from the same dataset."""

    hu: np.ndarray
    ipp: list[float] | None
    iop: list[float] | None
    pixel_spacing: list[float] | None


def read_slice(path: Path, label: str | None = None) -> DecodedSlice:
    """Decode one single-frame CT slice to HU with the rescale of its own header.

    Uncompressed little-endian data is read straight from the Pixel Data buffer; compressed syntaxes go through
    pydicom's decoders (pylibjpeg, pyjpegls, openjpeg, RLE). Stored values equal to PixelPaddingValue become
    -1024 HU. Raises :class:`DicomReadError` with a reason code; messages name the file as ``label`` (default:
    the path), so callers can keep absolute paths out of messages.
    """
    name = label or str(path)
    try:
        ds = pydicom.dcmread(path, force=True)
    except Exception as exc:
        raise DicomReadError("unreadable_file",
                             f"{name}: cannot parse ({type(exc).__name__}: {str(exc)[:120]})") from None
    if "PixelData" not in ds:
        raise DicomReadError("no_pixel_data", f"{name}: has no Pixel Data element")
    rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
    if rows <= 0 or cols <= 0:
        raise DicomReadError("missing_geometry", f"{name}: Rows/Columns missing")
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frames > 1:
        raise DicomReadError("multiframe_unsupported", f"{name}: {frames} frames; export the series as single-frame "
                             "CT images")
    meta = getattr(ds, "file_meta", None)
    ts = str(meta.TransferSyntaxUID) if meta is not None and "TransferSyntaxUID" in meta else None
    bits = int(ds.get("BitsAllocated", 16) or 16)
    signed = int(ds.get("PixelRepresentation", 0) or 0) == 1
    n_expected = rows * cols * bits // 8
    if ts in _NATIVE_SYNTAXES and bits == 16:
        raw = ds.PixelData
        if len(raw) < n_expected:
            raise DicomReadError(
                "pixel_data_truncated",
                f"{name}: Pixel Data holds {len(raw)} bytes, Rows x Columns x 2 needs {n_expected}; "
                "the file is truncated or its header does not match its pixels",
            )
        stored = np.frombuffer(raw, dtype="<i2" if signed else "<u2", count=rows * cols).reshape(rows, cols)
        bits_stored = int(ds.get("BitsStored", 16) or 16)
        if bits_stored < 16:
            stored = _apply_bits_stored(stored, bits_stored, signed)
    else:
        try:
            stored = ds.pixel_array
        except Exception as exc:
            raise DicomReadError(
                "pixel_decode_failed", f"{name}: cannot decode pixels ({ts}): {type(exc).__name__}: {str(exc)[:160]}"
            ) from None
        if stored.shape != (rows, cols):
            raise DicomReadError("multiframe_unsupported", f"{name}: decoded shape {stored.shape}, expected one "
                                 f"{rows}x{cols} frame")
    padding = ds.get("PixelPaddingValue")
    rescale = SliceRescale(
        slope=float(ds.get("RescaleSlope", 1.0) or 1.0),
        intercept=float(ds.get("RescaleIntercept", 0.0) or 0.0),
        padding=None if padding is None else _padding_as_stored(int(padding), stored.dtype),
    )
    return DecodedSlice(
        hu=hu_to_int16(stored_to_hu(stored, rescale)),
        ipp=_floats(ds.get("ImagePositionPatient"), 3),
        iop=_floats(ds.get("ImageOrientationPatient"), 6),
        pixel_spacing=_floats(ds.get("PixelSpacing"), 2),
    )


def _apply_bits_stored(stored: np.ndarray, bits_stored: int, signed: bool) -> np.ndarray:
    as_u = stored.view(np.uint16) & np.uint16((1 << bits_stored) - 1)
    if not signed:
        return as_u
    sign = np.uint16(1 << (bits_stored - 1))
    return ((as_u ^ sign).astype(np.int32) - int(sign)).astype(np.int16)


def _padding_as_stored(padding: int, dtype: np.dtype) -> int:
    """PixelPaddingValue is written as US or SS; interpret it in the pixel data's own signedness."""
    if np.issubdtype(dtype, np.signedinteger) and padding > 32767:
        return padding - 65536
    if np.issubdtype(dtype, np.unsignedinteger) and padding < 0:
        return padding + 65536
    return padding


__all__ = [
    "CT_IMAGE_STORAGE", "DicomReadError", "FileHeader", "FILE_HEADER_FIELDS", "HEADER_KEYWORDS", "SliceRescale",
    "DecodedSlice", "read_header", "read_headers", "read_slice", "stored_to_hu",
]
