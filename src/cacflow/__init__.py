"""cacflow: coronary artery calcium scoring for chest CT cohorts.

Conventions used throughout the package:

* Volumes are numpy arrays indexed ``(z, y, x)``: ``z`` is the slice index sorted by position along the
  slice normal (ascending), ``y`` the image row, ``x`` the image column.
* Physical coordinates are DICOM patient coordinates (LPS: +x to the patient's left, +y posterior,
  +z superior), in millimetres.
* Intensities are Hounsfield units (HU).
"""

__version__ = "0.1.0"
