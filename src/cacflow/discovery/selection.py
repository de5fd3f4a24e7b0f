"""Series selection: group inventoried files into series and decide, rule by rule, which series to convert.

Input is the per-file inventory (:func:`cacflow.discovery.inventory.inventory`); output is a manifest with one row
per series, ``selected`` true or false, and ``reason`` = the first rule that excluded it (or ``"selected"``),
plus a table of file-level exclusions. Pure functions over DataFrames: no I/O here.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from cacflow.discovery.kernels import DEFAULT_KERNEL_CLASSES, kernel_class
from cacflow.discovery.reasons import REASONS, SELECTED
from cacflow.imaging.geometry import (
    axial_deviation_deg,
    axis_obliquity_deg,
    check_spacing,
    lps_axis_order,
    order_slices,
    stack_tilt_deg,
)
from cacflow.io.dicom import CT_IMAGE_STORAGE, SECONDARY_CAPTURE_STORAGE
from cacflow.io.volume_file import check_pixel_type

_LOCALIZER_WORDS = re.compile(r"\b(scout|topogram|surview|localizer|locator|scanogram|pilot)\b", re.IGNORECASE)
_SCREEN_TYPES = ("SCREEN SAVE", "DOSE_INFO", "DOSE INFO", "PATIENT_INFO", "REF_SURVIEW", "RESULTS", "DOSE REPORT")
_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")


@dataclass(frozen=True)
class SelectionRules:
    """Configurable selection rules (lengths in mm, angles in degrees)."""

    min_slices: int = 30
    max_slice_thickness_mm: float = 3.0
    pixel_spacing_range_mm: tuple[float, float] = (0.3, 1.5)
    min_field_of_view_mm: float = 150.0
    axial_tolerance_deg: float = 2.0
    tilt_tolerance_deg: float = 0.5
    spacing_tolerance: float = 0.1
    exclude_contrast: bool = True
    reconstructions: str = "prefer"  # "prefer": one per study by kernel order; "all": every eligible series
    kernel_preference: tuple[str, ...] = ("soft", "unknown", "sharp")
    kernel_classes: dict[str, list[str]] = field(default_factory=lambda: dict(DEFAULT_KERNEL_CLASSES))


def series_key(series_uid: str) -> str:
    """A file-system-safe key for a series: the UID itself when it is a well-formed UID, else a hash."""
    if series_uid and len(series_uid) <= 64 and _UID.match(series_uid):
        return series_uid
    return "x" + hashlib.sha256((series_uid or "").encode()).hexdigest()[:24]


def study_key(study_uid: str | None) -> str:
    """A pseudonymous study key (the StudyInstanceUID itself is not an output field by default)."""
    return "s" + hashlib.sha256((study_uid if isinstance(study_uid, str) else "").encode()).hexdigest()[:16]


def _mode(values: pd.Series):
    v = values.dropna()
    if v.empty:
        return None
    return v.astype(str).value_counts().index[0] if v.dtype == object else v.mode().iloc[0]


def _distinct(values: pd.Series, ndigits: int = 3) -> int:
    out = set()
    for v in values:
        if v is None or (isinstance(v, float) and np.isnan(v)):
            continue
        if isinstance(v, (list, tuple, np.ndarray)):
            out.add(tuple(round(float(x), ndigits) for x in v))
        else:
            out.add(v)
    return len(out)


def _series_row(files: pd.DataFrame, rules: SelectionRules) -> dict:
    """Summarise one series and apply the per-series rules in order; first failing rule wins."""
    if "source_format" in files.columns and files["source_format"].notna().any():
        return _volume_series_row(files, rules)
    first = files.iloc[0]
    modality = _mode(files["modality"])
    image_type = _mode(files["image_type"]) or ""
    sop = _mode(files["sop_class_uid"])
    desc = _mode(files["series_description"]) or ""
    kernel = _mode(files["convolution_kernel"])
    row: dict = {
        "series_uid": first["series_uid"],
        "series_key": series_key(first["series_uid"]),
        "patient_id": _mode(files["patient_id"]),
        "study_uid": _mode(files["study_uid"]),
        "study_date": _mode(files["study_date"]),
        "series_number": _mode(files["series_number"]),
        "n_files": int(len(files)),
        "modality": modality,
        "sop_class_uid": sop,
        "image_type": image_type or None,
        "manufacturer": _mode(files["manufacturer"]),
        "model": _mode(files["model"]),
        "kernel": kernel,
        "kernel_class": kernel_class(kernel, rules.kernel_classes),
        "kvp": _mode(files["kvp"]),
        "tube_current_ma": _mode(files["tube_current_ma"]),
        "exposure_mas": _mode(files["exposure_mas"]),
        "ctdi_vol": _mode(files["ctdi_vol"]),
        "slice_thickness_mm": _mode(files["slice_thickness"]),
        "patient_position": _mode(files["patient_position"]),
        "transfer_syntax": _mode(files["transfer_syntax"]),
        "rows": _mode(files["rows"]),
        "columns": _mode(files["columns"]),
        "contrast": bool(files["contrast_agent"].dropna().map(lambda s: s.strip().upper() not in ("", "NONE", "NO"))
                         .any()),
        "gantry_tilt_deg": _mode(files["gantry_tilt"]),
        "n_slices": None,
        "increment_mm": None,
        "z_extent_mm": None,
        "pixel_spacing_row_mm": None,
        "pixel_spacing_col_mm": None,
        "axial_deviation_deg": None,
    }

    def decide(reason: str, message: str) -> dict:
        row["reason"], row["message"] = reason, message
        return row

    name = f"series {row['series_key']}"
    if modality is not None and modality.upper() != "CT":
        return decide("not_ct", f"{name}: Modality is {modality}, not CT")
    if sop == SECONDARY_CAPTURE_STORAGE or "SECONDARY" in image_type and any(t in image_type for t in _SCREEN_TYPES):
        if any(t in image_type for t in _SCREEN_TYPES) or desc.lower().startswith(("dose", "exam summary")):
            return decide("dose_screen", f"{name}: dose report / exam summary screen (ImageType {image_type})")
        return decide("secondary_capture", f"{name}: secondary capture (SOP class {sop}, ImageType {image_type})")
    if sop not in (None, "", CT_IMAGE_STORAGE):
        return decide("not_ct_image_storage", f"{name}: SOP class {sop} is not CT Image Storage; re-export the "
                      "series as single-frame CT images")
    if modality is None and sop is None:
        return decide("not_ct", f"{name}: neither Modality nor SOP class is present")
    if "LOCALIZER" in image_type or _LOCALIZER_WORDS.search(desc):
        return decide("localizer", f"{name}: localizer/scout image (ImageType {image_type})")
    if any(t in image_type for t in _SCREEN_TYPES):
        return decide("dose_screen", f"{name}: screen image (ImageType {image_type})")
    if files["has_pixel_data"].eq(False).all():
        return decide("no_pixel_data", f"{name}: no file has Pixel Data")
    if (files["number_of_frames"].fillna(1) > 1).any():
        return decide("multiframe_unsupported", f"{name}: multi-frame images; export as single-frame slices")
    images = files[files["has_pixel_data"].ne(False)]
    if images["ipp"].isna().any() or images["iop"].isna().any():
        return decide("missing_geometry", f"{name}: ImagePositionPatient/ImageOrientationPatient missing in "
                      f"{int(images['ipp'].isna().sum() + images['iop'].isna().sum())} file(s)")
    if images["pixel_spacing"].isna().any():
        return decide("missing_pixel_spacing", f"{name}: PixelSpacing missing in "
                      f"{int(images['pixel_spacing'].isna().sum())} file(s)")
    for col in ("iop", "pixel_spacing", "rows", "columns"):
        if _distinct(images[col]) > 1:
            return decide("inconsistent_geometry", f"{name}: slices differ in {col}")
    iop = np.asarray(images["iop"].iloc[0], dtype=float)
    ps = images["pixel_spacing"].iloc[0]
    row["pixel_spacing_row_mm"], row["pixel_spacing_col_mm"] = float(ps[0]), float(ps[1])
    stack = order_slices(np.stack(images["ipp"].map(np.asarray).to_list()), iop)
    ipps_sorted = np.stack(images["ipp"].map(np.asarray).to_list())[stack.order]
    row["n_slices"] = int(len(images))
    row["axial_deviation_deg"] = axial_deviation_deg(stack.normal)
    tilt_header = abs(float(row["gantry_tilt_deg"] or 0.0))
    tilt_geom = stack_tilt_deg(ipps_sorted, stack.normal)
    if tilt_header > rules.tilt_tolerance_deg or tilt_geom > rules.tilt_tolerance_deg:
        return decide("gantry_tilt", f"{name}: gantry tilt {max(tilt_header, tilt_geom):.1f} deg (header "
                      f"{tilt_header:.1f}, slice stack {tilt_geom:.1f}) above selection.tilt_tolerance_deg = "
                      f"{rules.tilt_tolerance_deg:g}; tilt correction is not applied")
    if row["axial_deviation_deg"] > rules.axial_tolerance_deg:
        return decide("not_axial", f"{name}: slice normal {row['axial_deviation_deg']:.1f} deg from the head-feet "
                      f"axis, above selection.axial_tolerance_deg = {rules.axial_tolerance_deg:g}")
    fov = min(float(ps[0]) * float(row["rows"] or 0), float(ps[1]) * float(row["columns"] or 0))
    if fov < rules.min_field_of_view_mm:
        return decide("field_of_view_too_small", f"{name}: field of view {fov:.0f} mm ({row['rows']}x{row['columns']} "
                      f"pixels of {float(ps[0]):.3f} mm) is below selection.min_field_of_view_mm = "
                      f"{rules.min_field_of_view_mm:g}; header and pixels may not match")
    spacing = check_spacing(stack.positions_mm, rules.spacing_tolerance)
    row["increment_mm"] = spacing.increment_mm
    row["z_extent_mm"] = float(stack.positions_mm[-1] - stack.positions_mm[0]) if len(images) > 1 else 0.0
    if spacing.reason is not None:
        return decide(spacing.reason, f"{name}: {spacing.message}")
    if len(images) < rules.min_slices:
        return decide("too_few_slices",
                      f"{name}: {len(images)} slices, below selection.min_slices = {rules.min_slices}")
    thickness = row["slice_thickness_mm"]
    thick = float(thickness) if thickness is not None else spacing.increment_mm
    failed = _acquisition_rules(rules, name, thick, (float(ps[0]), float(ps[1])), bool(row["contrast"]),
                                "is recorded")
    if failed:
        return decide(*failed)
    row["reason"], row["message"] = SELECTED, f"{name}: eligible"
    return row


def _acquisition_rules(rules: SelectionRules, name: str, thickness_mm: float, pixel_spacing_mm: tuple[float, float],
                       contrast: bool, contrast_source: str) -> tuple[str, str] | None:
    """The last rules of a series, DICOM or volume file, in order: slice thickness (mm), in-plane pixel spacing
    (row, column; mm), recorded contrast. Returns the first failing rule's (reason, message), or None."""
    if thickness_mm > rules.max_slice_thickness_mm + 1e-6:
        return "slice_too_thick", (f"{name}: slice thickness {thickness_mm:.2f} mm above "
                                   f"selection.max_slice_thickness_mm = {rules.max_slice_thickness_mm:g}")
    lo, hi = rules.pixel_spacing_range_mm
    if not all(lo <= v <= hi for v in pixel_spacing_mm):
        return "pixel_spacing_out_of_range", (f"{name}: pixel spacing {pixel_spacing_mm[0]:.3f} x "
                                              f"{pixel_spacing_mm[1]:.3f} mm outside selection.pixel_spacing_range_mm "
                                              f"= [{lo:g}, {hi:g}]")
    if rules.exclude_contrast and contrast:
        return "contrast_enhanced", (f"{name}: ContrastBolusAgent {contrast_source} and selection.exclude_contrast "
                                     "is true")
    return None


