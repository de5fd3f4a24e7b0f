"""Heart localizer: three 2-D ConvNets that say whether the heart is in an axial, coronal or sagittal slice.

After de Vos et al. (seed 003, its reference [3]): each plane's ConvNet gives a per-slice probability of heart
presence; along each patient axis the slices where the probability exceeds one half form one run, and the three runs
give a 3-D bounding box. The box does not need full resolution, so the ConvNets see a *canvas*: the scan flipped to
canonical orientation (index increasing towards superior, posterior, left), averaged to :data:`CANVAS_MM` isotropic
voxels and centred in a cube of :data:`CANVAS_SIZE` voxels (384 mm), air outside the scan.

Axis order everywhere is (z, y, x) of the canonical canvas: z superior, y posterior, x patient-left (LPS).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cacflow.models.layers import conv_pool_stack

#: Canvas voxel size (mm, isotropic) and edge length (voxels).
CANVAS_MM = 3.0
CANVAS_SIZE = 128
#: Planes in the order of the canvas axis they slice: axial slices index z, coronal y, sagittal x.
PLANES: tuple[str, ...] = ("axial", "coronal", "sagittal")
#: A canvas slice shows the heart when some canvas voxel in it is at least this fraction heart.
PRESENCE_FRACTION = 0.5
#: Plausible heart box extents (mm) along z, y, x; outside them the box is rejected.
PLAUSIBLE_EXTENT_MM = ((50.0, 220.0), (50.0, 200.0), (60.0, 230.0))
#: A heart box centre further than this (mm, in-plane) from the centre of the scan's field of view is implausible.
MAX_OFF_CENTRE_MM = 110.0
#: Margin (mm) added on each side of the probability-crossing edges so the whole heart lies inside.
BOX_MARGIN_MM = 3.0
#: A dip below one half of at most this many canvas slices (6 mm) inside a run does not split it.
MAX_GAP_SLICES = 2
#: Below this confidence the box is not used (the anatomical heuristic takes over).
MIN_CONFIDENCE = 0.6
AIR_HU = -1000.0
#: Lung on a canvas (HU range, open): above air, below fat and soft tissue.
LUNG_RANGE_HU: tuple[float, float] = (-950.0, -500.0)


class LocalizerError(Exception):
    """The localizer cannot give a usable box; ``reason`` is a stable code, ``message`` says why."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason, self.message = reason, message


def normalise_hu(hu: torch.Tensor) -> torch.Tensor:
    """HU -> network input: clip to [-1000, 1000] HU and map to [0, 2] (air 0, water 1)."""
    return (hu.clamp(-1000.0, 1000.0) + 1000.0) / 1000.0


@dataclass(frozen=True)
class CanvasMap:
    """How canvas voxels relate to the input grid.

    ``flip``: input axes (z, y, x) reversed to reach canonical orientation. ``scale``: input voxels per canvas voxel
    along each axis. ``offset``: canvas index of resampled voxel 0 (negative when the scan is wider than the canvas).
    ``input_shape``: the input grid (z, y, x).
    """

    flip: tuple[bool, bool, bool]
    scale: tuple[float, float, float]
    offset: tuple[int, int, int]
    input_shape: tuple[int, int, int]

    def canvas_to_input(self, lo: np.ndarray, hi: np.ndarray) -> tuple[int, int, int, int, int, int]:
        """Half-open input index ranges (z0, z1, y0, y1, x0, x1) of a canvas box given by continuous edges.

        ``lo``/``hi`` are canvas coordinates (voxel units, edges of the box) along z, y, x.
        """
        out: list[int] = []
        for a in range(3):
            n = self.input_shape[a]
            a0 = (float(lo[a]) - self.offset[a]) * self.scale[a]
            a1 = (float(hi[a]) - self.offset[a]) * self.scale[a]
            i0, i1 = int(np.clip(np.floor(a0), 0, n)), int(np.clip(np.ceil(a1), 0, n))
            if self.flip[a]:
                i0, i1 = n - i1, n - i0
            out += [i0, i1]
        return tuple(out)  # type: ignore[return-value]


