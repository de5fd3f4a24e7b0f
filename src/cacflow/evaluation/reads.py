"""Human reads of the real chest CTs: where the heart is (a box in LPS mm) and where calcium is.

The reads live in ``reads/real_ct.json`` (versioned with the project; format in ``reads/README.md``). Each read
gives, for one scan of the shared real data (``../shared/data/real``), the heart's axis-aligned box in LPS mm
(x to patient left, y to posterior, z to superior) and named calcium clusters with their centres in LPS mm.

Units and axes used throughout:
    * coordinates and boxes: LPS millimetres, in (x, y, z) = (L, P, S) order;
    * volumes passed in: HU arrays indexed (z, y, x), with ``spacing_zyx`` in mm, ``origin`` the LPS position
      (mm) of voxel (0, 0, 0) and ``direction`` a 3x3 matrix whose columns are the LPS unit vectors of the
      x, y and z index axes (the :class:`cacflow.imaging.volume.Volume` convention).

Run ``python -m cacflow.evaluation.reads render --scan <id>`` from the project root to redraw one scan's picture.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

#: Calcium kinds a read may name.
CALCIUM_KINDS = ("coronary", "aortic_valve", "mitral_annulus", "aorta", "costal_cartilage", "bone", "other")
#: Coronary vessels a read may name (only with kind "coronary").
VESSELS = ("LM", "LAD", "LCx", "RCA")
#: How the box was obtained.
METHODS = ("label_map", "visual")
#: The reads file format version this module reads.
READS_VERSION = 1

#: Default locations, relative to the project root.
DEFAULT_READS = Path("reads/real_ct.json")
DEFAULT_SHARED = Path("../shared")

#: Picture layout: three square panels of this many pixels, plus a caption bar.
PANEL_PX = 256
CAPTION_PX = 30
#: Display window (HU) of the pictures: soft tissue.
WINDOW_WIDTH_HU = 400.0
WINDOW_LEVEL_HU = 40.0
#: Marker colours per calcium kind (RGB).
KIND_COLOURS: dict[str, tuple[int, int, int]] = {
    "coronary": (255, 40, 40),
    "aortic_valve": (255, 150, 0),
    "mitral_annulus": (255, 220, 0),
    "aorta": (0, 200, 255),
    "costal_cartilage": (60, 220, 60),
    "bone": (200, 120, 255),
    "other": (230, 230, 230),
}
BOX_COLOUR = (255, 230, 0)

Box = tuple[tuple[float, float, float], tuple[float, float, float]]  # ((L, P, S) min, (L, P, S) max), mm


class ReadsError(ValueError):
    """The reads file is missing, malformed or inconsistent; the message names the file and the field."""


@dataclass(frozen=True)
class CalciumRead:
    """One calcium cluster read by eye.

    Attributes:
        kind: one of :data:`CALCIUM_KINDS`.
        vessel: one of :data:`VESSELS` for coronary calcium when the vessel could be told, else None.
        center_lps_mm: centre (x, y, z) in LPS mm.
        extent_mm: approximate size along L, P, S in mm, or None when not measured.
        note: what was seen and how sure the reader is.
    """

    kind: str
    vessel: str | None
    center_lps_mm: tuple[float, float, float]
    extent_mm: tuple[float, float, float] | None
    note: str = ""


@dataclass(frozen=True)
class HeartRead:
    """The read of one scan.

    Attributes:
        id: short scan id (``lung2``, ``A0001_B``, ...).
        source: path of the scan relative to the shared folder (``data/real/...``): a DICOM folder or a volume file.
        patient: patient key; series of one acquisition share it.
        method: ``label_map`` (box from a mask) or ``visual`` (read by eye).
        box_min_lps_mm: lower corner (x, y, z) of the heart box, LPS mm, pericardium included.
        box_max_lps_mm: upper corner (x, y, z), LPS mm.
        contrast: whether IV contrast was seen.
        calcium: calcium clusters read in this scan.
        note: what was hard and how far off the box may be.
        picture: path of the picture, relative to the reads file's folder.
        uncertainty_mm: the reader's estimate of how far any box face may be off (mm), or None.
        label_map: for ``label_map`` reads, the mask's path relative to the shared folder.
    """

    id: str
    source: str
    patient: str
    method: str
    box_min_lps_mm: tuple[float, float, float]
    box_max_lps_mm: tuple[float, float, float]
    contrast: bool
    calcium: tuple[CalciumRead, ...] = field(default_factory=tuple)
    note: str = ""
    picture: str = ""
    uncertainty_mm: float | None = None
    label_map: str | None = None

    @property
    def box(self) -> Box:
        """The heart box as ((x, y, z) min, (x, y, z) max) in LPS mm."""
        return self.box_min_lps_mm, self.box_max_lps_mm

    @property
    def center_lps_mm(self) -> tuple[float, float, float]:
        """Centre of the heart box (LPS mm)."""
        return tuple((a + b) / 2 for a, b in zip(self.box_min_lps_mm, self.box_max_lps_mm))  # type: ignore[return-value]

    @property
    def size_mm(self) -> tuple[float, float, float]:
        """Side lengths of the heart box along L, P, S (mm)."""
        return tuple(b - a for a, b in zip(self.box_min_lps_mm, self.box_max_lps_mm))  # type: ignore[return-value]


# ----------------------------------------------------------------------------------------------------------------
# loading and validation


def _fail(path: Path, where: str, problem: str) -> ReadsError:
    return ReadsError(f"{path}: {where}: {problem}")


def _triple(path: Path, where: str, value: object) -> tuple[float, float, float]:
    if (not isinstance(value, list | tuple) or len(value) != 3
            or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)):
        raise _fail(path, where, f"expected a list of 3 numbers (mm), got {value!r}")
    out = tuple(float(v) for v in value)
    if not all(np.isfinite(out)):
        raise _fail(path, where, f"expected finite numbers, got {value!r}")
    return out  # type: ignore[return-value]


def _text(path: Path, where: str, value: object, required: bool = True) -> str:
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value.strip()):
        raise _fail(path, where, f"expected a non-empty string, got {value!r}")
    return value


def _calcium(path: Path, where: str, entry: object) -> CalciumRead:
    if not isinstance(entry, dict):
        raise _fail(path, where, f"expected an object, got {type(entry).__name__}")
    kind = entry.get("kind")
    if kind not in CALCIUM_KINDS:
        raise _fail(path, f"{where}.kind", f"{kind!r} is not one of {', '.join(CALCIUM_KINDS)}")
    vessel = entry.get("vessel")
    if vessel is not None and (kind != "coronary" or vessel not in VESSELS):
        raise _fail(path, f"{where}.vessel", f"{vessel!r}: a vessel ({', '.join(VESSELS)}) is only allowed, and "
                    "must be one of these, for kind 'coronary'; use null otherwise")
    center = _triple(path, f"{where}.center_lps_mm", entry.get("center_lps_mm"))
    extent_raw = entry.get("extent_mm")
    extent = None if extent_raw is None else _triple(path, f"{where}.extent_mm", extent_raw)
    if extent is not None and min(extent) <= 0:
        raise _fail(path, f"{where}.extent_mm", f"sizes must be positive (mm), got {extent_raw!r}")
    return CalciumRead(kind=kind, vessel=vessel, center_lps_mm=center, extent_mm=extent,
                       note=_text(path, f"{where}.note", entry.get("note"), required=False))


def _scan(path: Path, where: str, entry: object) -> HeartRead:
    if not isinstance(entry, dict):
        raise _fail(path, where, f"expected an object, got {type(entry).__name__}")
    sid = _text(path, f"{where}.id", entry.get("id"))
    where = f"scans[{sid}]"
    method = entry.get("method")
    if method not in METHODS:
        raise _fail(path, f"{where}.method", f"{method!r} is not one of {', '.join(METHODS)}")
    box = entry.get("heart_box_lps_mm")
    if not isinstance(box, dict):
        raise _fail(path, f"{where}.heart_box_lps_mm", "expected an object {\"min\": [L, P, S], \"max\": [L, P, S]}")
    lo = _triple(path, f"{where}.heart_box_lps_mm.min", box.get("min"))
    hi = _triple(path, f"{where}.heart_box_lps_mm.max", box.get("max"))
    if any(b <= a for a, b in zip(lo, hi)):
        raise _fail(path, f"{where}.heart_box_lps_mm", f"max {list(hi)} must exceed min {list(lo)} on every axis")
    contrast = entry.get("contrast")
    if not isinstance(contrast, bool):
        raise _fail(path, f"{where}.contrast", f"expected true or false, got {contrast!r}")
    calcium_raw = entry.get("calcium", [])
    if not isinstance(calcium_raw, list):
        raise _fail(path, f"{where}.calcium", "expected a list")
    calcium = tuple(_calcium(path, f"{where}.calcium[{i}]", c) for i, c in enumerate(calcium_raw))
    unc = entry.get("uncertainty_mm")
    if unc is not None and (not isinstance(unc, int | float) or isinstance(unc, bool) or unc < 0):
        raise _fail(path, f"{where}.uncertainty_mm", f"expected a non-negative number (mm) or null, got {unc!r}")
    label_map = entry.get("label_map")
    if method == "label_map":
        label_map = _text(path, f"{where}.label_map", label_map)
    elif label_map is not None:
        label_map = _text(path, f"{where}.label_map", label_map)
    return HeartRead(
        id=sid,
        source=_text(path, f"{where}.source", entry.get("source")),
        patient=_text(path, f"{where}.patient", entry.get("patient")),
        method=method,
        box_min_lps_mm=lo,
        box_max_lps_mm=hi,
        contrast=contrast,
        calcium=calcium,
        note=_text(path, f"{where}.note", entry.get("note"), required=False),
        picture=_text(path, f"{where}.picture", entry.get("picture")),
        uncertainty_mm=None if unc is None else float(unc),
        label_map=label_map,
    )


def load_reads(path: str | Path = DEFAULT_READS) -> list[HeartRead]:
    """Load and validate a reads file (JSON, format version :data:`READS_VERSION`).

    Boxes and centres are LPS mm. Raises :class:`ReadsError` naming the file and the offending field when the file
    is missing, is not JSON, has another version, or holds an invalid or duplicated scan entry.
    """
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ReadsError(f"{path}: reads file not found") from exc
    except json.JSONDecodeError as exc:
        raise ReadsError(f"{path}: not valid JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise _fail(path, "top level", "expected an object")
    if doc.get("version") != READS_VERSION:
        raise _fail(path, "version", f"expected {READS_VERSION}, got {doc.get('version')!r}")
    for key in ("reader", "conventions"):
        if not doc.get(key):
            raise _fail(path, key, "missing")
    scans = doc.get("scans")
    if not isinstance(scans, list) or not scans:
        raise _fail(path, "scans", "expected a non-empty list")
    reads = [_scan(path, f"scans[{i}]", s) for i, s in enumerate(scans)]
    seen: set[str] = set()
    for r in reads:
        if r.id in seen:
            raise _fail(path, f"scans[{r.id}].id", "duplicated id")
        seen.add(r.id)
    return reads


def read_by_id(reads: Sequence[HeartRead], scan_id: str) -> HeartRead:
    """The read with this id; KeyError naming the known ids otherwise."""
    for r in reads:
        if r.id == scan_id:
            return r
    raise KeyError(f"no read for scan {scan_id!r}; known: {', '.join(r.id for r in reads)}")


# ----------------------------------------------------------------------------------------------------------------
# box geometry (LPS mm)


def box_volume_mm3(box: Box) -> float:
    """Volume (mm^3) of an LPS box ((x, y, z) min, (x, y, z) max); 0 when empty."""
    lo, hi = box
    return float(np.prod([max(0.0, b - a) for a, b in zip(lo, hi)]))


def box_intersection_mm3(a: Box, b: Box) -> float:
    """Volume (mm^3) shared by two LPS boxes."""
    lo = tuple(max(x, y) for x, y in zip(a[0], b[0]))
    hi = tuple(min(x, y) for x, y in zip(a[1], b[1]))
    return box_volume_mm3((lo, hi))  # type: ignore[arg-type]


def box_iou_mm(a: Box, b: Box) -> float:
    """Intersection over union (0..1) of two LPS boxes given in mm; 0 when both are empty."""
    inter = box_intersection_mm3(a, b)
    union = box_volume_mm3(a) + box_volume_mm3(b) - inter
    return inter / union if union > 0 else 0.0


def box_coverage_mm(read: Box, other: Box) -> float:
    """Share (0..1) of the read box's volume that ``other`` covers (both LPS mm); 0 for an empty read box."""
    vol = box_volume_mm3(read)
    return box_intersection_mm3(read, other) / vol if vol > 0 else 0.0