def _volume_series_row(files: pd.DataFrame, rules: SelectionRules) -> dict:
    """Summarise a volume file (one file, one series) and apply the per-series rules that its header and sidecar
    can answer, in the DICOM rules' order. Sizes and spacings are those of the grid reoriented to (x -> L,
    y -> P, z -> S), as :func:`cacflow.io.volume_file.read_volume_file` stores it. A rule that needs a field
    nobody gave (slice thickness) excludes the series and says so, instead of guessing."""
    f = {k: (None if not isinstance(v, (list, np.ndarray)) and pd.isna(v) else v)
         for k, v in files.iloc[0].items()}  # missing values as None
    kernel = f["convolution_kernel"]
    row: dict = {
        "series_uid": f["series_uid"], "series_key": series_key(f["series_uid"]), "patient_id": f["patient_id"],
        "study_uid": f["study_uid"], "study_date": f["study_date"], "series_number": None, "n_files": int(len(files)),
        "modality": f["modality"], "sop_class_uid": None, "image_type": None, "manufacturer": f["manufacturer"],
        "model": f["model"], "kernel": kernel, "kernel_class": kernel_class(kernel, rules.kernel_classes),
        "kvp": f["kvp"], "tube_current_ma": f["tube_current_ma"], "exposure_mas": f["exposure_mas"],
        "ctdi_vol": f["ctdi_vol"], "slice_thickness_mm": f["slice_thickness"],
        "patient_position": f["patient_position"], "transfer_syntax": None, "rows": None, "columns": None,
        "contrast": bool(isinstance(f["contrast_agent"], str)
                         and f["contrast_agent"].strip().upper() not in ("", "NONE", "NO")),
        "gantry_tilt_deg": None, "n_slices": None, "increment_mm": None, "z_extent_mm": None,
        "pixel_spacing_row_mm": None, "pixel_spacing_col_mm": None, "axial_deviation_deg": None,
        "source_format": f["source_format"], "unknown_fields": f["unknown_fields"],
    }

    def decide(reason: str, message: str) -> dict:
        row["reason"], row["message"] = reason, message
        return row

    name = f"series {row['series_key']} ({f['source_format']} volume file)"
    if len(files) > 1:  # cannot happen with derived UIDs; guards the one-file-one-series rule
        return decide("inconsistent_geometry", f"{name}: {len(files)} files share one series UID")
    modality = row["modality"]
    if modality is not None and str(modality).upper() != "CT":
        return decide("not_ct", f"{name}: Modality is {modality} (sidecar or volumes.defaults), not CT")
    size = [int(n) for n in f["volume_size"]]
    pixels = check_pixel_type(int(f["dimension"]), str(f["pixel_type"]), int(f["samples_per_pixel"]), size)
    if pixels.reason is not None:
        return decide(pixels.reason, f"{name}: {pixels.message}")
    direction = np.asarray(f["direction"], dtype=float).reshape(3, 3)
    spacing = [float(v) for v in f["volume_spacing"]]
    normal = np.cross(direction[:, 0], direction[:, 1])
    normal = normal / np.linalg.norm(normal)
    shear = float(np.degrees(np.arccos(min(1.0, abs(float(direction[:, 2] @ normal))
                                          / float(np.linalg.norm(direction[:, 2]))))))
    row["gantry_tilt_deg"] = shear
    if shear > rules.tilt_tolerance_deg:
        return decide("gantry_tilt", f"{name}: the slice axis is {shear:.1f} deg from the normal of the image "
                      f"plane (a sheared grid, as from a gantry tilt), above selection.tilt_tolerance_deg = "
                      f"{rules.tilt_tolerance_deg:g}; resample the file to an orthogonal grid")
    oblique = axis_obliquity_deg(direction)
    row["axial_deviation_deg"] = oblique
    order = lps_axis_order(direction)
    if oblique > rules.axial_tolerance_deg or order is None:
        return decide("not_axial", f"{name}: an image axis is {oblique:.1f} deg from the nearest patient axis "
                      f"(oblique direction matrix), above selection.axial_tolerance_deg = "
                      f"{rules.axial_tolerance_deg:g}; resample the file to an axis-aligned grid")
    ix, iy, iz = order
    row["columns"], row["rows"], row["n_slices"] = size[ix], size[iy], size[iz]
    row["pixel_spacing_row_mm"], row["pixel_spacing_col_mm"] = spacing[iy], spacing[ix]
    row["increment_mm"] = spacing[iz]
    row["z_extent_mm"] = spacing[iz] * (size[iz] - 1)
    fov = min(spacing[iy] * size[iy], spacing[ix] * size[ix])
    if fov < rules.min_field_of_view_mm:
        return decide("field_of_view_too_small", f"{name}: field of view {fov:.0f} mm ({size[iy]}x{size[ix]} "
                      f"voxels of {spacing[iy]:.3f} mm) is below selection.min_field_of_view_mm = "
                      f"{rules.min_field_of_view_mm:g}")
    if size[iz] < rules.min_slices:
        return decide("too_few_slices", f"{name}: {size[iz]} slices, below selection.min_slices = {rules.min_slices}")
    thickness = row["slice_thickness_mm"]
    if thickness is None or (isinstance(thickness, float) and np.isnan(thickness)):
        return decide("slice_thickness_unknown", f"{name}: slice thickness unknown (a volume file does not record "
                      f"it; the slice spacing {spacing[iz]:.2f} mm is not the thickness) and "
                      "selection.max_slice_thickness_mm needs it; give SliceThickness in the file's sidecar JSON or "
                      "in the cohort's volumes.defaults")
    failed = _acquisition_rules(rules, name, float(thickness), (spacing[iy], spacing[ix]), bool(row["contrast"]),
                                "is given (sidecar or volumes.defaults)")
    if failed:
        return decide(*failed)
    row["reason"], row["message"] = SELECTED, f"{name}: eligible"
    return row


