"""Analytic 3D shapes evaluated on axial planes as signed distances (mm).

Coordinates are patient LPS millimetres.  A plane is given by 1-D coordinate
vectors ``x`` (columns) and ``y`` (rows) and a scalar ``z``; shapes return
signed distances (negative inside) on an ``(len(y), len(x))`` grid.  The
distances are first-order approximations, exact on the surface, which is all
anti-aliasing needs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

_EPS = 1e-6


@dataclass(frozen=True)
class Box:
    """Axis-aligned bounding box in LPS mm: ``lo`` and ``hi`` are (x, y, z)."""

    lo: tuple[float, float, float]
    hi: tuple[float, float, float]

    def grow(self, margin: float) -> Box:
        return Box(tuple(v - margin for v in self.lo), tuple(v + margin for v in self.hi))  # type: ignore[arg-type]


@dataclass(frozen=True)
class EllipticCylinder:
    """Ellipse (centre ``cx, cy``; semi-axes ``a`` along x, ``b`` along y) extruded over ``z0..z1``."""

    cx: float
    cy: float
    a: float
    b: float
    z0: float
    z1: float

    def bbox(self) -> Box:
        return Box((self.cx - self.a, self.cy - self.b, self.z0), (self.cx + self.a, self.cy + self.b, self.z1))

    def sdf(self, x: np.ndarray, y: np.ndarray, z: float) -> np.ndarray:
        dx = (x[None, :] - self.cx) / self.a
        dy = (y[:, None] - self.cy) / self.b
        r = np.sqrt(dx * dx + dy * dy)
        grad = np.sqrt((dx / self.a) ** 2 + (dy / self.b) ** 2) + _EPS
        sd = (r - 1.0) * r / grad
        return np.maximum(sd, max(self.z0 - z, z - self.z1))


@dataclass(frozen=True)
class Ellipsoid:
    """Rotated ellipsoid: ``axes`` columns are its unit local axes in LPS, ``radii`` in mm."""

    center: tuple[float, float, float]
    axes: np.ndarray = field(repr=False)  # (3, 3)
    radii: tuple[float, float, float] = (1.0, 1.0, 1.0)

    def bbox(self) -> Box:
        ext = np.sqrt(((self.axes * np.asarray(self.radii)[None, :]) ** 2).sum(axis=1))
        c = np.asarray(self.center)
        return Box(tuple(c - ext), tuple(c + ext))  # type: ignore[arg-type]

    def sdf(self, x: np.ndarray, y: np.ndarray, z: float) -> np.ndarray:
        dx = x[None, :] - self.center[0]
        dy = y[:, None] - self.center[1]
        dz = z - self.center[2]
        r2 = np.zeros((y.size, x.size), dtype=np.float64)
        g2 = np.zeros_like(r2)
        for i in range(3):
            q = (self.axes[0, i] * dx + self.axes[1, i] * dy + self.axes[2, i] * dz) / self.radii[i]
            r2 += q * q
            g2 += (q / self.radii[i]) ** 2
        r = np.sqrt(r2)
        return (r - 1.0) * r / (np.sqrt(g2) + _EPS)


@dataclass(frozen=True)
class Tube:
    """Polyline tube: ``points`` (N, 3) LPS mm, ``radii`` (N,) mm (linearly varying per segment)."""

    points: np.ndarray = field(repr=False)
    radii: np.ndarray = field(repr=False)

    def bbox(self) -> Box:
        r = float(np.max(self.radii))
        return Box(tuple(self.points.min(axis=0) - r), tuple(self.points.max(axis=0) + r))  # type: ignore[arg-type]

    def sdf(self, x: np.ndarray, y: np.ndarray, z: float) -> np.ndarray:
        out = np.full((y.size, x.size), np.inf)
        p0, p1 = self.points[:-1], self.points[1:]
        r0, r1 = self.radii[:-1], self.radii[1:]
        rmax = np.maximum(r0, r1) + 3.0
        near = (np.minimum(p0[:, 2], p1[:, 2]) - rmax <= z) & (np.maximum(p0[:, 2], p1[:, 2]) + rmax >= z)
        idx = np.nonzero(near)[0]
        for chunk in np.array_split(idx, max(1, int(np.ceil(idx.size / 6)))):
            if chunk.size == 0:
                continue
            a, b = p0[chunk], p1[chunk]
            ra, rb = r0[chunk], r1[chunk]
            lo = np.minimum(a, b).min(axis=0)[:2] - rmax[chunk].max()
            hi = np.maximum(a, b).max(axis=0)[:2] + rmax[chunk].max()
            xs = _index_range(x, lo[0], hi[0])
            ys = _index_range(y, lo[1], hi[1])
            if xs is None or ys is None:
                continue
            px = x[xs][None, None, :]
            py = y[ys][None, :, None]
            ab = b - a
            L2 = (ab**2).sum(axis=1) + _EPS
            t = ((px - a[:, 0, None, None]) * ab[:, 0, None, None]
                 + (py - a[:, 1, None, None]) * ab[:, 1, None, None]
                 + (z - a[:, 2, None, None]) * ab[:, 2, None, None]) / L2[:, None, None]
            t = np.clip(t, 0.0, 1.0)
            qx = a[:, 0, None, None] + t * ab[:, 0, None, None] - px
            qy = a[:, 1, None, None] + t * ab[:, 1, None, None] - py
            qz = a[:, 2, None, None] + t * ab[:, 2, None, None] - z
            d = np.sqrt(qx * qx + qy * qy + qz * qz) - (ra[:, None, None] + t * (rb - ra)[:, None, None])
            sub = out[ys, xs]
            np.minimum(sub, d.min(axis=0), out=sub)
            out[ys, xs] = sub
        return out


Shape = EllipticCylinder | Ellipsoid | Tube


def _index_range(coords: np.ndarray, lo: float, hi: float) -> slice | None:
    """Contiguous index slice of the (monotonic) ``coords`` lying in [lo, hi], or None."""
    inside = np.nonzero((coords >= lo) & (coords <= hi))[0]
    if inside.size == 0:
        return None
    return slice(int(inside[0]), int(inside[-1]) + 1)


def index_window(x: np.ndarray, y: np.ndarray, box: Box, margin: float) -> tuple[slice, slice] | None:
    """(row slice, column slice) of the plane grid covered by ``box`` grown by ``margin`` mm."""
    xs = _index_range(x, box.lo[0] - margin, box.hi[0] + margin)
    ys = _index_range(y, box.lo[1] - margin, box.hi[1] + margin)
    if xs is None or ys is None:
        return None
    return ys, xs


def frame_from_axis(axis: np.ndarray, hint: np.ndarray) -> np.ndarray:
    """Right-handed orthonormal frame (columns e1, e2, e3) with e1 = ``axis``, e2 closest to ``hint``."""
    e1 = axis / np.linalg.norm(axis)
    e2 = hint - np.dot(hint, e1) * e1
    e2 = e2 / np.linalg.norm(e2)
    e3 = np.cross(e1, e2)
    return np.stack([e1, e2, e3], axis=1)


def rotation(rx: float, ry: float, rz: float) -> np.ndarray:
    """Rotation matrix from small angles (radians) about x, y and z (applied x, then y, then z)."""
    cx, sx, cy, sy, cz, sz = np.cos(rx), np.sin(rx), np.cos(ry), np.sin(ry), np.cos(rz), np.sin(rz)
    Rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    Ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    Rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return Rz @ Ry @ Rx