def volume_extent_lps_mm(shape_zyx: Sequence[int], spacing_zyx: Sequence[float], origin: Sequence[float],
                         direction: np.ndarray | None = None) -> Box:
    """Physical LPS extent (mm) of a (z, y, x) grid, at the outer voxel edges (centres +/- half a voxel)."""
    affine = _affine(spacing_zyx, origin, direction)
    nz, ny, nx = (int(n) for n in shape_zyx)
    corners = np.array([[i, j, k, 1.0] for i in (-0.5, nx - 0.5) for j in (-0.5, ny - 0.5) for k in (-0.5, nz - 0.5)])
    pts = (affine @ corners.T).T[:, :3]
    return tuple(pts.min(0).tolist()), tuple(pts.max(0).tolist())  # type: ignore[return-value]


def _affine(spacing_zyx: Sequence[float], origin: Sequence[float], direction: np.ndarray | None) -> np.ndarray:
    """4x4 map from voxel index (x, y, z) = (column, row, slice) to LPS mm."""
    d = np.eye(3) if direction is None else np.asarray(direction, dtype=float).reshape(3, 3)
    sz, sy, sx = (float(v) for v in spacing_zyx)
    out = np.eye(4)
    out[:3, :3] = d @ np.diag([sx, sy, sz])
    out[:3, 3] = np.asarray(origin, dtype=float)
    return out