def _prefer_reconstructions(manifest: pd.DataFrame, rules: SelectionRules) -> pd.DataFrame:
    """Among eligible series of one study keep one: kernel class order, then thinner slices, more slices, UID."""
    eligible = manifest["reason"] == SELECTED
    if rules.reconstructions == "all" or not eligible.any():
        return manifest
    rank = {cls: i for i, cls in enumerate(rules.kernel_preference)}
    cand = manifest[eligible].copy()
    cand["_rank"] = cand["kernel_class"].map(lambda c: rank.get(c, len(rank)))
    cand["_thick"] = cand["slice_thickness_mm"].fillna(99.0)
    cand["_n"] = -cand["n_slices"].fillna(0)
    cand = cand.sort_values(["study_uid", "_rank", "_thick", "_n", "series_uid"])
    chosen = cand.groupby("study_uid", dropna=False, sort=False).head(1)
    winners = dict(zip(chosen["study_uid"], chosen["series_key"]))
    for idx in cand.index.difference(chosen.index):
        w = winners[cand.at[idx, "study_uid"]]
        manifest.at[idx, "reason"] = "not_preferred_reconstruction"
        manifest.at[idx, "message"] = (f"series {manifest.at[idx, 'series_key']}: kernel {manifest.at[idx, 'kernel']} "
                                       f"({manifest.at[idx, 'kernel_class']}); series {w} of the same study preferred "
                                       f"(selection.reconstructions = prefer, kernel_preference "
                                       f"{list(rules.kernel_preference)}; 'all' keeps every one)")
    return manifest


