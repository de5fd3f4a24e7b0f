"""A small corpus of deliberately broken (and a few intact) DICOM series for robustness tests.

:func:`generate_broken_corpus` writes real DICOM files with pydicom under ``out/<PatientID>/<study>/<series>/``: small
axial CT series (64 x 64 pixels of 3.0 mm, so the field of view is 192 mm; 2.5 mm slices; HFS; a simple thorax-like
HU phantom) and, next to intact series, one defect per series folder. Every case carries the outcome the pipeline
must reach (a converted volume, or an exclusion with a reason code from :mod:`cacflow.discovery.reasons`, found at
file or series level). All identifying values are obviously fake; :data:`FAKE_PATIENT_NAME` lets tests check that no
output contains the patient name. The same seed gives the same bytes.

Note: the pixel spacing (3.0 mm) is outside the default ``selection.pixel_spacing_range_mm`` and the interleaved
case holds two reconstructions of one study, so a pipeline run over this corpus should use
``pixel_spacing_range_mm: [0.3, 3.5]`` and ``reconstructions: all`` (see :data:`SELECTION_OVERRIDES`).
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
SECONDARY_CAPTURE_STORAGE = "1.2.840.10008.5.1.4.1.1.7"

#: The PatientName written into every file (tests assert it never reaches an output).
FAKE_PATIENT_NAME = "FAKE^BROKENCORPUS^DONOTLEAK"

#: Selection settings under which the intact series of this corpus are eligible.
SELECTION_OVERRIDES = {"pixel_spacing_range_mm": [0.3, 3.5], "reconstructions": "all"}

ROWS = COLS = 64
PIXEL_SPACING_MM = 3.0
THICKNESS_MM = 2.5
N_SLICES = 40


@dataclass(frozen=True)
class BrokenCase:
    """One case of the corpus and the outcome the pipeline must reach.

    Attributes:
        name: short identifier.
        folder: the series folder relative to the corpus root (POSIX separators).
        expected: ``("converted", None)``, ``("excluded", reason_code)``, or ``("absent", None)`` for a folder with
            nothing in it (no row, no exclusion, no volume).
        level: where the exclusion reason is reported: ``"file"`` (file exclusions), ``"series"`` (the manifest
            or the shard status rows); None when converted or absent.
        series_uid: the SeriesInstanceUID the expectation is about (None when the case has no series).
        files: for file-level cases, the offending files (relative to the corpus root).
        series_expected: for file-level cases, what must become of the rest of the folder's series
            (``("converted", None)``, ``("excluded", reason)``) or None when no usable file remains.
        n_slices: slices of the converted volume (for ``converted``, or ``series_expected`` converted).
        note: what is broken.
    """

    name: str
    folder: str
    expected: tuple[str, str | None]
    level: str | None = None
    series_uid: str | None = None
    files: tuple[str, ...] = ()
    series_expected: tuple[str, str | None] | None = None
    n_slices: int | None = None
    note: str = ""


@dataclass
class _Series:
    """Parameters of one written series (defaults: a good axial CT series)."""

    folder: str
    series_uid: str
    study_uid: str
    patient_id: str
    n: int = N_SLICES
    increment_mm: float = THICKNESS_MM
    thickness_mm: float = THICKNESS_MM
    modality: str = "CT"
    sop_class: str = CT_IMAGE_STORAGE
    image_type: tuple[str, ...] = ("ORIGINAL", "PRIMARY", "AXIAL")
    description: str = "CHEST 2.5 B30f"
    kernel: str = "B30f"
    series_number: int = 2
    tilt_deg: float = 0.0
    signed: bool = False
    transfer_syntax: str = str(ExplicitVRLittleEndian)
    z0_mm: float = -100.0
    name_prefix: str = "IM"
    name_offset: int = 0
    name_step: int = 1
    skip: tuple[int, ...] = ()
    duplicate: tuple[int, ...] = ()
    edit: Callable[[Dataset, int], None] | None = None
    paths: list[str] = field(default_factory=list)


def _uid(seed: int, *parts: object) -> str:
    """A deterministic UUID-derived UID (``2.25.<128-bit int>``, at most 44 characters) for the given parts.

    (pydicom's ``generate_uid(prefix=None, entropy_srcs=...)`` ignores the entropy and is random.)
    """
    digest = hashlib.sha256("\x1f".join(["cacflow-broken", str(seed), *map(str, parts)]).encode()).digest()
    return f"2.25.{int.from_bytes(digest[:16], 'big')}"


def _ds(value: float) -> str:
    s = f"{value:.6f}".rstrip("0").rstrip(".")
    return s if s not in ("", "-0") else "0"


def _phantom(rng: np.random.Generator, n: int, rows: int = ROWS, cols: int = COLS) -> np.ndarray:
    """A thorax-like HU volume (z, y, x): air, a soft-tissue body ellipse, two lungs, a spine, some noise."""
    y, x = np.mgrid[0:rows, 0:cols].astype(float)
    cy, cx = (rows - 1) / 2, (cols - 1) / 2
    vol = np.empty((n, rows, cols), dtype=np.int16)
    for k in range(n):
        f = 1.0 - 0.15 * abs(k - n / 2) / max(n / 2, 1)
        hu = np.full((rows, cols), -1000.0)
        body = ((x - cx) / (0.44 * cols * f)) ** 2 + ((y - cy) / (0.33 * rows * f)) ** 2 <= 1
        hu[body] = 40.0
        for side in (-1, 1):
            lung = (((x - cx - side * 0.18 * cols) / (0.13 * cols)) ** 2
                    + ((y - cy + 0.03 * rows) / (0.2 * rows)) ** 2 <= 1)
            hu[lung & body] = -850.0
        spine = (x - cx) ** 2 + (y - cy - 0.24 * rows) ** 2 <= (0.05 * cols) ** 2
        hu[spine & body] = 450.0
        hu += np.where(hu > -1000.0, rng.normal(0.0, 12.0, hu.shape), 0.0)
        vol[k] = np.clip(np.rint(hu), -1024, 3071).astype(np.int16)
    return vol


def _write_series(out: Path, s: _Series, rng: np.random.Generator) -> _Series:
    """Write one series of single-frame images; slice k lies at z = z0 - k * increment (HFS: k=0 most superior)."""
    d = out / s.folder
    d.mkdir(parents=True, exist_ok=True)
    hu = _phantom(rng, s.n)
    for_uid = _uid(0, s.series_uid, "for")
    tan = float(np.tan(np.radians(s.tilt_deg)))
    ks = [k for k in range(s.n) if k not in s.skip] + list(s.duplicate)
    for j, k in enumerate(ks):
        copy = j >= s.n - len(s.skip)
        sop = _uid(0, s.series_uid, "sop", j)
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = s.sop_class
        meta.MediaStorageSOPInstanceUID = sop
        meta.TransferSyntaxUID = s.transfer_syntax
        ds = Dataset()
        ds.file_meta = meta
        ds.SpecificCharacterSet = "ISO_IR 192"
        ds.ImageType = list(s.image_type)
        ds.SOPClassUID = s.sop_class
        ds.SOPInstanceUID = sop
        ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = "20010203"
        ds.StudyTime = "101500"
        ds.AccessionNumber = "FAKEACC0001"
        ds.Modality = s.modality
        ds.Manufacturer = "FAKE SCANNERS"
        ds.ManufacturerModelName = "Brokenator 64"
        ds.InstitutionName = "FAKE HOSPITAL"
        ds.ReferringPhysicianName = "FAKE^REFERRER"
        ds.SeriesDescription = s.description
        ds.PatientName = FAKE_PATIENT_NAME
        ds.PatientID = s.patient_id
        ds.PatientBirthDate = "19400101"
        ds.PatientSex = "O"
        ds.BodyPartExamined = "CHEST"
        ds.SliceThickness = _ds(s.thickness_mm)
        ds.KVP = "120"
        ds.GantryDetectorTilt = _ds(s.tilt_deg)
        ds.XRayTubeCurrent = 40
        ds.Exposure = 20
        ds.ConvolutionKernel = s.kernel
        ds.PatientPosition = "HFS"
        ds.StudyInstanceUID = s.study_uid
        ds.SeriesInstanceUID = s.series_uid
        ds.StudyID = "1"
        ds.SeriesNumber = s.series_number
        ds.AcquisitionNumber = 1
        ds.InstanceNumber = j + 1
        z = s.z0_mm - k * s.increment_mm
        x0 = -(COLS * PIXEL_SPACING_MM) / 2
        y0 = -(ROWS * PIXEL_SPACING_MM) / 2 + (s.z0_mm - z) * tan  # a tilted gantry shears the stack along y
        ds.ImagePositionPatient = [_ds(x0), _ds(y0), _ds(z)]
        ds.ImageOrientationPatient = ["1", "0", "0", "0", "1", "0"]
        ds.FrameOfReferenceUID = for_uid
        ds.SliceLocation = _ds(z)
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows, ds.Columns = ROWS, COLS
        ds.PixelSpacing = [_ds(PIXEL_SPACING_MM), _ds(PIXEL_SPACING_MM)]
        ds.BitsAllocated = 16
        if s.signed:
            ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 15, 1
            ds.RescaleIntercept = "0"
            stored = hu[k].astype("<i2")
        else:
            ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 12, 11, 0
            ds.RescaleIntercept = "-1024"
            stored = (hu[k].astype(np.int32) + 1024).astype("<u2")
        ds.RescaleSlope = "1"
        ds.RescaleType = "HU"
        ds.WindowCenter, ds.WindowWidth = "40", "400"
        if s.modality == "MR":
            for kw in ("KVP", "ConvolutionKernel", "XRayTubeCurrent", "Exposure", "GantryDetectorTilt",
                       "RescaleIntercept", "RescaleSlope", "RescaleType"):
                delattr(ds, kw)
            ds.MagneticFieldStrength = "1.5"
            ds.EchoTime = "10"
            ds.RepetitionTime = "500"
            stored = (hu[k].astype(np.int32) + 1024).astype("<u2")
        ds.PixelData = np.ascontiguousarray(stored).tobytes()
        ds["PixelData"].VR = "OW"
        if s.edit is not None:
            s.edit(ds, j)
        number = s.name_offset + s.name_step * j + 1
        name = f"{s.name_prefix}{number:04d}" + (".dcm" if not copy else "_copy.dcm")
        ds.save_as(d / name, enforce_file_format=True)
        s.paths.append(f"{s.folder}/{name}")
    return s


def generate_broken_corpus(out: Path, seed: int = 0) -> list[BrokenCase]:
    """Write the broken-input corpus under ``out`` and return its cases (deterministic for a seed)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    cases: list[BrokenCase] = []

    def series(pid: str, study: str, folder: str, **kw) -> _Series:
        s = _Series(folder=f"{pid}/{study}/{folder}", series_uid=_uid(seed, pid, study, folder),
                    study_uid=_uid(seed, pid, study), patient_id=pid, **kw)
        return _write_series(out, s, rng)

    def converted(name: str, s: _Series, note: str) -> None:
        cases.append(BrokenCase(name, s.folder, ("converted", None), None, s.series_uid, n_slices=len(s.paths),
                                note=note))

    def excluded(name: str, s: _Series, reason: str, note: str) -> None:
        cases.append(BrokenCase(name, s.folder, ("excluded", reason), "series", s.series_uid, note=note))

    # Intact series (one per patient so that "prefer one reconstruction per study" never interferes).
    converted("good_unsigned_implicit", series("BRK0001", "study1", "series2",
                                               transfer_syntax=str(ImplicitVRLittleEndian)),
              "intact: 12-bit unsigned, intercept -1024, implicit VR little endian")
    converted("good_signed_explicit", series("BRK0002", "study1", "series3", signed=True, n=36, z0_mm=-80.0),
              "intact: 16-bit signed, intercept 0, explicit VR little endian")

    # Truncated file: one slice cut in the middle of its Pixel Data; the rest of the series has a gap.
    s = series("BRK0003", "study1", "series2")
    victim = s.paths[N_SLICES // 2]
    data = (out / victim).read_bytes()
    (out / victim).write_bytes(data[: len(data) - ROWS * COLS])  # keeps half of the 8192 pixel bytes
    cases.append(BrokenCase("truncated_file", s.folder, ("excluded", "pixel_data_truncated"), "file", s.series_uid,
                            files=(victim,), series_expected=("excluded", "missing_slices"),
                            note="one file cut in the middle of its Pixel Data"))

    # A non-DICOM file (text) and a fake JPEG in an otherwise intact series folder.
    s = series("BRK0004", "study1", "series2")
    (out / s.folder / "notes.txt").write_text("scanner export notes; not an image\n", encoding="utf-8")
    (out / s.folder / "thumb.jpg").write_bytes(b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(rng.integers(0, 256, 200,
                                                                                                    dtype=np.uint8)))
    cases.append(BrokenCase("non_dicom_file", s.folder, ("excluded", "not_dicom"), "file", s.series_uid,
                            files=(f"{s.folder}/notes.txt", f"{s.folder}/thumb.jpg"),
                            series_expected=("converted", None), n_slices=len(s.paths),
                            note="a text file and a fake JPEG next to an intact series"))

    excluded("missing_slice", series("BRK0005", "study1", "series2", skip=(N_SLICES // 2,)), "missing_slices",
             "slice 21 of 40 is missing (a 5 mm gap in a 2.5 mm series)")
    excluded("duplicated_slices", series("BRK0006", "study1", "series2", duplicate=(10, 11)), "duplicate_slices",
             "two slices repeated at the same position with new SOPInstanceUIDs")
    excluded("too_few_slices", series("BRK0007", "study1", "series2", n=12), "too_few_slices", "12 slices")
    excluded("thick_5mm", series("BRK0008", "study1", "series2", increment_mm=5.0, thickness_mm=5.0,
                                 description="CHEST 5.0 B30f"), "slice_too_thick", "5 mm slices every 5 mm")
    excluded("mr_series", series("BRK0009", "study1", "series2", modality="MR", sop_class=MR_IMAGE_STORAGE,
                                 image_type=("ORIGINAL", "PRIMARY", "M", "ND"), description="T1 AX"),
             "not_ct", "an MR series (MR Image Storage, Modality MR)")

    def sc_edit(ds: Dataset, j: int) -> None:
        ds.ConversionType = "WSD"

    excluded("secondary_capture", series("BRK0010", "study1", "series900", n=3, sop_class=SECONDARY_CAPTURE_STORAGE,
                                         image_type=("DERIVED", "SECONDARY"), description="Reformatted screenshot",
                                         edit=sc_edit, series_number=900),
             "secondary_capture", "Secondary Capture Image Storage with Modality CT")
    excluded("gantry_tilt", series("BRK0011", "study1", "series2", tilt_deg=15.0), "gantry_tilt",
             "GantryDetectorTilt 15 deg and IPP sheared along y (no shear correction)")

    def no_spacing(ds: Dataset, j: int) -> None:
        del ds.PixelSpacing

    excluded("missing_pixel_spacing", series("BRK0012", "study1", "series2", edit=no_spacing), "missing_pixel_spacing",
             "PixelSpacing removed from every slice")

    def big_header(ds: Dataset, j: int) -> None:
        ds.Rows, ds.Columns = 2 * ROWS, 2 * COLS

    s = series("BRK0013", "study1", "series2", edit=big_header)
    cases.append(BrokenCase("rows_columns_mismatch", s.folder, ("excluded", "pixel_data_truncated"), "file",
                            s.series_uid, files=tuple(s.paths), series_expected=None,
                            note="Rows/Columns say 128 x 128, Pixel Data holds 64 x 64"))

    # Two reconstructions of one study interleaved file by file in one folder: both must convert.
    a = series("BRK0014", "study1", "mixed", kernel="B30f", description="CHEST 2.5 B30f", name_step=2, series_number=2)
    b = _Series(folder=a.folder, series_uid=_uid(seed, "BRK0014", "study1", "mixed", "b"), study_uid=a.study_uid,
                patient_id="BRK0014", kernel="B70f", description="CHEST 2.5 B70f", name_offset=1, name_step=2,
                series_number=3)
    _write_series(out, b, rng)
    converted("interleaved_a", a, "two series interleaved in one folder (this one: soft kernel)")
    converted("interleaved_b", b, "two series interleaved in one folder (this one: sharp kernel)")

    empty = out / "BRK0015" / "study1" / "series2"
    empty.mkdir(parents=True, exist_ok=True)
    cases.append(BrokenCase("empty_folder", "BRK0015/study1/series2", ("absent", None), note="an empty series folder"))

    converted("unicode_path", series("BRK 0016 Ünïcødé", "étude 1 (β)", "série 2 – axial ø"),
              "folders with spaces and non-ASCII characters")
    converted("description_traversal", series("BRK0017", "study1", "series2", description="../../escape-" + str(seed)),
              "SeriesDescription '../../escape-<seed>'")

    def bad_uid(ds: Dataset, j: int) -> None:
        with warnings.catch_warnings():  # pydicom warns about the invalid UI value, which is the point here
            warnings.simplefilter("ignore")
            ds.SeriesInstanceUID = f"../../../uid-escape-{seed}"

    s = series("BRK0018", "study1", "series2", edit=bad_uid)
    converted("uid_traversal", s, "SeriesInstanceUID '../../../uid-escape-<seed>' (not a UID; must be hashed)")
    cases[-1] = BrokenCase(**{**cases[-1].__dict__, "series_uid": f"../../../uid-escape-{seed}"})
    return cases


__all__ = ["BrokenCase", "FAKE_PATIENT_NAME", "SELECTION_OVERRIDES", "generate_broken_corpus"]
