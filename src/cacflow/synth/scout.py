"""Localizer (scout / topogram) images: coarse projections of the phantom."""

from __future__ import annotations

import numpy as np

from cacflow.synth.anatomy import Phantom, plane_hu

#: Image orientation (row cosine + column cosine) of coronal and sagittal localizers.
CORONAL_IOP = [1.0, 0.0, 0.0, 0.0, 0.0, -1.0]
SAGITTAL_IOP = [0.0, 1.0, 0.0, 0.0, 0.0, -1.0]


def scout_images(phantom: Phantom, z_center: float, n_views: int,
                 step_mm: float = 4.0, size: int = 128
                 ) -> list[tuple[np.ndarray, list[float], list[float], tuple[float, float]]]:
    """Projection images (uint16, 12-bit) with their IPP, IOP and pixel spacing (mm).

    The phantom is sampled on a coarse (size x size x size) grid of ``step_mm``
    centred at (0, 0, ``z_center``); attenuation (HU + 1000) is summed along y
    (coronal view) or x (sagittal view).  Rows run from superior to inferior.
    """
    half = 0.5 * (size - 1) * step_mm
    coords = np.linspace(-half, half, size)
    zs = z_center + coords[::-1]  # superior first
    vol = np.empty((size, size, size), dtype=np.float32)
    for k, z in enumerate(zs):
        vol[k] = plane_hu(phantom, coords, coords, float(z), step_mm, step_mm)[0]
    mu = np.clip(vol + 1000.0, 0.0, None)
    views = [(mu.sum(axis=1), CORONAL_IOP, [-half, 0.0, float(zs[0])]),
             (mu.sum(axis=2), SAGITTAL_IOP, [0.0, -half, float(zs[0])])][:n_views]
    out = []
    for proj, iop, ipp in views:
        img = np.round(4095.0 * proj / max(float(proj.max()), 1.0)).astype(np.uint16)
        out.append((img, ipp, iop, (step_mm, step_mm)))
    return out
