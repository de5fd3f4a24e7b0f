"""Reason codes for excluded files and series: stable identifiers with a one-line explanation each.

Every exclusion row carries one of these codes and a message naming the offending file or series and the fix.
"""

from __future__ import annotations

REASONS: dict[str, str] = {
    # file level
    "not_dicom": "the file is not readable as DICOM (truncated header, another format, or corrupt)",
    "unreadable_file": "the file cannot be opened or read",
    "missing_series_uid": "the file has no SeriesInstanceUID, so it cannot be grouped into a series",
    "pixel_data_truncated": "Pixel Data is shorter than Rows x Columns x BitsAllocated/8",
    "pixel_decode_failed": "the compressed pixel data could not be decoded",
    "volume_file_unreadable": "a volume file (NIfTI, NRRD, MetaImage) cannot be read by SimpleITK (truncated, corrupt)",
    "volume_data_missing": "a volume header (.mhd, .nhdr) names a pixel data file that is missing",
    "sidecar_invalid": "a volume file's sidecar JSON is not a JSON object or a value has the wrong type",
    # series level
    "not_ct": "Modality is not CT",
    "not_ct_image_storage": "SOP class is not CT Image Storage (e.g. Enhanced CT, another modality's class)",
    "secondary_capture": "a secondary capture (screenshot, reformat or report image), not an acquired slice stack",
    "dose_screen": "a dose report or exam summary screen",
    "localizer": "a localizer/scout/topogram image, not an axial reconstruction",
    "no_pixel_data": "no file of the series contains pixel data",
    "multiframe_unsupported": "multi-frame images are not supported; a stack of single-frame slices is required",
    "missing_geometry": "ImagePositionPatient or ImageOrientationPatient is missing",
    "missing_pixel_spacing": "PixelSpacing is missing, so areas in mm² cannot be computed",
    "inconsistent_geometry": "slices differ in orientation, matrix size or pixel spacing",
    "gantry_tilt": "the acquisition is gantry tilted (slices are sheared); tilt correction is not applied",
    "not_axial": "the slices are not axial",
    "field_of_view_too_small": "the reconstructed field of view is too small for a chest CT (header/pixel mismatch?)",
    "duplicate_slices": "two or more slices share a position",
    "missing_slices": "there is a gap of one or more missing slices",
    "irregular_spacing": "slice spacing is not constant",
    "too_few_slices": "fewer slices than the configured minimum",
    "slice_too_thick": "slice thickness above the configured maximum",
    "pixel_spacing_out_of_range": "in-plane pixel spacing outside the configured range",
    "contrast_enhanced": "a contrast agent is recorded; calcium scores on contrast CT are not valid",
    "not_preferred_reconstruction": "another reconstruction of the same study was preferred (kernel order)",
    "conversion_failed": "the series could not be converted (see message)",
    "volume_not_3d": "a volume file is not one 3-D image (2-D, or 4-D such as a time series)",
    "volume_pixel_type": "a volume file's pixel type cannot hold CT numbers (8-bit, vector/RGB or complex)",
    "slice_thickness_unknown": "a volume file records no slice thickness (no sidecar SliceThickness, no cohort "
                               "default), and the thickness rule needs it",
    "not_hu": "a volume file's values are not HU (no value at or below -500 HU: unrescaled, a mask, not CT)",
    # scoring stage
    "heart_not_in_field_of_view": "no heart was found (no lungs or mediastinum in the scan: abdomen, head, ...)",
    "contrast_enhanced_image": "the heart's blood pool measures contrast (median >= 150 HU in the core of its box), "
                               "whatever the header records; calcium scores on contrast CT are not valid",
    "heart_region_implausible": "the heart region found has an implausible size or position",
    "user_heart_region_outside_volume": "the user-supplied heart box or mask holds no voxel of the scan",
    "user_heart_region_invalid": "the user-supplied heart mask cannot be read or is not in the series' geometry",
    "reference_unreadable": "the reference label map cannot be read as NIfTI",
    "reference_geometry_mismatch": "the reference label map is not in the series' geometry",
    "reference_labels_invalid": "the reference label map has values other than 0-4 (1 LM, 2 LAD, 3 CX, 4 RCA)",
    "volume_unreadable": "the series' scoring volume could not be read (rerun preprocessing)",
    "scoring_failed": "a scorer raised an error on this series (see message)",
    "not_preprocessed": "the series has no scoring volume (see the preprocessing status)",
}

SELECTED = "selected"


def describe(code: str) -> str:
    """The explanation of a reason code; raises KeyError for unknown codes so typos fail loudly."""
    return REASONS[code]
