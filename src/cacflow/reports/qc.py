"""Quality-control picture of one scored CT series: an axial and a coronal cut through the heart box's centre with
the counted calcium, and a panel of every method's counted calcium.

Conventions (the same as the rest of cacflow):

* Volumes are indexed ``(z, y, x)`` = (axial slice, row, column). ``z`` ascends toward the head (superior); rows
  ``y`` go anterior -> posterior; columns ``x`` go from the patient's right to the patient's left (LPS).
* Spacings are in mm, given as ``(slice increment, row spacing, column spacing)``; intensities are in HU.
* Display follows the radiological convention: on the axial panel anterior is at the top and the patient's right
  on the image left (the natural array display, rows down and columns across); on the coronal panel superior is
  at the top (``z`` is flipped) and the patient's right again on the image left.
* Both panels are resampled to square display pixels of the same size in mm (``QcLayout.mm_per_px``), so the
  coronal panel has the true aspect ratio even when the slice increment differs from the in-plane spacing.
* Grey values use a mediastinal window, level 40 HU / width 400 HU. Counted calcium voxels (``weight_map > 0``)
  are painted opaque by Agatston density weight: 1 yellow, 2 orange, 3 red, 4 magenta. The heart box is a cyan
  rectangle, the optional heart-region mask a faint green outline, and short white ticks on the panel edges
  mark where the other panel's slice lies.
* The cuts go through the heart box's centre (the volume's centre without a box), so the picture shows the heart
  whatever a method counted elsewhere. When the caller gives each method's counted voxels, a third panel below
  shows them projected along z over the box's slices onto the axial cut, magnified to the box and its surroundings,
  one colour per method (``METHOD_COLOURS``, drawn in the order given, later methods over earlier ones), with a
  legend line per method.

The picture only prints the title it is given; callers must not put identifiers in it.
"""

from __future__ import annotations

import math
import os
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

Box = tuple[int, int, int, int, int, int]
RGB = tuple[int, int, int]

#: Mediastinal window (HU).
WINDOW_LEVEL_HU = 40.0
WINDOW_WIDTH_HU = 400.0
#: Colours of Agatston density weights 1-4.
WEIGHT_COLOURS: dict[int, RGB] = {1: (255, 255, 0), 2: (255, 140, 0), 3: (255, 0, 0), 4: (255, 0, 255)}
BOX_COLOUR: RGB = (0, 255, 255)
#: Colours of the methods on the calcium-by-method panel, in the order the methods are given (then repeated).
METHOD_COLOURS: tuple[RGB, ...] = ((255, 80, 80), (80, 160, 255), (120, 255, 120), (255, 120, 255),
                                   (255, 230, 80), (180, 120, 255), (255, 255, 255))
REGION_COLOUR: RGB = (60, 220, 60)
REGION_ALPHA = 0.45
TICK_COLOUR: RGB = (255, 255, 255)
BACKGROUND: RGB = (40, 40, 40)
TEXT_COLOUR: RGB = (235, 235, 235)
#: Target panel width and maximum panel height (display pixels); two panels plus margins stay under ~1100 px.
PANEL_WIDTH_PX = 512
PANEL_MAX_HEIGHT_PX = 640
#: The picture is at least this wide so that the header and legend fit next to very narrow panels.
MIN_PICTURE_WIDTH_PX = 560
MARGIN_PX = 8
GAP_PX = 12
TICK_PX = 7


@dataclass(frozen=True)
class Rect:
    """An axis-aligned rectangle in picture pixels: left, top, width, height."""

    left: int
    top: int
    width: int
    height: int


@dataclass(frozen=True)
class QcLayout:
    """Where the panels lie in the picture.

    Attributes:
        size: (width, height) of the whole picture (px).
        axial: the axial panel; ``volume x`` across (columns), ``volume y`` down (rows).
        coronal: the coronal panel; ``volume x`` across, ``volume z`` up (superior at the top).
        mm_per_px: edge length of a display pixel in mm, the same on both panels and both axes.
        header_lines: the text lines printed above the panels.
        methods: the calcium-by-method panel below the axial one (axial geometry), or None.
    """

    size: tuple[int, int]
    axial: Rect
    coronal: Rect
    mm_per_px: float
    header_lines: tuple[str, ...]
    methods: Rect | None = None


