"""Sampling the phantom onto a slice grid: partial volume, kernel blur, noise.

Volumes are (z, y, x) = (slice, row, column) in the *sorted* slice order:
ascending ``dot(ImagePositionPatient, normal)``.  Only axis-aligned axial
orientations are supported (HFS: row cosine +x; FFS: row cosine -x).

The image is linear in its parts, which is how plaque halos are known exactly::

    hu = blur(background) + sum_i blur(delta_i) + noise

where ``delta_i`` is plaque i's partial-volume contribution before blur.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter

from cacflow.synth.acquisition import Acquisition, Kernel
from cacflow.synth.anatomy import Lesion, Phantom, plane_hu

HU_MIN, HU_MAX = -1024, 3071
#: A plaque's mask is where its blurred contribution raises HU by at least this.
HALO_HU = 30.0


@dataclass(frozen=True)
class SliceGrid:
    """Geometry of one axial series in sorted order.

    ``ipp`` (n, 3) LPS mm; ``iop`` (6,) = row cosine + column cosine;
    ``pixel_spacing`` = (row spacing, column spacing) mm as in DICOM PixelSpacing.
    """

    ipp: np.ndarray
    iop: np.ndarray
    pixel_spacing: tuple[float, float]
    rows: int
    cols: int
    fov_center_xy: tuple[float, float]

    @property
    def normal(self) -> np.ndarray:
        return np.cross(self.iop[:3], self.iop[3:])

    @property
    def n(self) -> int:
        return int(self.ipp.shape[0])

    def x(self) -> np.ndarray:
        """LPS x (mm) of each column."""
        return self.ipp[0, 0] + self.iop[0] * self.pixel_spacing[1] * np.arange(self.cols)

    def y(self) -> np.ndarray:
        """LPS y (mm) of each row."""
        return self.ipp[0, 1] + self.iop[4] * self.pixel_spacing[0] * np.arange(self.rows)

    def z(self) -> np.ndarray:
        """LPS z (mm) of each slice in sorted order."""
        return self.ipp[:, 2].copy()

    def direction(self) -> np.ndarray:
        """(3, 3) with columns row cosine, column cosine, normal."""
        return np.stack([self.iop[:3], self.iop[3:], self.normal], axis=1)

    def fov_mask(self) -> np.ndarray:
        """(rows, cols) bool: inside the circular reconstruction field of view."""
        x, y = self.x(), self.y()
        radius = 0.5 * self.cols * self.pixel_spacing[1]
        return ((x[None, :] - self.fov_center_xy[0]) ** 2 + (y[:, None] - self.fov_center_xy[1]) ** 2) <= radius**2


def make_grid(acq: Acquisition) -> SliceGrid:
    """Slice grid of an acquisition, sorted ascending along the slice normal."""
    dx = acq.pixel_spacing_mm
    cx, cy = acq.fov_center_xy
    z = acq.z_positions()
    if acq.patient_position == "FFS":
        iop = np.array([-1.0, 0.0, 0.0, 0.0, 1.0, 0.0])
        x0 = cx + 0.5 * (acq.cols - 1) * dx
        z = z[::-1]  # normal is -z: ascending order runs inferior
    else:
        iop = np.array([1.0, 0.0, 0.0, 0.0, 1.0, 0.0])
        x0 = cx - 0.5 * (acq.cols - 1) * dx
    y0 = cy - 0.5 * (acq.rows - 1) * dx
    ipp = np.stack([np.full(z.size, np.round(x0, 4)), np.full(z.size, np.round(y0, 4)), np.round(z, 4)], axis=1)
    return SliceGrid(ipp, iop, (dx, dx), acq.rows, acq.cols, acq.fov_center_xy)


@dataclass
class Background:
    """Unblurred, noise-free phantom on the grid (float32 HU) and its label maps (z, y, x)."""

    hu: np.ndarray
    heart: np.ndarray
    lumen: np.ndarray
    distractor: np.ndarray


def render_background(phantom: Phantom, grid: SliceGrid, thickness: float) -> Background:
    """Evaluate the phantom's layers on every slice of ``grid``."""
    x, y = grid.x(), grid.y()
    shape = (grid.n, grid.rows, grid.cols)
    bg = Background(np.empty(shape, np.float32), np.empty(shape, bool), np.empty(shape, np.uint8),
                    np.empty(shape, np.uint8))
    for k, z in enumerate(grid.z()):
        hu, labels = plane_hu(phantom, x, y, float(z), thickness, grid.pixel_spacing[0])
        bg.hu[k] = hu
        bg.heart[k] = labels["heart"]
        bg.lumen[k] = labels["lumen"]
        bg.distractor[k] = labels["distractor"]
    return bg