def canonical_flips(direction: np.ndarray) -> tuple[bool, bool, bool]:
    """Which input axes (z, y, x) point away from superior, posterior, left. Raises for non-axial grids."""
    d = np.asarray(direction, dtype=np.float64).reshape(3, 3)
    # columns of `direction` are the LPS unit vectors of the x, y, z array axes
    for axis, col, lps in (("z", 2, 2), ("y", 1, 1), ("x", 0, 0)):
        if abs(d[lps, col]) < np.cos(np.radians(30.0)):
            raise LocalizerError("not_axial", f"array axis {axis} is not aligned with its patient axis; "
                                              "the localizer reads axial scans only")
    return (bool(d[2, 2] < 0), bool(d[1, 1] < 0), bool(d[0, 0] < 0))


def build_canvas(hu: np.ndarray, spacing_zyx_mm: tuple[float, float, float], direction: np.ndarray,
                 masks: tuple[np.ndarray, ...] = ()) -> tuple[np.ndarray, CanvasMap, list[np.ndarray]]:
    """The localizer's view of a scan: a (128, 128, 128) float32 HU canvas of 3 mm voxels, canonical orientation.

    Args:
        hu: HU volume (z, y, x) on its own grid (any spacing).
        spacing_zyx_mm: voxel size (mm) along z, y, x.
        direction: the volume's direction matrix (columns: LPS unit vectors of the x, y, z axes).
        masks: optional boolean masks on the same grid, carried onto the canvas as voxel fractions (0..1).

    Returns:
        (canvas HU, map back to the input grid, mask fractions on the canvas).
    """
    flip = canonical_flips(direction)
    t = torch.from_numpy(np.ascontiguousarray(hu)).float()
    dims = [a for a in range(3) if flip[a]]
    if dims:
        t = torch.flip(t, dims)
    size = [max(1, int(round(n * s / CANVAS_MM))) for n, s in zip(hu.shape, spacing_zyx_mm)]
    scale = tuple(n / m for n, m in zip(hu.shape, size))
    small = F.adaptive_avg_pool3d(t[None, None], size)[0, 0]
    offset = tuple((CANVAS_SIZE - m) // 2 for m in size)
    canvas = torch.full((CANVAS_SIZE,) * 3, AIR_HU)
    src, dst = _placement(size, offset)
    canvas[dst] = small[src]
    out_masks = []
    for m in masks:
        mt = torch.from_numpy(np.ascontiguousarray(m)).float()
        if dims:
            mt = torch.flip(mt, dims)
        frac = F.adaptive_avg_pool3d(mt[None, None], size)[0, 0]
        mc = torch.zeros((CANVAS_SIZE,) * 3)
        mc[dst] = frac[src]
        out_masks.append(mc.numpy())
    return canvas.numpy(), CanvasMap(flip, scale, offset, tuple(int(n) for n in hu.shape)), out_masks


def _placement(size: list[int], offset: tuple[int, ...]) -> tuple[tuple[slice, ...], tuple[slice, ...]]:
    src, dst = [], []
    for m, o in zip(size, offset):
        d0, d1 = max(0, o), min(CANVAS_SIZE, o + m)
        src.append(slice(d0 - o, d1 - o))
        dst.append(slice(d0, d1))
    return tuple(src), tuple(dst)


def plane_slices(canvas: np.ndarray | torch.Tensor, plane: str) -> torch.Tensor:
    """All slices of one plane as a (128, 1, 128, 128) float tensor (network input, normalised)."""
    t = torch.as_tensor(canvas).float()
    axis = PLANES.index(plane)
    return normalise_hu(t.movedim(axis, 0))[:, None]


def presence_targets(heart_fraction: np.ndarray) -> np.ndarray:
    """(3, 128) float32: whether each axial, coronal and sagittal canvas slice shows the heart (0/1)."""
    present = heart_fraction >= PRESENCE_FRACTION
    return np.stack([present.any(axis=tuple(b for b in range(3) if b != a)) for a in range(3)]).astype(np.float32)


class PlaneNet(nn.Module):
    """2-D ConvNet: one 128 x 128 slice -> logit of heart presence. Five conv-BN-ELU-maxpool blocks, two FC layers."""

    def __init__(self, widths: tuple[int, ...] = (16, 32, 32, 64, 64), hidden: int = 64) -> None:
        super().__init__()
        self.features = conv_pool_stack(widths)
        c_in = widths[-1]
        side = CANVAS_SIZE // 2 ** len(widths)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(c_in * side * side, hidden), nn.BatchNorm1d(hidden),
                                  nn.ELU(inplace=True), nn.Linear(hidden, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))[:, 0]