@dataclass(frozen=True)
class SliceChoice:
    """The slices shown: axial slice index ``z`` and coronal row index ``y`` (0-based voxel indices).

    ``counted_axial`` / ``counted_coronal`` are the numbers of counted voxels (inside the box) on them.
    """

    z: int
    y: int
    counted_axial: int
    counted_coronal: int


def _check_box(box_zyx: Box | None, shape: tuple[int, int, int]) -> Box:
    """The box as six ints, or the whole volume for None; raises ValueError unless ``0 <= lo < hi <= n``."""
    if box_zyx is None:
        return (0, shape[0], 0, shape[1], 0, shape[2])
    box = tuple(int(v) for v in box_zyx)
    if len(box) != 6:
        raise ValueError(f"box_zyx needs 6 values (z0, z1, y0, y1, x0, x1), got {len(box)}")
    for axis, n in enumerate(shape):
        lo, hi = box[2 * axis], box[2 * axis + 1]
        if not 0 <= lo < hi <= n:
            raise ValueError(f"box_zyx {box} is empty or outside the volume of shape {shape}")
    return box  # type: ignore[return-value]


def choose_slices(weight_map: np.ndarray, box_zyx: Box | None) -> SliceChoice:
    """The axial slice and coronal row to show: the heart box's centre, ``z = (z0 + z1) // 2`` and
    ``y = (y0 + y1) // 2`` (the volume's centre without a box), with the counted voxels (``weight_map > 0``) inside
    the box on each. ``weight_map`` is (z, y, x); ``box_zyx`` half-open voxel ranges or None (whole volume).
    """
    z0, z1, y0, y1, x0, x1 = _check_box(box_zyx, weight_map.shape)
    z, y = (z0 + z1) // 2, (y0 + y1) // 2
    return SliceChoice(z=z, y=y, counted_axial=int(np.count_nonzero(weight_map[z, y0:y1, x0:x1])),
                       counted_coronal=int(np.count_nonzero(weight_map[z0:z1, y, x0:x1])))


def _font() -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    """Pillow's built-in bitmap font: the same glyphs whether or not Pillow was built with FreeType.

    ``ImageFont.load_default()`` returns a scalable FreeType font on Pillow >= 10.1 builds with FreeType; the
    bitmap font it used to return (crisper at this size) is ``load_default_imagefont()`` there.
    """
    bitmap = getattr(ImageFont, "load_default_imagefont", None)
    return bitmap() if bitmap is not None else ImageFont.load_default()


def _printable(text: str, font: ImageFont.ImageFont | ImageFont.FreeTypeFont) -> str:
    """Text the font can draw on one line: control characters become spaces; the bitmap font is Latin-1 only."""
    text = "".join(" " if not ch.isprintable() else ch for ch in text)
    if isinstance(font, ImageFont.FreeTypeFont):
        return text
    return text.encode("latin-1", "replace").decode("latin-1")


def _wrap(text: str, font, max_width: int) -> list[str]:
    """Greedy word wrap to ``max_width`` pixels (a single over-long word is cut by characters)."""
    lines: list[str] = []
    current = ""
    for word in text.split(" "):
        trial = word if not current else f"{current} {word}"
        if font.getlength(trial) <= max_width:
            current = trial
            continue
        if current:
            lines.append(current)
        while font.getlength(word) > max_width and len(word) > 1:
            cut = len(word) - 1
            while cut > 1 and font.getlength(word[:cut]) > max_width:
                cut -= 1
            lines.append(word[:cut])
            word = word[cut:]
        current = word
    lines.append(current)
    return lines


def _line_height(font) -> int:
    left, top, right, bottom = font.getbbox("Agy|")
    return int(bottom) + 3