# ----------------------------------------------------------------------------------------------------------------
# pictures


def _sample(volume_hu: np.ndarray, inverse: np.ndarray, points_lps: np.ndarray) -> np.ndarray:
    """Nearest-neighbour HU at LPS points (..., 3); -1024 outside the grid."""
    flat = points_lps.reshape(-1, 3)
    idx = (inverse[:3, :3] @ flat.T + inverse[:3, 3:4]).T  # (n, 3) as (x, y, z) indices
    ijk = np.rint(idx).astype(np.int64)
    nz, ny, nx = volume_hu.shape
    ok = ((ijk[:, 0] >= 0) & (ijk[:, 0] < nx) & (ijk[:, 1] >= 0) & (ijk[:, 1] < ny)
          & (ijk[:, 2] >= 0) & (ijk[:, 2] < nz))
    out = np.full(len(flat), -1024.0, dtype=np.float32)
    out[ok] = volume_hu[ijk[ok, 2], ijk[ok, 1], ijk[ok, 0]]
    return out.reshape(points_lps.shape[:-1])


def _window(hu: np.ndarray) -> np.ndarray:
    lo = WINDOW_LEVEL_HU - WINDOW_WIDTH_HU / 2
    return (np.clip((hu - lo) / WINDOW_WIDTH_HU, 0.0, 1.0) * 255).astype(np.uint8)


