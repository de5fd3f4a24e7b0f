import numpy as np
import pandas as pd
import pytest

from cacflow.discovery.kernels import kernel_class
from cacflow.discovery.selection import SelectionRules, select_series, series_key
from cacflow.imaging.geometry import check_spacing, order_slices, stack_tilt_deg


@pytest.mark.parametrize("kernel, cls", [
    ("STANDARD", "soft"), ("BONE", "sharp"), ("LUNG", "sharp"), ("B30f", "soft"), ("B31f", "soft"),
    ("B50f", "sharp"), ("B60f", "sharp"), ("FC10", "soft"), ("FC51", "sharp"), ("C", "soft"), ("D", "sharp"),
    ("YD", "sharp"), ("B30f\\SAFIRE", "soft"), (None, "unknown"), ("XYZ", "unknown"),
])
def test_kernel_classes(kernel, cls):
    assert kernel_class(kernel) == cls


def test_spacing_checks():
    assert check_spacing(np.arange(10) * 2.5).reason is None
    assert check_spacing(np.r_[0, 2.5, 5, 10, 12.5]).reason == "missing_slices"
    assert check_spacing(np.r_[0, 2.5, 2.5, 5]).reason == "duplicate_slices"
    assert check_spacing(np.r_[0, 4, 8, 15, 22]).reason == "irregular_spacing"


def test_order_ignores_instance_order_and_handles_ffs():
    ipps = np.array([[0, 0, z] for z in (30.0, 10.0, 20.0)])
    s = order_slices(ipps, [1, 0, 0, 0, 1, 0])
    assert s.order.tolist() == [1, 2, 0] and s.increment_mm == pytest.approx(10)
    ffs = order_slices(ipps, [-1, 0, 0, 0, 1, 0])  # normal -z: ascending along it goes inferior
    assert ffs.order.tolist() == [0, 2, 1]
    sheared = np.array([[0, 0.0 + k * 0.3, k * 1.0] for k in range(5)])
    assert stack_tilt_deg(sheared, np.array([0, 0, 1.0])) == pytest.approx(np.degrees(np.arctan(0.3)), abs=1e-6)


def _inventory(series: dict[str, dict]) -> pd.DataFrame:
    rows = []
    for uid, spec in series.items():
        for k in range(spec.get("n", 40)):
            rows.append({
                "path": f"{uid}/{k}.dcm", "error": None, "message": None, "series_uid": uid, "study_uid": "1.2.3",
                "patient_id": "P1", "study_date": "20000101", "modality": "CT",
                "sop_class_uid": "1.2.840.10008.5.1.4.1.1.2",
                "sop_instance_uid": f"{uid}.{k}", "image_type": "ORIGINAL\\PRIMARY\\AXIAL", "series_description": "",
                "convolution_kernel": spec["kernel"], "slice_thickness": spec.get("thick", 2.0), "has_pixel_data": True,
                "pixel_data_length": 512 * 512 * 2, "rows": 512, "columns": 512, "bits_allocated": 16,
                "transfer_syntax": "1.2.840.10008.1.2.1", "ipp": [0.0, 0.0, 2.0 * k], "iop": [1.0, 0, 0, 0, 1, 0],
                "pixel_spacing": [0.7, 0.7], "number_of_frames": None, "gantry_tilt": 0.0, "contrast_agent": None,
                "series_number": 1, "manufacturer": "GE", "model": "x", "kvp": 120.0, "tube_current_ma": 50.0,
                "exposure_mas": 20.0, "ctdi_vol": 2.0, "patient_position": "HFS",
            })
    return pd.DataFrame(rows)


def test_kernel_preference_picks_soft_and_all_keeps_both():
    inv = _inventory({"1.1": {"kernel": "BONE"}, "1.2": {"kernel": "STANDARD"}, "1.3": {"kernel": "STANDARD",
                                                                                        "thick": 5.0}})
    m, _ = select_series(inv)
    by = m.set_index("series_uid")["reason"]
    assert by["1.2"] == "selected" and by["1.1"] == "not_preferred_reconstruction" and by["1.3"] == "slice_too_thick"
    m_all, _ = select_series(inv, SelectionRules(reconstructions="all"))
    assert set(m_all[m_all.selected].series_uid) == {"1.1", "1.2"}


def test_series_key_is_safe_for_paths():
    assert series_key("1.2.840.1") == "1.2.840.1"
    for bad in ("../../etc", "1.2/3", "x" * 80):
        k = series_key(bad)
        assert "/" not in k and ".." not in k and k.startswith("x")


def test_exclusion_messages_name_the_setting_to_change():
    inv = _inventory({"1.1": {"kernel": "BONE"}, "1.2": {"kernel": "STANDARD"}, "1.3": {"kernel": "STANDARD",
                                                                                        "thick": 3.75},
                      "1.4": {"kernel": "STANDARD", "n": 12}})
    m, _ = select_series(inv, SelectionRules(max_slice_thickness_mm=3.0))
    msg = m.set_index("series_uid")["message"]
    assert msg["1.3"].endswith("slice thickness 3.75 mm above selection.max_slice_thickness_mm = 3")
    assert "below selection.min_slices = 30" in msg["1.4"]
    assert "selection.reconstructions = prefer" in msg["1.1"]