def methods_crop(box_zyx: Box, shape_zyx: tuple[int, int, int]) -> tuple[int, int, int, int]:
    """The in-plane window (y0, y1, x0, x1; half-open voxels) of the calcium-by-method panel: the box's rows and
    columns with a margin of a quarter of its size on each side, clipped to the slice."""
    _, _, y0, y1, x0, x1 = box_zyx
    my, mx = max(1, (y1 - y0) // 4), max(1, (x1 - x0) // 4)
    return max(0, y0 - my), min(shape_zyx[1], y1 + my), max(0, x0 - mx), min(shape_zyx[2], x1 + mx)


def compute_layout(shape_zyx: tuple[int, int, int], spacing_zyx_mm: tuple[float, float, float],
                   header_lines: tuple[str, ...] = (), methods_panel: Box | None = None) -> QcLayout:
    """Place the axial and coronal panels for a volume of ``shape_zyx`` voxels at ``spacing_zyx_mm`` (mm).

    One display pixel is ``mm_per_px`` mm on both axes of both panels, chosen so that the panels are
    ``PANEL_WIDTH_PX`` wide (a 512-column scan keeps its in-plane spacing) unless a panel would be taller than
    ``PANEL_MAX_HEIGHT_PX``. ``header_lines`` are wrapped to the picture width. ``methods_panel`` (the heart box)
    adds the calcium-by-method panel below the axial panel, its legend beside it: the box's window
    (:func:`methods_crop`) magnified to the panel width, square pixels.
    """
    nz, ny, nx = (int(n) for n in shape_zyx)
    sz, sy, sx = (float(s) for s in spacing_zyx_mm)
    if min(nz, ny, nx) < 1:
        raise ValueError(f"empty volume shape {shape_zyx}")
    if not all(math.isfinite(s) and s > 0 for s in (sz, sy, sx)):
        raise ValueError(f"spacing must be positive mm, got {spacing_zyx_mm}")
    width_mm, axial_h_mm, coronal_h_mm = nx * sx, ny * sy, nz * sz
    mm_per_px = max(width_mm / PANEL_WIDTH_PX, max(axial_h_mm, coronal_h_mm) / PANEL_MAX_HEIGHT_PX)
    panel_w = max(1, round(width_mm / mm_per_px))
    axial_h = max(1, round(axial_h_mm / mm_per_px))
    coronal_h = max(1, round(coronal_h_mm / mm_per_px))
    font = _font()
    column_w = max(panel_w, int(font.getlength(f"axial z={nz}")) + 4)  # the caption fits over narrow panels
    coronal_left = MARGIN_PX + column_w + GAP_PX
    total_w = max(coronal_left + panel_w + MARGIN_PX, MIN_PICTURE_WIDTH_PX)

    lines = tuple(wrapped for line in header_lines for wrapped in _wrap(_printable(line, font), font,
                                                                         total_w - 2 * MARGIN_PX))
    line_h = _line_height(font)
    caption_top = MARGIN_PX + line_h * len(lines) + (4 if lines else 0)
    panel_top = caption_top + line_h
    legend_top = panel_top + max(axial_h, coronal_h) + 6
    total_h = legend_top + line_h + MARGIN_PX
    methods = None
    if methods_panel is not None:
        wy0, wy1, wx0, wx1 = methods_crop(methods_panel, (nz, ny, nx))
        crop_w_mm, crop_h_mm = (wx1 - wx0) * sx, (wy1 - wy0) * sy
        scale = min(panel_w / crop_w_mm, PANEL_MAX_HEIGHT_PX / crop_h_mm)
        methods = Rect(MARGIN_PX, total_h + line_h, max(1, round(crop_w_mm * scale)),
                       max(1, round(crop_h_mm * scale)))
        total_h = methods.top + methods.height + MARGIN_PX
    return QcLayout(
        size=(total_w, total_h),
        axial=Rect(MARGIN_PX, panel_top, panel_w, axial_h),
        coronal=Rect(coronal_left, panel_top, panel_w, coronal_h),
        mm_per_px=mm_per_px,
        header_lines=lines,
        methods=methods,
    )


def window_to_grey(hu_2d: np.ndarray, level_hu: float = WINDOW_LEVEL_HU,
                   width_hu: float = WINDOW_WIDTH_HU) -> np.ndarray:
    """Map HU to uint8 grey: ``level - width/2`` -> 0, ``level + width/2`` -> 255, clipped."""
    lo = level_hu - width_hu / 2.0
    grey = (np.asarray(hu_2d, dtype=np.float32) - np.float32(lo)) * np.float32(255.0 / width_hu)
    return np.clip(grey + 0.5, 0, 255).astype(np.uint8)


def _weight_lut() -> np.ndarray:
    lut = np.zeros((256, 3), dtype=np.uint8)
    for w, colour in WEIGHT_COLOURS.items():
        lut[w] = colour
    return lut


def _outline(mask: np.ndarray) -> np.ndarray:
    """Pixels of a 2-D bool mask with a 4-neighbour outside the mask (image borders count as outside)."""
    padded = np.pad(mask, 1, constant_values=False)
    interior = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    return mask & ~interior


def render_panel(hu_2d: np.ndarray, weight_2d: np.ndarray, region_2d: np.ndarray | None,
                 size: tuple[int, int]) -> np.ndarray:
    """One panel as an (h, w, 3) uint8 array of ``size`` = (w, h) display pixels.

    ``hu_2d`` (HU), ``weight_2d`` (0-4) and ``region_2d`` (bool) are the 2-D slice already in display orientation
    (first axis down, second across). Grey is resampled bilinearly; weights and region nearest-neighbour, so
    calcium keeps its exact colours.
    """
    grey = Image.fromarray(window_to_grey(hu_2d)).resize(size, Image.Resampling.BILINEAR)
    rgb = np.repeat(np.asarray(grey)[:, :, None], 3, axis=2)
    if region_2d is not None:
        region = Image.fromarray(np.asarray(region_2d, dtype=bool).astype(np.uint8) * 255)
        edge = _outline(np.asarray(region.resize(size, Image.Resampling.NEAREST)) > 0)
        blend = (1 - REGION_ALPHA) * rgb[edge] + REGION_ALPHA * np.asarray(REGION_COLOUR, dtype=np.float32)
        rgb[edge] = np.clip(blend + 0.5, 0, 255).astype(np.uint8)
    weight_2d = np.asarray(weight_2d)
    if weight_2d.size and int(weight_2d.max()) > 0:
        if int(weight_2d.max()) > 4 or int(weight_2d.min()) < 0:
            raise ValueError("weight_map values must be 0-4 (Agatston density weights)")
        w = np.asarray(Image.fromarray(weight_2d.astype(np.uint8)).resize(size, Image.Resampling.NEAREST))
        hit = w > 0
        rgb[hit] = _weight_lut()[w[hit]]
    return rgb


def _span(lo: int, hi: int, n: int, px: int) -> tuple[int, int]:
    """Inclusive pixel range covering voxels ``lo..hi-1`` of ``n`` drawn over ``px`` pixels."""
    first = math.floor(lo * px / n)
    last = max(first, math.ceil(hi * px / n) - 1)
    return first, min(last, px - 1)


def _tick(draw: ImageDraw.ImageDraw, rect: Rect, row: int) -> None:
    """Short marks on both side edges of a panel at display row ``row`` (panel coordinates)."""
    y = rect.top + row
    draw.line([(rect.left, y), (rect.left + TICK_PX - 1, y)], fill=TICK_COLOUR)
    right = rect.left + rect.width - 1
    draw.line([(right - TICK_PX + 1, y), (right, y)], fill=TICK_COLOUR)


def _orientation_labels(draw: ImageDraw.ImageDraw, rect: Rect, top: str, bottom: str, font) -> None:
    """Small letters for the anatomical directions: top/bottom centred, R on the left, L on the right."""
    if rect.width < 40 or rect.height < 40:
        return
    line_h = _line_height(font)
    cx, cy = rect.left + rect.width // 2, rect.top + rect.height // 2
    for text, x, y in ((top, cx - 3, rect.top + 2), (bottom, cx - 3, rect.top + rect.height - line_h),
                       ("R", rect.left + TICK_PX + 3, cy - line_h // 2),
                       ("L", rect.left + rect.width - TICK_PX - 10, cy - line_h // 2)):
        draw.text((x, y), text, fill=TEXT_COLOUR, font=font)


def _legend(draw: ImageDraw.ImageDraw, left: int, top: int, font, has_box: bool, has_region: bool) -> None:
    """One legend line: weight colours, box and region keys, window."""
    line_h = _line_height(font)
    sq = max(6, line_h - 5)
    x = left
    draw.text((x, top), "Agatston weight", fill=TEXT_COLOUR, font=font)
    x += int(font.getlength("Agatston weight")) + 6
    for w, colour in WEIGHT_COLOURS.items():
        draw.rectangle([x, top + 2, x + sq - 1, top + 1 + sq], fill=colour)
        draw.text((x + sq + 3, top), str(w), fill=TEXT_COLOUR, font=font)
        x += sq + 3 + int(font.getlength(str(w))) + 8
    x += 8
    if has_box:
        draw.rectangle([x, top + 2, x + sq - 1, top + 1 + sq], outline=BOX_COLOUR)
        draw.text((x + sq + 3, top), "heart box", fill=TEXT_COLOUR, font=font)
        x += sq + 3 + int(font.getlength("heart box")) + 16
    if has_region:
        draw.rectangle([x, top + 2, x + sq - 1, top + 1 + sq], outline=REGION_COLOUR)
        draw.text((x + sq + 3, top), "heart region", fill=TEXT_COLOUR, font=font)
        x += sq + 3 + int(font.getlength("heart region")) + 16
    draw.text((x, top), f"window L{WINDOW_LEVEL_HU:g} / W{WINDOW_WIDTH_HU:g} HU", fill=TEXT_COLOUR, font=font)


def render_methods_panel(hu_2d: np.ndarray, projections: dict[str, np.ndarray], size: tuple[int, int]
                         ) -> np.ndarray:
    """The calcium-by-method panel as an (h, w, 3) uint8 array: the axial cut ``hu_2d`` (HU) in grey, each method's
    bool (y, x) projection painted in its colour (:data:`METHOD_COLOURS`, in the order of ``projections``)."""
    grey = Image.fromarray(window_to_grey(hu_2d)).resize(size, Image.Resampling.BILINEAR)
    rgb = np.repeat((np.asarray(grey)[:, :, None] * 0.6).astype(np.uint8), 3, axis=2)  # dimmed: colours stand out
    for i, mask in enumerate(projections.values()):
        shown = np.asarray(Image.fromarray(np.asarray(mask, dtype=np.uint8) * 255).resize(
            size, Image.Resampling.NEAREST)) > 0
        rgb[shown] = METHOD_COLOURS[i % len(METHOD_COLOURS)]
    return rgb


def render_qc(hu: np.ndarray, spacing_zyx_mm: tuple[float, float, float], box_zyx: Box | None,
              weight_map: np.ndarray, title: str, region_mask: np.ndarray | None = None,
              method_masks: dict[str, np.ndarray] | None = None, notes: tuple[str, ...] = ()) -> Image.Image:
    """Render the QC picture of one scored series: axial (left) and coronal (right) panel, RGB.

    Args:
        hu: CT volume (z, y, x) in HU (int16), z ascending toward the head, y anterior -> posterior,
            x patient right -> left (LPS).
        spacing_zyx_mm: (slice increment, row spacing, column spacing) in mm.
        box_zyx: heart box (z0, z1, y0, y1, x0, x1), half-open voxel ranges, or None (no box drawn; slices are
            then chosen over the whole volume).
        weight_map: uint8 (z, y, x), 0 where nothing is counted, else the Agatston density weight 1-4.
        title: printed as given on the first header line (must not contain identifiers).
        region_mask: optional bool (z, y, x) heart-region mask, drawn as a faint outline.
        method_masks: optional {method: bool (z, y, x) counted voxels}; adds the calcium-by-method panel (each
            method's voxels inside the box, projected along z onto the axial cut) with a legend line per method
            giving its colour and counted voxels. A method with nothing counted is listed too.
        notes: further header lines (e.g. each method's score, or why the scan was excluded).

    The axial panel shows slice ``z`` through the box centre, with anterior at the top and the patient's right on
    the left; the coronal panel shows row ``y`` through the box centre with superior at the top. Both are resampled
    to square pixels of ``QcLayout.mm_per_px`` mm. Reads only the two displayed slices of ``hu`` and
    ``region_mask``.

    Raises:
        ValueError: shapes differ, the box is empty or outside the volume, a spacing is not positive, or a
            displayed weight is outside 0-4 (only the two displayed slices are checked).
    """
    if hu.ndim != 3:
        raise ValueError(f"hu must be 3-D (z, y, x), got shape {hu.shape}")
    shape = tuple(int(n) for n in hu.shape)
    if tuple(weight_map.shape) != shape:
        raise ValueError(f"weight_map shape {weight_map.shape} differs from hu shape {hu.shape}")
    if region_mask is not None and tuple(region_mask.shape) != shape:
        raise ValueError(f"region_mask shape {region_mask.shape} differs from hu shape {hu.shape}")
    nz, ny, nx = shape
    box = _check_box(box_zyx, shape)
    choice = choose_slices(weight_map, box)
    slice_info = (f"axial z={choice.z} of 0-{nz - 1} ({choice.counted_axial} counted voxels) | "
                  f"coronal y={choice.y} of 0-{ny - 1} ({choice.counted_coronal})")
    if box_zyx is None:
        slice_info += " | no heart box"
    for name, mask in (method_masks or {}).items():
        if tuple(mask.shape) != shape:
            raise ValueError(f"method_masks[{name!r}] shape {mask.shape} differs from hu shape {hu.shape}")
    layout = compute_layout(shape, spacing_zyx_mm, (title, *notes, slice_info),
                            methods_panel=box if method_masks else None)

    axial_rect, coronal_rect = layout.axial, layout.coronal
    axial = render_panel(hu[choice.z], weight_map[choice.z],
                         None if region_mask is None else region_mask[choice.z],
                         (axial_rect.width, axial_rect.height))
    # coronal: (z, x) with z flipped so that superior is at the top
    coronal = render_panel(np.asarray(hu[:, choice.y, :])[::-1], np.asarray(weight_map[:, choice.y, :])[::-1],
                           None if region_mask is None else np.asarray(region_mask[:, choice.y, :])[::-1],
                           (coronal_rect.width, coronal_rect.height))

    image = Image.new("RGB", layout.size, BACKGROUND)
    image.paste(Image.fromarray(axial), (axial_rect.left, axial_rect.top))
    image.paste(Image.fromarray(coronal), (coronal_rect.left, coronal_rect.top))
    draw = ImageDraw.Draw(image)
    font = _font()

    if box_zyx is not None:
        z0, z1, y0, y1, x0, x1 = box
        ax_l, ax_r = _span(x0, x1, nx, axial_rect.width)
        ax_t, ax_b = _span(y0, y1, ny, axial_rect.height)
        draw.rectangle([axial_rect.left + ax_l, axial_rect.top + ax_t, axial_rect.left + ax_r,
                        axial_rect.top + ax_b], outline=BOX_COLOUR)
        co_l, co_r = _span(x0, x1, nx, coronal_rect.width)
        co_t, co_b = _span(nz - z1, nz - z0, nz, coronal_rect.height)  # flipped z
        draw.rectangle([coronal_rect.left + co_l, coronal_rect.top + co_t, coronal_rect.left + co_r,
                        coronal_rect.top + co_b], outline=BOX_COLOUR)
    # where the other panel cuts: coronal row on the axial panel, axial slice on the coronal panel
    _tick(draw, axial_rect, int((choice.y + 0.5) * axial_rect.height / ny))
    _tick(draw, coronal_rect, int((nz - 1 - choice.z + 0.5) * coronal_rect.height / nz))
    _orientation_labels(draw, axial_rect, "A", "P", font)
    _orientation_labels(draw, coronal_rect, "S", "I", font)

    line_h = _line_height(font)
    for i, line in enumerate(layout.header_lines):
        draw.text((MARGIN_PX, MARGIN_PX + i * line_h), line, fill=TEXT_COLOUR, font=font)
    caption_top = axial_rect.top - line_h
    draw.text((axial_rect.left, caption_top), f"axial z={choice.z}", fill=TEXT_COLOUR, font=font)
    draw.text((coronal_rect.left, caption_top),
              f"coronal y={choice.y}  ({layout.mm_per_px:.3g} mm/px)", fill=TEXT_COLOUR, font=font)
    _legend(draw, MARGIN_PX, max(axial_rect.height, coronal_rect.height) + axial_rect.top + 6, font,
            has_box=box_zyx is not None, has_region=region_mask is not None)
    if method_masks and layout.methods is not None:
        _methods_panel(image, draw, font, layout.methods, hu[choice.z], method_masks, box)
    return image


def _methods_panel(image: Image.Image, draw: ImageDraw.ImageDraw, font, rect: Rect, hu_2d: np.ndarray,
                   method_masks: dict[str, np.ndarray], box: Box) -> None:
    """Draw the calcium-by-method panel at ``rect``, its caption above and one legend line per method beside it."""
    z0, z1, y0, y1, x0, x1 = box
    wy0, wy1, wx0, wx1 = methods_crop(box, (0, *hu_2d.shape))
    projections, counts = {}, {}
    for name, mask in method_masks.items():
        inside = np.zeros(mask.shape[1:], dtype=bool)
        inside[y0:y1, x0:x1] = np.asarray(mask[z0:z1, y0:y1, x0:x1]).any(axis=0)
        projections[name] = inside[wy0:wy1, wx0:wx1]
        counts[name] = int(np.count_nonzero(mask[z0:z1, y0:y1, x0:x1]))
    image.paste(Image.fromarray(render_methods_panel(hu_2d[wy0:wy1, wx0:wx1], projections,
                                                     (rect.width, rect.height))), (rect.left, rect.top))
    # the box's outline on the magnified window
    left, right = _span(x0 - wx0, x1 - wx0, wx1 - wx0, rect.width)
    top, bottom = _span(y0 - wy0, y1 - wy0, wy1 - wy0, rect.height)
    draw.rectangle([rect.left + left, rect.top + top, rect.left + right, rect.top + bottom], outline=BOX_COLOUR)
    line_h = _line_height(font)
    draw.text((rect.left, rect.top - line_h), "counted calcium by method (inside the box, all its slices; magnified)",
              fill=TEXT_COLOUR, font=font)
    sq = max(6, line_h - 5)
    left = rect.left + rect.width + GAP_PX
    for i, name in enumerate(method_masks):
        top = rect.top + i * line_h
        draw.rectangle([left, top + 2, left + sq - 1, top + 1 + sq], fill=METHOD_COLOURS[i % len(METHOD_COLOURS)])
        draw.text((left + sq + 4, top), _printable(f"{name}: {counts[name]} voxels", font), fill=TEXT_COLOUR,
                  font=font)


def _tmp(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:12]}")


def write_qc_png(path: Path, image: Image.Image) -> None:
    """Write ``image`` as PNG to ``path`` atomically: a temporary sibling, fsync, then ``os.replace``.

    Creates the parent folder if needed; the temporary file is removed on failure.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp(path)
    try:
        with open(tmp, "wb") as fh:
            image.save(fh, format="PNG")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