@dataclass(frozen=True)
class BoxEstimate:
    """A heart box from per-slice probabilities.

    ``lo``/``hi``: canvas coordinates (voxel edges) along z, y, x, margin included. ``confidence``: 0..1, the mean
    decisiveness of the probabilities (|2p - 1|) with a penalty for probability mass outside the run.
    """

    lo: np.ndarray
    hi: np.ndarray
    confidence: float
    per_axis_confidence: tuple[float, float, float]

    def extent_mm(self) -> np.ndarray:
        return (self.hi - self.lo) * CANVAS_MM


def _close_gaps(above: np.ndarray, max_gap: int) -> np.ndarray:
    """``above`` with every gap of at most ``max_gap`` slices between two slices above one half filled in."""
    idx = np.nonzero(above)[0]
    out = above.copy()
    for a, b in zip(idx[:-1], idx[1:]):
        if 1 < b - a <= max_gap + 1:
            out[a + 1:b] = True
    return out


def _run_edges(p: np.ndarray) -> tuple[float, float, float] | None:
    """Continuous edges (voxel units) of the longest run of p > 0.5 (gaps of up to :data:`MAX_GAP_SLICES` slices
    bridged: the heart is one organ) and its confidence; None if no run."""
    above = p > 0.5
    if not above.any():
        return None
    above = _close_gaps(above, MAX_GAP_SLICES)
    best, start, best_run = 0, None, (0, 0)
    for i, a in enumerate(np.append(above, False)):
        if a and start is None:
            start = i
        elif not a and start is not None:
            if i - start > best:
                best, best_run = i - start, (start, i)
            start = None
    s, e = best_run  # slices s..e-1 above one half
    # sub-voxel edges: where the probability crosses one half between slice centres (centre of slice i = i + 0.5)
    lo = float(s)
    if s > 0:
        lo = s - 0.5 + (0.5 - p[s - 1]) / max(p[s] - p[s - 1], 1e-6)
    hi = float(e)
    if e < len(p):
        hi = e - 0.5 + (p[e - 1] - 0.5) / max(p[e - 1] - p[e], 1e-6)
    inside = np.zeros(len(p), bool)
    inside[s:e] = True
    decisive = float(np.mean(np.abs(2.0 * p - 1.0)))
    stray = float(np.clip(p[~inside] - 0.5, 0.0, None).sum())  # probability above one half outside the run
    conf = decisive * float(np.exp(-stray))
    return lo, hi, conf


def box_from_probabilities(probs: np.ndarray, margin_mm: float = BOX_MARGIN_MM) -> BoxEstimate:
    """The heart box on the canvas from per-slice probabilities (3, 128): axial (z), coronal (y), sagittal (x).

    Raises:
        LocalizerError: ``heart_not_found`` when some axis has no slice above one half.
    """
    lo, hi, conf = np.zeros(3), np.zeros(3), []
    smoothed = np.stack([np.convolve(np.pad(p, 1, mode="edge"), np.ones(3) / 3.0, mode="valid") for p in probs])
    for a in range(3):
        run = _run_edges(smoothed[a])
        if run is None:
            raise LocalizerError("heart_not_found", f"no {PLANES[a]} slice shows the heart with probability > 0.5")
        lo[a], hi[a], c = run
        conf.append(c)
    m = margin_mm / CANVAS_MM
    lo, hi = np.maximum(lo - m, 0.0), np.minimum(hi + m, float(CANVAS_SIZE))
    return BoxEstimate(lo, hi, float(min(conf)), tuple(float(c) for c in conf))  # type: ignore[arg-type]


def implausibility(box: BoxEstimate) -> str | None:
    """Why a box cannot be a heart (extent out of :data:`PLAUSIBLE_EXTENT_MM`), or None when it is plausible."""
    ext = box.extent_mm()
    for a, (name, (low, high)) in enumerate(zip(("head-feet", "front-back", "left-right"), PLAUSIBLE_EXTENT_MM)):
        if not low <= ext[a] <= high:
            return f"{name} extent {ext[a]:.0f} mm outside the plausible {low:.0f}-{high:.0f} mm"
    centre_mm = ((box.lo + box.hi) / 2.0 - CANVAS_SIZE / 2.0) * CANVAS_MM
    if np.hypot(centre_mm[1], centre_mm[2]) > MAX_OFF_CENTRE_MM:
        return (f"box centre {np.hypot(centre_mm[1], centre_mm[2]):.0f} mm from the scan's in-plane centre "
                f"(at most {MAX_OFF_CENTRE_MM:.0f} mm for a heart)")
    return None