def normalise_inventory(inventory: pd.DataFrame) -> pd.DataFrame:
    """Flag unusable files (no series UID, truncated native pixel data) and group UID-less images by folder.

    Idempotent; returns a copy.
    """
    inv = inventory.copy()
    bad = inv["error"].notna()
    # Images without SeriesInstanceUID (over-anonymised exports) are grouped by their folder instead.
    folder_group = ~bad & inv["series_uid"].isna() & inv["has_pixel_data"].eq(True) & inv["ipp"].notna()
    inv.loc[folder_group, "series_uid"] = inv.loc[folder_group, "path"].map(
        lambda p: "folder:" + p.rsplit("/", 1)[0] if "/" in p else "folder:.")
    no_uid = ~bad & inv["series_uid"].isna()
    inv.loc[no_uid, "error"] = "missing_series_uid"
    inv.loc[no_uid, "message"] = inv.loc[no_uid, "path"].map(lambda p: f"{p}: no SeriesInstanceUID")
    truncated = (~bad & ~no_uid & inv["pixel_data_length"].notna() & inv["rows"].notna() & inv["columns"].notna()
                 & inv["transfer_syntax"].isin(["1.2.840.10008.1.2", "1.2.840.10008.1.2.1"]))
    need = inv["rows"].fillna(0) * inv["columns"].fillna(0) * inv["bits_allocated"].fillna(16) // 8
    truncated &= inv["pixel_data_length"].fillna(0) < need
    inv.loc[truncated, "error"] = "pixel_data_truncated"
    inv.loc[truncated, "message"] = inv.loc[truncated].apply(
        lambda r: f"{r['path']}: Pixel Data holds {int(r['pixel_data_length'])} bytes, {int(need[r.name])} expected "
                  "from Rows x Columns; the file is truncated or its header does not match its pixels", axis=1)
    return inv


