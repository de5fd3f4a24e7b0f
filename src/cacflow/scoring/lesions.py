"""3-D calcified lesions: connected components of the voxels an Agatston score counted.

A lesion is a 26-connected component of counted voxels (voxels of kept 2-D lesions) that stays inside one region
label (one vessel when a label map is given). Every 2-D lesion lies in exactly one 3-D lesion, because in-plane
8-connectivity is contained in 26-connectivity; so lesion Agatston contributions sum to the scan total.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cacflow.imaging.volume import voxel_to_lps
from cacflow.scoring.agatston import AgatstonResult
from cacflow.scoring.components import connect_3d, sparse_label_stats


@dataclass(frozen=True)
class Lesion:
    """One 3-D lesion.

    Attributes:
        lesion_index: 1-based number within the scan and method, in (label, first slice, position) order.
        label: region label (vessel code 1-4 with a label map, 1 for a plain region).
        z_first, z_last: first and last slice index (inclusive) on the scoring grid; ``n_slices`` their count.
        n_voxels: counted voxels; ``volume_mm3`` = n_voxels x pixel area x slice increment.
        peak_hu, mean_hu: over the lesion's voxels (HU).
        agatston: sum of its 2-D lesions' Agatston contributions; ``mass_mg`` its mass score.
        centroid_lps_mm: voxel centroid in patient coordinates (LPS, mm).
    """

    lesion_index: int
    label: int
    z_first: int
    z_last: int
    n_slices: int
    n_voxels: int
    volume_mm3: float
    peak_hu: float
    mean_hu: float
    agatston: float
    mass_mg: float
    centroid_lps_mm: tuple[float, float, float]


def lesions_3d(result: AgatstonResult, hu: np.ndarray, origin_lps_mm: np.ndarray, direction: np.ndarray
               ) -> list[Lesion]:
    """The 3-D lesions of a score, with their share of the Agatston, volume and mass scores."""
    if result.lesion_score.size == 0:
        return []
    lesion3d = connect_3d(result.lesion_labels, result.lesion_label_value)
    n = int(lesion3d.max())
    n2 = result.lesion_score.size
    # each 2-D lesion lies inside exactly one 3-D lesion: the one holding its first voxel
    first = sparse_label_stats(result.lesion_labels, hu, n2).first_flat
    owner = lesion3d.ravel()[first].astype(np.int64)
    agatston = np.bincount(owner - 1, weights=result.lesion_score, minlength=n)
    label = np.zeros(n, dtype=np.int64)
    label[owner - 1] = result.lesion_label_value
    st = sparse_label_stats(lesion3d, hu, n)
    centroids = st.zyx_sums / st.counts[:, None]
    lps = voxel_to_lps(centroids, result.spacing_zyx_mm, origin_lps_mm, direction)
    dz, dy, dx = result.spacing_zyx_mm
    voxel_mm3 = dz * dy * dx
    c_ha = result.convention.mass_calibration_mg_per_cm3_hu
    rows = []
    for i in range(n):
        rows.append(Lesion(
            lesion_index=0, label=int(label[i]), z_first=int(st.z_first[i]), z_last=int(st.z_last[i]),
            n_slices=int(st.z_last[i] - st.z_first[i] + 1), n_voxels=int(st.counts[i]),
            volume_mm3=float(st.counts[i] * voxel_mm3), peak_hu=float(st.peaks[i]),
            mean_hu=float(st.sums[i] / st.counts[i]), agatston=float(agatston[i]),
            mass_mg=float(c_ha * voxel_mm3 / 1000.0 * st.sums[i]),
            centroid_lps_mm=(float(lps[i, 0]), float(lps[i, 1]), float(lps[i, 2])),
        ))
    rows.sort(key=lambda r: (r.label, r.z_first, r.centroid_lps_mm))
    return [Lesion(**{**r.__dict__, "lesion_index": k}) for k, r in enumerate(rows, start=1)]