def render_read(volume_hu: np.ndarray, spacing_zyx: Sequence[float], origin: Sequence[float],
                direction: np.ndarray | None, read: HeartRead, out_png: str | Path,
                panel_px: int = PANEL_PX) -> Path:
    """Draw a read on its scan and save it as a PNG.

    Three panels through the box centre: axial (anterior up, patient right on the image left), coronal
    (superior up, patient right on the left) and sagittal (superior up, anterior on the left), each a square field
    of view of ``max(240 mm, 1.5 x the longest box side)`` sampled at true aspect ratio (nearest neighbour), window
    W400/L40 HU. The heart box is drawn in yellow; calcium centres are marked as rings coloured by kind (projected
    onto every panel; filled when within 10 mm of the panel's plane).

    Args:
        volume_hu: HU array (z, y, x).
        spacing_zyx: voxel spacing (mm) along z, y, x.
        origin: LPS position (mm) of voxel (0, 0, 0).
        direction: 3x3 matrix whose columns are the LPS unit vectors of the x, y, z index axes (None: identity).
        read: the read to draw.
        out_png: output file (its folder is created).
        panel_px: side of one panel in pixels.

    Returns the path written.
    """
    from PIL import Image, ImageDraw

    affine = _affine(spacing_zyx, origin, direction)
    inverse = np.linalg.inv(affine)
    hu = np.asarray(volume_hu)
    c = np.asarray(read.center_lps_mm)
    lo, hi = np.asarray(read.box_min_lps_mm), np.asarray(read.box_max_lps_mm)
    fov = max(240.0, 1.5 * float(max(hi - lo)))
    half = fov / 2
    px = fov / panel_px
    t = (np.arange(panel_px) + 0.5) * px - half  # offsets (mm) of pixel centres from the panel centre

    # per panel: (name, image-column axis, column sign, image-row axis, row sign, fixed axis); axes 0=L, 1=P, 2=S.
    # column sign +1: LPS coordinate grows to the right; row sign +1: it grows downward.
    panels = [("axial", 0, +1, 1, +1, 2), ("coronal", 0, +1, 2, -1, 1), ("sagittal", 1, +1, 2, -1, 0)]
    canvas = Image.new("RGB", (3 * panel_px, panel_px + CAPTION_PX), (0, 0, 0))
    draw = ImageDraw.Draw(canvas)
    axis_letters = (("R", "L"), ("A", "P"), ("I", "S"))

    for n, (name, ca, cs, ra, rs, fa) in enumerate(panels):
        pts = np.empty((panel_px, panel_px, 3))
        pts[..., fa] = c[fa]
        pts[..., ca] = c[ca] + cs * t[None, :]
        pts[..., ra] = c[ra] + rs * t[:, None]
        img = Image.fromarray(_window(_sample(hu, inverse, pts))).convert("RGB")
        canvas.paste(img, (n * panel_px, CAPTION_PX))
        x0 = n * panel_px

        def to_px(col_mm: float, row_mm: float, ca=ca, cs=cs, ra=ra, rs=rs, x0=x0) -> tuple[float, float]:
            return (x0 + (cs * (col_mm - c[ca]) + half) / px, CAPTION_PX + (rs * (row_mm - c[ra]) + half) / px)

        (ax, ay), (bx, by) = to_px(lo[ca], lo[ra]), to_px(hi[ca], hi[ra])
        draw.rectangle([min(ax, bx), min(ay, by), max(ax, bx), max(ay, by)], outline=BOX_COLOUR, width=2)
        for cal in read.calcium:
            mx, my = to_px(cal.center_lps_mm[ca], cal.center_lps_mm[ra])
            if not (x0 <= mx < x0 + panel_px and CAPTION_PX <= my < CAPTION_PX + panel_px):
                continue
            colour = KIND_COLOURS.get(cal.kind, KIND_COLOURS["other"])
            near = abs(cal.center_lps_mm[fa] - c[fa]) <= 10.0
            r = 4 if near else 3
            draw.ellipse([mx - r, my - r, mx + r, my + r], outline=colour, width=2 if near else 1,
                         fill=colour if near else None)
        plane = "LPS"[fa]
        draw.text((x0 + 4, CAPTION_PX + 3), f"{name} {plane}={c[fa]:.0f}", fill=(255, 255, 255))
        left = axis_letters[ca][0 if cs > 0 else 1]
        top = axis_letters[ra][0 if rs > 0 else 1]
        draw.text((x0 + 4, CAPTION_PX + panel_px // 2 - 6), left, fill=(255, 255, 0))  # side on the image left
        draw.text((x0 + panel_px // 2 - 3, CAPTION_PX + 14), top, fill=(255, 255, 0))  # side at the image top
        if n > 0:
            draw.line([(x0, CAPTION_PX), (x0, CAPTION_PX + panel_px)], fill=(90, 90, 90))

    b = [f"{a:.0f} to {z:.0f}" for a, z in zip(lo, hi)]
    draw.text((4, 3), f"{read.id} ({read.method}{', contrast' if read.contrast else ''}): heart box LPS mm "
                      f"L {b[0]}, P {b[1]}, S {b[2]}", fill=(255, 255, 255))
    kinds = sorted({cal.kind for cal in read.calcium})
    x = 4.0
    grey = (200, 200, 200)
    words = [("calcium:", grey)] + [(k, KIND_COLOURS[k]) for k in kinds] + [("(none read)" if not kinds else "", grey)]
    for word, colour in words + [(f"| field {fov:.0f} mm, W400/L40", grey)]:
        if word:  # each calcium kind is written in its marker colour
            draw.text((x, 16), word, fill=colour)
            x += draw.textlength(word) + 6

    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    canvas.quantize(colors=128, method=Image.Quantize.MEDIANCUT).save(out, optimize=True)
    return out


def load_scan(shared: str | Path, read: HeartRead):
    """Read the scan of a read with cacflow's converter: a :class:`cacflow.imaging.volume.Volume` (HU, z y x, LPS).

    ``shared`` is the shared folder that ``read.source`` is relative to. A folder is read as one DICOM series (its
    ``.dcm`` files); a file as a volume file (NRRD, NIfTI).
    """
    from cacflow.pipeline.convert import convert_series

    src = Path(shared) / read.source
    if src.is_dir():
        files = sorted(p.name for p in src.iterdir() if p.is_file() and p.suffix.lower() == ".dcm")
        if not files:
            raise FileNotFoundError(f"{src}: no .dcm files for scan {read.id}")
        return convert_series(src, files, show_paths=True)
    if not src.is_file():
        raise FileNotFoundError(f"{src}: scan {read.id} not found (is the shared folder at {shared}?)")
    return convert_series(src.parent, [src.name], show_paths=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``render --scan ID`` (or ``--all``) redraws the pictures of the reads file."""
    parser = argparse.ArgumentParser(prog="python -m cacflow.evaluation.reads", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    render = sub.add_parser("render", help="redraw the picture of one read (or all) from its scan")
    which = render.add_mutually_exclusive_group(required=True)
    which.add_argument("--scan", help="scan id in the reads file")
    which.add_argument("--all", action="store_true", help="every scan in the reads file")
    render.add_argument("--reads", type=Path, default=DEFAULT_READS, help="reads file (default: %(default)s)")
    render.add_argument("--shared", type=Path, default=DEFAULT_SHARED,
                        help="shared folder that the sources are relative to (default: %(default)s)")
    render.add_argument("--out", type=Path, default=None,
                        help="output PNG (only with --scan; default: the read's picture beside the reads file)")
    args = parser.parse_args(argv)

    try:
        reads = load_reads(args.reads)
        chosen = reads if args.all else [read_by_id(reads, args.scan)]
    except (ReadsError, KeyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for read in chosen:
        out = args.out if (args.out is not None and not args.all) else args.reads.parent / read.picture
        vol = load_scan(args.shared, read)
        render_read(vol.hu, vol.spacing_zyx, vol.origin, vol.direction, read, out)
        print(f"{read.id}: {out} ({out.stat().st_size // 1024} KiB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
