"""Analytic chest phantom in patient LPS millimetres (x left, y posterior, z superior).

A :class:`Phantom` is an ordered list of :class:`Layer` (painted back to front
with anti-aliased alpha), the coronary centrelines and the calcified plaques
(:class:`Lesion`).  Values are non-contrast HU.  Plaques are not layers: they
are rendered separately (see :mod:`cacflow.synth.render`) so that their
contribution and halo are known exactly.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from cacflow.synth.shapes import (
    Ellipsoid,
    EllipticCylinder,
    Shape,
    Tube,
    frame_from_axis,
    index_window,
    rotation,
)

VESSELS: dict[int, str] = {1: "LM", 2: "LAD", 3: "CX", 4: "RCA"}

#: Distractor labels in ``distractor_mask``.
AORTIC_WALL, AORTIC_VALVE, CARTILAGE, BONE = 1, 2, 3, 4

#: Versions of the coronary anatomy (:func:`build_phantom`'s ``anatomy``). 1: the left main and the proximal right
#: coronary run straight from the aortic root, which lies inside the heart ellipsoid, to the heart's surface, so
#: their first 15-20 mm (most of the left main) lie in the blood pool beside the aortic-valve calcium. 2: both
#: leave the root's place on the heart's surface and run in the epicardial fat from their first millimetre, as
#: coronaries do; the rest of the phantom and every random draw are those of version 1.
ANATOMY_VERSIONS: tuple[int, ...] = (1, 2)


def check_anatomy(anatomy: int) -> None:
    """Refuse a coronary anatomy version that is not in :data:`ANATOMY_VERSIONS`."""
    if anatomy not in ANATOMY_VERSIONS:
        raise ValueError(f"unknown phantom anatomy version {anatomy!r}; use one of {ANATOMY_VERSIONS}")


@dataclass(frozen=True)
class Texture:
    """Smooth HU texture: sum of plane waves ``amp * sin(k . p + phase)`` (k in rad/mm)."""

    wavevectors: np.ndarray = field(repr=False)  # (K, 3)
    amplitudes: np.ndarray = field(repr=False)  # (K,)
    phases: np.ndarray = field(repr=False)  # (K,)

    def values(self, x: np.ndarray, y: np.ndarray, z: float) -> np.ndarray:
        out = np.zeros((y.size, x.size))
        for k, a, ph in zip(self.wavevectors, self.amplitudes, self.phases):
            out += a * np.sin(k[0] * x[None, :] + k[1] * y[:, None] + (k[2] * z + ph))
        return out


@dataclass(frozen=True)
class Layer:
    """One painted structure.

    ``channel`` names the label map it writes (``'heart'``, ``'lumen'``,
    ``'distractor'`` or None) with ``label`` where its alpha >= 0.5.  ``slab``
    layers are averaged over sub-planes across the slice thickness (small
    structures); others are evaluated at the slice centre.
    """

    name: str
    shape: Shape
    hu: float
    channel: str | None = None
    label: int = 0
    slab: bool = False
    texture: Texture | None = None


@dataclass(frozen=True)
class Lesion:
    """Calcified plaque: ellipsoid elongated along its vessel; ``peak_hu`` is its material HU."""

    lesion_id: int
    vessel: int
    center: tuple[float, float, float]
    axes: np.ndarray = field(repr=False)  # (3, 3) columns: along-vessel, two normals
    diameter_mm: float = 2.0
    peak_hu: float = 400.0

    def shape(self) -> Ellipsoid:
        r = 0.5 * self.diameter_mm
        return Ellipsoid(self.center, self.axes, (1.3 * r, r, r))


@dataclass(frozen=True)
class Phantom:
    """Complete participant anatomy."""

    layers: tuple[Layer, ...]
    centerlines: dict[int, np.ndarray] = field(repr=False)  # vessel -> (N, 3) mm
    vessel_radii: dict[int, np.ndarray] = field(repr=False)  # vessel -> (N,) mm
    heart_center: tuple[float, float, float]
    distractor_points: np.ndarray = field(repr=False)  # (M, 3) centres of calcified distractors
    lesions: tuple[Lesion, ...] = ()


def _arc_resample(points: np.ndarray, step: float) -> np.ndarray:
    """Resample a polyline at roughly equal arc length ``step`` (mm)."""
    seg = np.linalg.norm(np.diff(points, axis=0), axis=1)
    s = np.concatenate([[0.0], np.cumsum(seg)])
    n = max(2, int(np.ceil(s[-1] / step)) + 1)
    t = np.linspace(0.0, s[-1], n)
    return np.stack([np.interp(t, s, points[:, i]) for i in range(3)], axis=1)


def _heart_surface(center: np.ndarray, frame: np.ndarray, a: float, b: float, u: np.ndarray,
                   phi: np.ndarray, offset: float) -> np.ndarray:
    """Points at long-axis coordinate ``u`` (mm) and angle ``phi`` on the heart ellipsoid + ``offset`` mm."""
    r = b * np.sqrt(np.clip(1.0 - (u / a) ** 2, 0.02, None)) + offset
    return (center[None, :] + u[:, None] * frame[:, 0][None, :]
            + (r * np.cos(phi))[:, None] * frame[:, 1][None, :]
            + (r * np.sin(phi))[:, None] * frame[:, 2][None, :])


def _surface_coordinates(center: np.ndarray, frame: np.ndarray, point: np.ndarray) -> tuple[float, float]:
    """A point's long-axis coordinate ``u`` (mm) and angle ``phi`` in the heart frame (as :func:`_heart_surface`)."""
    d = np.asarray(point, dtype=np.float64) - center
    return float(d @ frame[:, 0]), float(np.arctan2(d @ frame[:, 2], d @ frame[:, 1]))


