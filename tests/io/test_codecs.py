"""Lossless re-encodings of a real CT slice decode to exactly the uncompressed HU (deflate, RLE, JPEG-LS, J2K)."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from pydicom.uid import DeflatedExplicitVRLittleEndian, JPEG2000Lossless, JPEGLSLossless, RLELossless

from cacflow.io.dicom import read_slice


@pytest.mark.parametrize("syntax", [DeflatedExplicitVRLittleEndian, RLELossless, JPEGLSLossless, JPEG2000Lossless])
def test_reencoded_slice_decodes_identically(real_data, tmp_path, syntax):
    src = real_data / "conformance_ct" / "nema_wg04_ct1_ct2" / "CT2_UNC"
    reference = read_slice(src).hu
    ds = pydicom.dcmread(src)
    if syntax == DeflatedExplicitVRLittleEndian:
        ds.file_meta.TransferSyntaxUID = syntax
        out = tmp_path / "deflated.dcm"
        ds.save_as(out, enforce_file_format=True)
    else:
        ds.compress(syntax, ds.pixel_array)
        out = tmp_path / "compressed.dcm"
        ds.save_as(out)
    assert str(pydicom.dcmread(out).file_meta.TransferSyntaxUID) == syntax
    assert np.array_equal(read_slice(out).hu, reference)
