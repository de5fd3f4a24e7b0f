"""Building and writing DICOM CT image files (pydicom) for synthetic series.

Pixel storage: ``stored = HU - RescaleIntercept`` (slope 1); pixels outside the
circular reconstruction FOV get PixelPaddingValue.  All encodings are lossless.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, generate_uid

from cacflow.synth.acquisition import Acquisition, Reconstruction, Storage
from cacflow.synth.render import SliceGrid

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
_NATIVE = {str(ExplicitVRLittleEndian), str(ImplicitVRLittleEndian)}


@dataclass(frozen=True)
class StudyInfo:
    """Study-level identifiers, including obviously fake identifying values."""

    patient_id: str
    study_uid: str
    study_date: str  # YYYYMMDD
    accession: str
    patient_name: str
    birth_date: str
    sex: str
    address: str
    referring: str
    institution: str
    institution_address: str
    operator: str
    other_ids: str


@dataclass(frozen=True)
class SeriesInfo:
    """Series-level identifiers and descriptive values."""

    series_uid: str
    frame_of_reference_uid: str
    series_number: int
    acquisition_number: int
    description: str


def fake_study(rng: np.random.Generator, patient_id: str, study_uid: str) -> StudyInfo:
    """Draw study date and fake identifying tags (all clearly synthetic, never real)."""
    year = int(rng.integers(1999, 2003))
    month, day = int(rng.integers(1, 13)), int(rng.integers(1, 29))
    tag = f"{int(rng.integers(10000, 99999))}"
    return StudyInfo(
        patient_id=patient_id,
        study_uid=study_uid,
        study_date=f"{year:04d}{month:02d}{day:02d}",
        accession=f"FAKEACC{tag}",
        patient_name=f"FAKE^PATIENT{tag}",
        birth_date=f"19{int(rng.integers(30, 55)):02d}0101",
        sex=str(rng.choice(["M", "F"])),
        address=f"{tag} Fake Street, Nowhere",
        referring=f"FAKE^REFERRER{tag}",
        institution=f"FAKE HOSPITAL {tag}",
        institution_address=f"1 Fake Campus Road, Fakeville {tag}",
        operator=f"FAKE^OPERATOR{tag}",
        other_ids=f"FAKEOTHER{tag}",
    )


def _base_dataset(study: StudyInfo, series: SeriesInfo, sop_uid: str, ts: str) -> Dataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CT_IMAGE_STORAGE
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ts if ts in _NATIVE else str(ExplicitVRLittleEndian)
    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = CT_IMAGE_STORAGE
    ds.SOPInstanceUID = sop_uid
    ds.StudyDate = study.study_date
    ds.SeriesDate = study.study_date
    ds.StudyTime = "101500"
    ds.AccessionNumber = study.accession
    ds.Modality = "CT"
    ds.InstitutionName = study.institution
    ds.InstitutionAddress = study.institution_address
    ds.ReferringPhysicianName = study.referring
    ds.SeriesDescription = series.description
    ds.OperatorsName = study.operator
    ds.PatientName = study.patient_name
    ds.PatientID = study.patient_id
    ds.PatientBirthDate = study.birth_date
    ds.PatientSex = study.sex
    ds.OtherPatientIDs = study.other_ids
    ds.PatientAddress = study.address
    ds.BodyPartExamined = "CHEST"
    ds.StudyInstanceUID = study.study_uid
    ds.SeriesInstanceUID = series.series_uid
    ds.StudyID = "1"
    ds.SeriesNumber = series.series_number
    ds.AcquisitionNumber = series.acquisition_number
    ds.FrameOfReferenceUID = series.frame_of_reference_uid
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    return ds


def _set_pixels(ds: Dataset, stored: np.ndarray, storage: Storage, ts: str) -> None:
    ds.Rows, ds.Columns = int(stored.shape[0]), int(stored.shape[1])
    ds.BitsStored = storage.bits_stored
    ds.HighBit = storage.bits_stored - 1
    ds.PixelRepresentation = 1 if storage.signed else 0
    arr = np.ascontiguousarray(stored.astype(storage.dtype))
    if ts in _NATIVE:
        ds.PixelData = arr.tobytes()
        ds["PixelData"].VR = "OW"
    else:
        ds.compress(ts, arr, generate_instance_uid=False)


def ds_str(value: float) -> str:
    """Decimal string with at most 16 characters."""
    s = f"{value:.6f}".rstrip("0").rstrip(".")
    return s if s not in ("", "-0") else "0"


def write_axial_series(
    series_dir: Path,
    hu: np.ndarray,
    fov: np.ndarray,
    grid: SliceGrid,
    acq: Acquisition,
    recon: Reconstruction,
    study: StudyInfo,
    series: SeriesInfo,
    rng: np.random.Generator,
) -> None:
    """Write one axial series: ``hu`` (z, y, x) int16 in sorted order -> one file per slice.

    Outside ``fov`` the stored value is PixelPaddingValue.  File names are random hex.
    """
    series_dir.mkdir(parents=True, exist_ok=True)
    storage = recon.storage
    n = grid.n
    if recon.shuffle_instances:
        instance = rng.permutation(n) + 1
    elif acq.patient_position == "HFS":
        instance = n - np.arange(n)  # scanned head first: #1 is most superior
    else:
        instance = np.arange(n) + 1
    names = _unique_names(rng, n)
    lo, hi = storage.stored_range()
    spacing = -acq.increment_mm if recon.negative_spacing else acq.increment_mm
    wc, ww = (40, 400) if recon.kernel.kernel_class == "soft" else (-600, 1500)
    for k in range(n):
        intercept = storage.alt_intercept if (storage.alt_intercept is not None and k % 2 == 1) else storage.intercept
        stored = hu[k].astype(np.int32) - int(intercept)
        stored[~fov] = storage.padding
        if stored.min() < lo or stored.max() > hi:
            raise ValueError(f"stored values out of range for {storage}")
        sop = generate_uid(entropy_srcs=[series.series_uid, "sop", str(k)])
        ds = _base_dataset(study, series, sop, recon.transfer_syntax)
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.Manufacturer = acq.manufacturer
        ds.ManufacturerModelName = acq.model
        ds.SliceThickness = ds_str(acq.thickness_mm)
        ds.SpacingBetweenSlices = ds_str(spacing)
        ds.KVP = ds_str(acq.kvp)
        ds.DataCollectionDiameter = "500"
        ds.ReconstructionDiameter = ds_str(grid.cols * grid.pixel_spacing[1])
        ds.GantryDetectorTilt = "0"
        ds.XRayTubeCurrent = acq.tube_current_ma
        ds.Exposure = acq.exposure_mas
        ds.CTDIvol = float(acq.ctdivol)
        ds.ConvolutionKernel = recon.kernel.name
        ds.PatientPosition = acq.patient_position
        ds.InstanceNumber = int(instance[k])
        ds.ImagePositionPatient = [ds_str(v) for v in grid.ipp[k]]
        ds.ImageOrientationPatient = [ds_str(v) for v in grid.iop]
        ds.SliceLocation = ds_str(grid.ipp[k, 2])
        ds.PositionReferenceIndicator = ""
        ds.PixelSpacing = [ds_str(grid.pixel_spacing[0]), ds_str(grid.pixel_spacing[1])]
        ds.PixelPaddingValue = int(storage.padding)
        ds["PixelPaddingValue"].VR = "SS" if storage.signed else "US"
        ds.WindowCenter = str(wc)
        ds.WindowWidth = str(ww)
        ds.RescaleIntercept = ds_str(intercept)
        ds.RescaleSlope = "1"
        ds.RescaleType = "HU"
        _set_pixels(ds, stored, storage, recon.transfer_syntax)
        ds.save_as(series_dir / names[k], enforce_file_format=True)


def write_scout(
    series_dir: Path,
    images: list[tuple[np.ndarray, list[float], list[float], tuple[float, float]]],
    acq: Acquisition,
    study: StudyInfo,
    series: SeriesInfo,
    description: str,
    rng: np.random.Generator,
) -> None:
    """Write localizer images: each (pixels uint16 (rows, cols), IPP, IOP, pixel spacing)."""
    series_dir.mkdir(parents=True, exist_ok=True)
    names = _unique_names(rng, len(images))
    storage = Storage("scout", False, 12, 0.0, 0)
    for k, (pixels, ipp, iop, spacing) in enumerate(images):
        sop = generate_uid(entropy_srcs=[series.series_uid, "sop", str(k)])
        ds = _base_dataset(study, series, sop, str(ExplicitVRLittleEndian))
        ds.ImageType = ["ORIGINAL", "PRIMARY", "LOCALIZER"]
        ds.Manufacturer = acq.manufacturer
        ds.ManufacturerModelName = acq.model
        ds.KVP = ds_str(acq.kvp)
        ds.SliceThickness = "1"
        ds.PatientPosition = acq.patient_position
        ds.InstanceNumber = k + 1
        ds.ImagePositionPatient = [ds_str(v) for v in ipp]
        ds.ImageOrientationPatient = [ds_str(v) for v in iop]
        ds.PixelSpacing = [ds_str(spacing[0]), ds_str(spacing[1])]
        ds.WindowCenter = "2048"
        ds.WindowWidth = "4096"
        ds.RescaleIntercept = "0"
        ds.RescaleSlope = "1"
        ds.SeriesDescription = description
        _set_pixels(ds, pixels, storage, str(ExplicitVRLittleEndian))
        ds.save_as(series_dir / names[k], enforce_file_format=True)


def _unique_names(rng: np.random.Generator, n: int) -> list[str]:
    names: list[str] = []
    seen: set[str] = set()
    while len(names) < n:
        name = rng.bytes(8).hex() + ".dcm"
        if name not in seen:
            seen.add(name)
            names.append(name)
    return names
