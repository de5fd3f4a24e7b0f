"""Scanner and protocol draws for synthetic low-dose chest CT series.

Everything here is pure: a :class:`numpy.random.Generator` and a participant
index go in, frozen dataclasses come out.  Geometry is in patient LPS
millimetres (x to the patient's left, y posterior, z superior).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pydicom.uid import (
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLSLossless,
    RLELossless,
)

#: Transfer syntaxes cycled over participants (period 6): any cohort with
#: n >= 6 contains each; explicit VR little endian is the most common.
TRANSFER_SYNTAX_CYCLE: tuple[str, ...] = (
    str(ExplicitVRLittleEndian),
    str(RLELossless),
    str(ImplicitVRLittleEndian),
    str(JPEGLSLossless),
    str(JPEG2000Lossless),
    str(ExplicitVRLittleEndian),
)

#: Manufacturer -> (models, soft kernels, sharp kernels).
VENDORS: dict[str, tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]] = {
    "GE MEDICAL SYSTEMS": (("LightSpeed Plus", "LightSpeed QX/i", "LightSpeed16"), ("STANDARD", "SOFT"),
                           ("BONE", "LUNG")),
    "SIEMENS": (("Sensation 16", "Volume Zoom", "Emotion 6"), ("B30f", "B31f"), ("B50f", "B60f")),
    "TOSHIBA": (("Aquilion", "Asteion"), ("FC10", "FC02"), ("FC51", "FC53")),
    "Philips": (("MX8000", "Brilliance 16"), ("B", "C"), ("D", "YD")),
}

#: (slice thickness mm, increment mm); increment <= thickness, some overlap.
THICKNESS_INCREMENT: tuple[tuple[float, float], ...] = (
    (1.0, 1.0),
    (1.25, 1.0),
    (1.5, 1.5),
    (2.0, 1.0),
    (2.0, 2.0),
    (2.5, 2.5),
    (2.5, 1.25),
    (3.0, 3.0),
    (3.0, 1.5),
)


@dataclass(frozen=True)
class Storage:
    """How HU are mapped to stored integers.

    ``stored = HU - intercept`` (slope 1).  ``alt_intercept`` (if not None) is
    used on every other slice to exercise per-slice rescale.
    """

    name: str
    signed: bool
    bits_stored: int
    intercept: float
    padding: int
    alt_intercept: float | None = None

    @property
    def dtype(self) -> str:
        return "int16" if self.signed else "uint16"

    def stored_range(self) -> tuple[int, int]:
        if self.signed:
            return -(2 ** (self.bits_stored - 1)), 2 ** (self.bits_stored - 1) - 1
        return 0, 2**self.bits_stored - 1


#: Storage variants, cycled over participants (period 4).
STORAGE_VARIANTS: tuple[Storage, ...] = (
    Storage("int16_m1024", True, 16, -1024.0, -2000),
    Storage("uint16_12bit", False, 12, -1024.0, 0),
    Storage("int16_zero", True, 16, 0.0, -3024),
    Storage("uint16_16bit", False, 16, -1024.0, 63536),
)


@dataclass(frozen=True)
class Kernel:
    """Reconstruction kernel: name, class and in-plane filter parameters (mm)."""

    name: str
    kernel_class: str  # 'soft' | 'sharp'
    blur_sigma_mm: float  # main Gaussian PSF sigma
    enhance: float  # unsharp-mask weight (0 = none)
    enhance_sigma_mm: float  # sigma of the subtracted wide Gaussian
    noise_corr_mm: float  # noise correlation length (Gaussian sigma)
    noise_highpass: float  # 0..1 fraction of low-pass removed from noise


def make_kernel(name: str, kernel_class: str) -> Kernel:
    """Filter parameters for a kernel class (soft: smooth, sharp: edge-enhancing)."""
    if kernel_class == "soft":
        return Kernel(name, "soft", 0.75, 0.0, 1.5, 0.9, 0.0)
    return Kernel(name, "sharp", 0.35, 0.35, 1.2, 0.45, 0.55)


@dataclass(frozen=True)
class Acquisition:
    """One CT acquisition (may be reconstructed with one or two kernels).

    z positions are slice centres in patient z (mm); ``fov_center_xy`` is the
    LPS (x, y) of the reconstruction centre.
    """

    manufacturer: str
    model: str
    kvp: float
    tube_current_ma: int
    exposure_mas: int
    ctdivol: float
    thickness_mm: float
    increment_mm: float
    pixel_spacing_mm: float
    rows: int
    cols: int
    n_slices: int
    z_first_mm: float  # most inferior slice centre
    fov_center_xy: tuple[float, float]
    patient_position: str  # 'HFS' | 'FFS'
    noise_hu: float  # noise std of the soft reconstruction

    def z_positions(self) -> np.ndarray:
        """Slice-centre z (mm), ascending (inferior -> superior)."""
        return self.z_first_mm + self.increment_mm * np.arange(self.n_slices, dtype=np.float64)


@dataclass(frozen=True)
class Reconstruction:
    """One axial series: an acquisition reconstructed with one kernel."""

    kernel: Kernel
    noise_hu: float
    storage: Storage
    transfer_syntax: str
    shuffle_instances: bool
    negative_spacing: bool  # write SpacingBetweenSlices negative (Philips style)


def draw_acquisition(
    rng: np.random.Generator,
    small: bool,
    heart_center_lps: tuple[float, float, float],
) -> Acquisition:
    """Draw scanner, protocol and geometry for one acquisition.

    Full mode: 512x512, pixel spacing 0.5-0.98 mm, z coverage 180-280 mm of chest.
    Small mode: 192 or 256 pixels, spacing 0.6-0.98 mm (FOV >= 165 mm) cropped around the heart,
    30-70 slices centred on the heart.
    """
    manufacturer = str(rng.choice(sorted(VENDORS)))
    models = VENDORS[manufacturer][0]
    model = str(models[int(rng.integers(len(models)))])
    kvp = float(rng.choice([120.0, 140.0]))
    ma = int(rng.integers(30, 81))
    thickness, increment = THICKNESS_INCREMENT[int(rng.integers(len(THICKNESS_INCREMENT)))]
    hx, hy, hz = heart_center_lps
    if small:
        size = int(rng.choice([192, 256]))
        # field of view >= 165 mm so the heart and its bony surroundings are in view
        spacing = float(np.round(rng.uniform(max(0.6, 165.0 / size), 0.98), 4))
        n_slices = int(np.clip(round(110.0 / increment), 30, 70))
        z_first = hz - 0.5 * (n_slices - 1) * increment + float(rng.uniform(-3.0, 3.0))
        center = (float(hx + rng.uniform(-10, 10)), float(hy + rng.uniform(-10, 10)))
    else:
        size = 512
        spacing = float(np.round(rng.uniform(0.62, 0.98), 4))
        coverage = float(rng.uniform(180.0, 280.0))
        n_slices = int(round(coverage / increment)) + 1
        # cover from below the heart to the lung apices
        z_first = hz - 75.0 + float(rng.uniform(-10.0, 5.0))
        center = (float(rng.uniform(-8, 8)), float(rng.uniform(-15, 5)))
    position = "HFS" if rng.random() < 0.75 else "FFS"
    noise = float(np.round(rng.uniform(15.0, 35.0), 2))
    return Acquisition(
        manufacturer=manufacturer,
        model=model,
        kvp=kvp,
        tube_current_ma=ma,
        exposure_mas=int(round(ma * 0.5)),
        ctdivol=float(np.round(ma * 0.05 * (kvp / 120.0) ** 2, 2)),
        thickness_mm=thickness,
        increment_mm=increment,
        pixel_spacing_mm=spacing,
        rows=size,
        cols=size,
        n_slices=n_slices,
        z_first_mm=float(np.round(z_first, 3)),
        fov_center_xy=(float(np.round(center[0], 3)), float(np.round(center[1], 3))),
        patient_position=position,
        noise_hu=noise,
    )


def draw_reconstructions(
    rng: np.random.Generator,
    acq: Acquisition,
    participant_index: int,
    paired: bool,
) -> list[Reconstruction]:
    """One random-kernel series, or a soft + sharp pair of the same acquisition.

    The first (primary) series takes the cycled transfer syntax and storage;
    participant 0's primary series varies RescaleIntercept between slices.
    """
    soft_names, sharp_names = VENDORS[acq.manufacturer][1], VENDORS[acq.manufacturer][2]
    storage = STORAGE_VARIANTS[participant_index % len(STORAGE_VARIANTS)]
    if participant_index == 0 and storage.signed:
        storage = Storage(storage.name + "_perslice", True, 16, storage.intercept, storage.padding, -1000.0)
    ts = TRANSFER_SYNTAX_CYCLE[participant_index % len(TRANSFER_SYNTAX_CYCLE)]
    shuffle = bool(rng.random() < 0.5) or participant_index % 3 == 1
    philips_style = acq.manufacturer == "Philips" and bool(rng.random() < 0.7)
    negative = philips_style or participant_index % 4 == 2
    soft = make_kernel(str(rng.choice(soft_names)), "soft")
    sharp = make_kernel(str(rng.choice(sharp_names)), "sharp")
    sharp_factor = float(rng.uniform(1.5, 1.8))
    sharp_noise = float(np.round(min(acq.noise_hu * sharp_factor, 60.0), 2))
    if paired:
        second_storage = STORAGE_VARIANTS[(participant_index + 1) % len(STORAGE_VARIANTS)]
        return [
            Reconstruction(soft, acq.noise_hu, storage, ts, shuffle, negative),
            Reconstruction(sharp, sharp_noise, second_storage, str(ExplicitVRLittleEndian), not shuffle, negative),
        ]
    if rng.random() < 0.5:
        return [Reconstruction(soft, acq.noise_hu, storage, ts, shuffle, negative)]
    return [Reconstruction(sharp, sharp_noise, storage, ts, shuffle, negative)]