def _epicardial_path(center: np.ndarray, frame: np.ndarray, a: float, b: float, start: tuple[float, float],
                     end: tuple[float, float], offset: float, n: int = 12) -> np.ndarray:
    """``n`` points from surface coordinates ``start`` (u, phi) to ``end`` on the heart ellipsoid + ``offset`` mm
    (in the fat shell), the angle taking the shorter way round."""
    dphi = (end[1] - start[1] + np.pi) % (2 * np.pi) - np.pi
    t = np.linspace(0.0, 1.0, n)
    return _heart_surface(center, frame, a, b, start[0] + t * (end[0] - start[0]), start[1] + t * dphi, offset)


def build_phantom(rng: np.random.Generator, anatomy: int = 1) -> Phantom:
    """Draw one participant's anatomy (no plaques yet; see :func:`with_lesions`); ``anatomy`` is the coronary
    anatomy's version (:data:`ANATOMY_VERSIONS`)."""
    check_anatomy(anatomy)
    layers: list[Layer] = []
    # ---- body frame --------------------------------------------------------------
    hz = float(rng.uniform(-260.0, 40.0))  # heart centre z: table offset
    z_lo, z_hi = hz - 200.0, hz + 230.0
    bx, by = float(rng.uniform(-5, 5)), float(rng.uniform(-5, 5))
    A, B = float(rng.uniform(150, 180)), float(rng.uniform(105, 130))  # body semi-axes
    fat = float(rng.uniform(10, 25))
    layers.append(Layer("skin", EllipticCylinder(bx, by, A, B, z_lo, z_hi), 20.0))
    layers.append(Layer("subcutaneous_fat", EllipticCylinder(bx, by, A - 2, B - 2, z_lo, z_hi), -100.0))
    layers.append(Layer("chest_wall_muscle", EllipticCylinder(bx, by + 3, A - 2 - fat, B - 2 - fat, z_lo, z_hi), 45.0))
    Ac, Bc = A - fat - 22.0, B - fat - 20.0  # thoracic cavity semi-axes
    cy = by + 5.0
    layers.append(Layer("mediastinal_fat", EllipticCylinder(bx, cy, Ac, Bc, z_lo, z_hi), -90.0))
    # ---- lungs with texture; liver / spleen domes paint over the bases -------------------
    k = rng.normal(0.0, 0.12, size=(6, 3))
    texture = Texture(k, rng.uniform(8, 20, size=6), rng.uniform(0, 2 * np.pi, size=6))
    for side in (-1.0, 1.0):
        lx = bx + side * 0.48 * Ac
        layers.append(Layer(f"lung_{'L' if side > 0 else 'R'}",
                            Ellipsoid((lx, cy + 5.0, hz + 40.0), np.eye(3), (0.5 * Ac, 0.92 * Bc, 180.0)),
                            -850.0, texture=texture))
    dome = hz - float(rng.uniform(55, 75))
    layers.append(Layer("liver", Ellipsoid((bx - 35.0, cy, dome - 100.0), np.eye(3), (0.95 * Ac, Bc, 110.0)), 55.0))
    spleen = Ellipsoid((bx + 50.0, cy + 10, dome - 120.0), np.eye(3), (0.7 * Ac, 0.8 * Bc, 105.0))
    layers.append(Layer("spleen_stomach", spleen, 35.0))
    # ---- spine, ribs, cartilage, sternum -----------------------------------------
    sy = cy + Bc - 20.0
    layers.append(Layer("discs", EllipticCylinder(bx, sy, 19, 16, z_lo, z_hi), 80.0))
    period = 27.0
    z = z_lo - float(rng.uniform(0, period))
    while z < z_hi:
        z0, z1 = z + 5.0, z + period
        layers.append(Layer("vertebra_cortex", EllipticCylinder(bx, sy, 19, 16, z0, z1), 850.0, "distractor", BONE))
        layers.append(Layer("vertebra_cancellous", EllipticCylinder(bx, sy, 16.5, 13.5, z0 + 1.5, z1 - 1.5), 240.0,
                            "distractor", BONE))
        layers.append(Layer("posterior_arch", EllipticCylinder(bx, sy + 30.0, 26, 9, z0, z1 - 6), 650.0,
                            "distractor", BONE))
        z += period
    layers.append(Layer("spinal_canal", EllipticCylinder(bx, sy + 24.0, 8, 7, z_lo, z_hi), 20.0, "distractor", 0))
    rib_z = hz + 150.0
    calcified: list[np.ndarray] = []
    while rib_z > hz - 130.0:
        for side in (-1.0, 1.0):
            t = np.linspace(0.35, 2.35, 28)
            ra, rb = Ac + 7.0, Bc + 7.0
            pts = np.stack([bx + side * ra * np.sin(t), cy + rb * np.cos(t), rib_z - 16.0 * t], axis=1)
            layers.append(Layer("rib_cortex", Tube(pts, np.full(len(pts), 5.0)), 780.0, "distractor", BONE))
            layers.append(Layer("rib_marrow", Tube(pts, np.full(len(pts), 3.0)), 230.0, "distractor", BONE))
            tc = np.linspace(2.35, 2.95, 8)
            cart = np.stack([bx + side * ra * np.sin(tc) * (1 - 0.5 * (tc - 2.35)), cy + rb * np.cos(tc),
                             rib_z - 16.0 * tc], axis=1)
            layers.append(Layer("costal_cartilage", Tube(cart, np.full(len(cart), 4.5)), 110.0))
            if rng.random() < 0.45:
                i0 = int(rng.integers(0, len(cart) - 3))
                seg = cart[i0:i0 + 3]
                radius = float(rng.uniform(1.8, 3.0))
                layers.append(Layer("cartilage_calcification", Tube(seg, np.full(len(seg), radius)),
                                    float(rng.uniform(300, 700)), "distractor", CARTILAGE, slab=True))
                calcified.append(seg.mean(axis=0))
        rib_z -= float(rng.uniform(24, 30))
    stz0, stz1 = hz - 60.0, hz + 120.0
    sty = cy - Bc - 6.0
    layers.append(Layer("sternum_cortex", EllipticCylinder(bx, sty, 16, 7, stz0, stz1), 700.0, "distractor", BONE))
    layers.append(Layer("sternum_cancellous", EllipticCylinder(bx, sty, 13.5, 4.5, stz0 + 2, stz1 - 2), 220.0,
                        "distractor", BONE))
    # ---- heart frame -------------------------------------------------------------------
    hc = np.array([bx + float(rng.uniform(15, 30)), cy - 0.25 * Bc + float(rng.uniform(-8, 8)), hz])
    base_axis = rotation(*rng.normal(0.0, 0.1, size=3)) @ np.array([0.55, -0.45, -0.70])
    frame = frame_from_axis(base_axis, np.array([0.0, -1.0, 0.0]))  # e2 ~ anterior
    scale = float(rng.uniform(0.88, 1.12))
    ha, hb = 58.0 * scale, 44.0 * scale
    shell = 7.0
    root = hc - 0.72 * ha * frame[:, 0] + 0.35 * hb * frame[:, 1] - 0.15 * hb * np.array([1.0, 0.0, 0.0])
    # ---- aorta -----------------------------------------------------------------------
    r_asc, r_desc = float(rng.uniform(13, 16)), float(rng.uniform(10.5, 13))
    top = root + np.array([0.0, 0.0, 65.0])
    desc = np.array([bx + 22.0, sy - 28.0, top[2]])
    mid = 0.5 * (top + desc)
    half = 0.5 * np.linalg.norm((desc - top)[:2])
    arch_t = np.linspace(0, np.pi, 24)
    arch = (mid[None, :] + np.cos(arch_t)[:, None] * (top - mid)[None, :]
            + (half * np.sin(arch_t))[:, None] * np.array([0, 0, 1.0])[None, :])
    asc = np.linspace(root - np.array([0, 0, 5.0]), top, 12)
    dsc = np.linspace(desc, np.array([desc[0], desc[1], z_lo]), 30)
    aorta_pts = np.concatenate([asc, arch[1:], dsc[1:]])
    aorta_r = np.concatenate([np.full(len(asc), r_asc), np.linspace(r_asc, r_desc, len(arch) - 1),
                              np.full(len(dsc) - 1, r_desc)])
    layers.append(Layer("aorta", Tube(aorta_pts, aorta_r), 42.0))
    # aortic wall calcifications on arch and descending aorta
    n_wall = int(rng.integers(2, 7))
    for _ in range(n_wall):
        i = int(rng.integers(len(asc) + 4, len(aorta_pts) - 8))
        p, q = aorta_pts[i], aorta_pts[i + 1]
        tang = (q - p) / np.linalg.norm(q - p)
        f = frame_from_axis(tang, rng.normal(size=3))
        ang = rng.uniform(0, 2 * np.pi)
        c = p + aorta_r[i] * (np.cos(ang) * f[:, 1] + np.sin(ang) * f[:, 2])
        rr = float(rng.uniform(1.2, 2.5))
        layers.append(Layer("aortic_wall_calcification", Ellipsoid(tuple(c), f, (2.2 * rr, rr, 0.7 * rr)),
                            float(rng.uniform(350, 900)), "distractor", AORTIC_WALL, slab=True))
        calcified.append(c)
    # ---- heart -------------------------------------------------------------------------
    layers.append(Layer("pericardial_fat", Ellipsoid(tuple(hc), frame, (ha + shell, hb + shell, hb + shell)), -95.0,
                        "heart", 1))
    layers.append(Layer("myocardium_blood", Ellipsoid(tuple(hc), frame, (ha, hb, hb)), 40.0, "heart", 1))
    # aortic valve calcification (at the root, inside the heart)
    for _ in range(int(rng.integers(0, 3))):
        c = root + rng.normal(0.0, 4.0, size=3) - 0.05 * ha * frame[:, 0]
        rr = float(rng.uniform(1.2, 2.5))
        layers.append(Layer("aortic_valve_calcification", Ellipsoid(tuple(c), np.eye(3), (rr, rr, rr)),
                            float(rng.uniform(300, 1000)), "distractor", AORTIC_VALVE, slab=True))
        calcified.append(c)
    # ---- coronary arteries (on the surface, inside the fat shell) ------------------------
    x_hat = np.array([1.0, 0.0, 0.0])
    phi_left = float(np.arctan2(np.dot(x_hat, frame[:, 2]), np.dot(x_hat, frame[:, 1])))
    s_left = 1.0 if phi_left >= 0 else -1.0
    off = 0.5 * shell
    u_av = -0.5 * ha
    bif = _heart_surface(hc, frame, ha, hb, np.array([u_av]), np.array([0.25 * s_left]), off)[0]
    lad = _heart_surface(hc, frame, ha, hb, np.linspace(u_av, 0.92 * ha, 40), np.full(40, 0.18 * s_left), off)
    cx_phi = np.linspace(0.3 * s_left, 2.5 * s_left, 40)
    cx = _heart_surface(hc, frame, ha, hb, np.full(40, u_av), cx_phi, off)
    rca_phi = np.linspace(-0.25 * s_left, -2.9 * s_left, 50)
    rca = _heart_surface(hc, frame, ha, hb, np.full(50, u_av - 4.0), rca_phi, off)
    if anatomy == 1:
        lm = np.linspace(root + 0.3 * r_asc * x_hat, bif, 6)
        rca = np.concatenate([np.linspace(root - 0.3 * r_asc * x_hat, rca[0], 5)[:-1], rca])
    else:  # the ostia: the root's place on the surface, the left one towards the patient's left
        u_root, phi_root = _surface_coordinates(hc, frame, root)
        lm = _epicardial_path(hc, frame, ha, hb, (u_root, phi_root + 0.15 * s_left), (u_av, 0.25 * s_left), off)
        rca = np.concatenate([_epicardial_path(hc, frame, ha, hb, (u_root, phi_root - 0.15 * s_left),
                                               (u_av - 4.0, -0.25 * s_left), off)[:-1], rca])
    centerlines = {1: lm, 2: np.concatenate([bif[None], lad]), 3: np.concatenate([bif[None], cx]), 4: rca}
    radii: dict[int, np.ndarray] = {}
    r0 = float(rng.uniform(1.6, 2.0))
    for v in (1, 2, 3, 4):
        pts = _arc_resample(centerlines[v], 2.0)
        centerlines[v] = pts
        start = r0 if v in (1, 4) else 0.85 * r0
        radii[v] = np.linspace(start, max(1.0, 0.55 * start), len(pts))
        layers.append(Layer(f"coronary_{VESSELS[v]}", Tube(pts, radii[v]), 40.0, "lumen", v, slab=True))
    return Phantom(tuple(layers), centerlines, radii, tuple(float(v) for v in hc),
                   np.asarray(calcified, dtype=np.float64).reshape(-1, 3))