def select_series(inventory: pd.DataFrame, rules: SelectionRules | None = None,
                  normalised: bool = False) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Group files into series and apply the selection rules.

    Returns:
        ``(manifest, file_exclusions)``: the manifest has one row per SeriesInstanceUID with ``selected``,
        ``reason`` (a code from :data:`cacflow.discovery.reasons.REASONS` or ``"selected"``) and ``message``;
        ``file_exclusions`` lists unusable files (``path``, ``reason``, ``message``, ``series_uid``).
        Pass ``normalised=True`` when ``inventory`` already went through :func:`normalise_inventory`.
    """
    rules = rules or SelectionRules()
    inv = inventory if normalised else normalise_inventory(inventory)
    columns = ["path", "series_uid", "error", "message"]
    file_excl = inv[inv["error"].notna()][columns].rename(columns={"error": "reason"})
    good = inv[inv["error"].isna()]
    rows = [_series_row(g, rules) for _, g in good.groupby("series_uid", sort=True)]
    manifest = pd.DataFrame(rows)
    if manifest.empty:
        manifest = pd.DataFrame(columns=["series_uid", "series_key", "reason", "message", "selected"])
    else:
        # Duplicate SOP instances (the same image twice) make a series ambiguous.
        dup = good[good["sop_instance_uid"].notna()].groupby("series_uid")["sop_instance_uid"].apply(
            lambda s: int(s.duplicated().sum()))
        for idx, r in manifest.iterrows():
            n = int(dup.get(r["series_uid"], 0))
            if n and r["reason"] == SELECTED:
                manifest.at[idx, "reason"] = "duplicate_slices"
                manifest.at[idx, "message"] = f"series {r['series_key']}: {n} file(s) repeat a SOPInstanceUID"
        manifest = _prefer_reconstructions(manifest, rules)
    manifest["selected"] = manifest["reason"] == SELECTED
    unknown = set(manifest["reason"]) - set(REASONS) - {SELECTED}
    if unknown:
        raise AssertionError(f"selection produced undocumented reason codes {unknown}")
    manifest["study_key"] = manifest.get("study_uid", pd.Series(dtype=object)).map(study_key)
    manifest["study_year"] = manifest.get("study_date", pd.Series(dtype=object)).map(
        lambda d: int(d[:4]) if isinstance(d, str) and d[:4].isdigit() else None)
    return manifest.reset_index(drop=True), file_excl.reset_index(drop=True)