def blur(volume: np.ndarray, kernel: Kernel, pixel_mm: float, mode: str = "nearest") -> np.ndarray:
    """In-plane reconstruction-kernel PSF (Gaussian, plus unsharp mask for sharp kernels)."""
    s = kernel.blur_sigma_mm / pixel_mm
    out = gaussian_filter(volume, sigma=(0.0, s, s), mode=mode, truncate=3.0)
    if kernel.enhance > 0:
        w = kernel.enhance_sigma_mm / pixel_mm
        wide = gaussian_filter(volume, sigma=(0.0, w, w), mode=mode, truncate=3.0)
        out = (1.0 + kernel.enhance) * out - kernel.enhance * wide
    return out.astype(np.float32)


def noise_field(white: np.ndarray, kernel: Kernel, pixel_mm: float, std_hu: float) -> np.ndarray:
    """Kernel-textured noise from a shared white-noise realisation, scaled to ``std_hu``.

    Soft kernels low-pass the noise (blotchy); sharp kernels keep high frequencies.
    """
    s = kernel.noise_corr_mm / pixel_mm
    n = gaussian_filter(white, sigma=(0.0, s, s), mode="wrap", truncate=3.0)
    if kernel.noise_highpass > 0:
        n = n - kernel.noise_highpass * gaussian_filter(white, sigma=(0.0, 3 * s, 3 * s), mode="wrap", truncate=3.0)
    n *= np.float32(std_hu / float(np.std(n, dtype=np.float64)))
    return n.astype(np.float32)


@dataclass(frozen=True)
class LesionPatch:
    """A plaque's blurred contribution in a local box: ``value`` (z, y, x) at ``offset`` (k, r, c)."""

    lesion_id: int
    offset: tuple[int, int, int]
    value: np.ndarray


def lesion_delta(lesion: Lesion, grid: SliceGrid, thickness: float, bg_hu: np.ndarray,
                 margin_mm: float = 6.0) -> tuple[tuple[int, int, int], np.ndarray] | None:
    """Unblurred partial-volume contribution of one plaque on the slice slabs.

    The plaque replaces the underlying tissue: delta = mean slab alpha * (peak - bg).
    Returns ((k0, r0, c0), delta (z, y, x)) or None if it misses the grid.
    """
    shape = lesion.shape()
    box = shape.bbox()
    x, y, zs = grid.x(), grid.y(), grid.z()
    px = grid.pixel_spacing[0]
    ks = np.nonzero((zs + 0.5 * thickness >= box.lo[2] - px) & (zs - 0.5 * thickness <= box.hi[2] + px))[0]
    cs = np.nonzero((x >= box.lo[0] - margin_mm) & (x <= box.hi[0] + margin_mm))[0]
    rs = np.nonzero((y >= box.lo[1] - margin_mm) & (y <= box.hi[1] + margin_mm))[0]
    if ks.size == 0 or cs.size == 0 or rs.size == 0:
        return None
    k0, k1, r0, r1, c0, c1 = ks[0], ks[-1] + 1, rs[0], rs[-1] + 1, cs[0], cs[-1] + 1
    n_sub = max(4, int(np.ceil(thickness / 0.2)))
    offsets = ((np.arange(n_sub) + 0.5) / n_sub - 0.5) * thickness
    xs, ys = x[c0:c1], y[r0:r1]
    alpha = np.zeros((k1 - k0, r1 - r0, c1 - c0))
    for i, k in enumerate(range(k0, k1)):
        for o in offsets:
            alpha[i] += np.clip(0.5 - shape.sdf(xs, ys, float(zs[k] + o)) / px, 0.0, 1.0)
    alpha /= n_sub
    delta = alpha * (lesion.peak_hu - bg_hu[k0:k1, r0:r1, c0:c1])
    return (int(k0), int(r0), int(c0)), delta.astype(np.float32)


def blur_patch(delta: np.ndarray, kernel: Kernel, pixel_mm: float) -> np.ndarray:
    """Blur a zero-surrounded local patch with the same PSF as the full image."""
    return blur(delta, kernel, pixel_mm, mode="constant")


def quantize(hu: np.ndarray, fov: np.ndarray) -> np.ndarray:
    """Round to integer HU, clip to [-1024, 3071], set outside the FOV to -1024 (int16)."""
    out = np.clip(np.rint(hu), HU_MIN, HU_MAX).astype(np.int16)
    out[:, ~fov] = HU_MIN
    return out