def plane_hu(phantom: Phantom, x: np.ndarray, y: np.ndarray, z: float, thickness: float,
             pixel_mm: float) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Noise-free, unblurred HU on one axial plane and its label maps.

    x: (cols,) LPS x of each column; y: (rows,) LPS y of each row; z: slice centre;
    thickness: slab thickness (mm) for ``slab`` layers.  Returns (hu (rows, cols)
    float32, labels {'heart': bool, 'lumen': uint8, 'distractor': uint8}).
    Outside the body the value is air (-1000).
    """
    hu = np.full((y.size, x.size), -1000.0, dtype=np.float64)
    labels = {"heart": np.zeros(hu.shape, bool), "lumen": np.zeros(hu.shape, np.uint8),
              "distractor": np.zeros(hu.shape, np.uint8)}
    n_sub = max(2, int(np.ceil(thickness / 0.35)))
    offsets = ((np.arange(n_sub) + 0.5) / n_sub - 0.5) * thickness
    for layer in phantom.layers:
        box = layer.shape.bbox()
        half = 0.5 * thickness if layer.slab else 0.0
        if z + half < box.lo[2] - pixel_mm or z - half > box.hi[2] + pixel_mm:
            continue
        win = index_window(x, y, box, 2.0 * pixel_mm)
        if win is None:
            continue
        rs, cs = win
        xs, ys = x[cs], y[rs]
        if layer.slab:
            alphas = [np.clip(0.5 - layer.shape.sdf(xs, ys, z + o) / pixel_mm, 0.0, 1.0) for o in offsets]
            alpha = np.mean(alphas, axis=0)
            present = np.max(alphas, axis=0) >= 0.5
        else:
            alpha = np.clip(0.5 - layer.shape.sdf(xs, ys, z) / pixel_mm, 0.0, 1.0)
            present = alpha >= 0.5
        if not alpha.any():
            continue
        value = layer.hu if layer.texture is None else layer.hu + layer.texture.values(xs, ys, z)
        sub = hu[rs, cs]
        sub += alpha * (value - sub)
        hu[rs, cs] = sub
        if layer.channel is not None:
            labels[layer.channel][rs, cs][present] = layer.label
    return hu.astype(np.float32), labels


def place_lesions(rng: np.random.Generator, phantom: Phantom, n: int, diam_range: tuple[float, float],
                  peak_range: tuple[float, float], inside: Callable[[np.ndarray, float], bool]) -> tuple[Lesion, ...]:
    """Draw ``n`` plaques on the coronaries (eccentric, on the vessel wall).

    ``inside(point (3,), margin_mm) -> bool`` says whether a point is well inside
    the imaged volume.  Plaques keep >= 3 mm from each other and >= 8 mm from
    calcified distractors.
    """
    weights = {1: 0.12, 2: 0.4, 3: 0.2, 4: 0.28}
    vessels = np.array(list(weights))
    p = np.array(list(weights.values()))
    out: list[Lesion] = []
    tries = 0
    while len(out) < n and tries < 400:
        tries += 1
        v = int(rng.choice(vessels, p=p / p.sum()))
        pts, rad = phantom.centerlines[v], phantom.vessel_radii[v]
        i = int(rng.integers(1, max(2, int(0.75 * (len(pts) - 1)))))
        i = min(i, len(pts) - 2)
        tang = pts[i + 1] - pts[i - 1]
        f = frame_from_axis(tang, rng.normal(size=3))
        d = float(rng.uniform(*diam_range))
        ecc = 0.6 * rad[i]
        c = pts[i] + ecc * f[:, 1]
        if not inside(c, d + 4.0):
            continue
        if any(np.linalg.norm(c - np.asarray(o.center)) < 0.65 * (d + o.diameter_mm) + 3.0 for o in out):
            continue
        if len(phantom.distractor_points) and np.min(np.linalg.norm(phantom.distractor_points - c, axis=1)) < d + 10.0:
            continue
        out.append(Lesion(len(out) + 1, v, tuple(float(t) for t in c), f, round(d, 3),
                          round(float(rng.uniform(*peak_range)), 1)))
    return tuple(out)
