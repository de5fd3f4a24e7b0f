"""QC picture: slice choice, panel geometry (mm aspect, orientation), colours, atomic PNG writing."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from cacflow.reports.qc import choose_slices, compute_layout, render_qc, write_qc_png

SPACING = (1.5, 0.7, 0.7)  # mm: slice increment, row, column
SHAPE = (40, 64, 64)
BOX = (7, 37, 0, 42, 5, 55)  # z0, z1, y0, y1, x0, x1: centre slice z = 22, centre row y = 21
# the colours the picture promises (spelled out here, not imported, so a change in the module is caught)
YELLOW, ORANGE, RED, MAGENTA = (255, 255, 0), (255, 140, 0), (255, 0, 0), (255, 0, 255)
WEIGHT_COLOURS = {1: YELLOW, 2: ORANGE, 3: RED, 4: MAGENTA}
BOX_COLOUR = (0, 255, 255)


def _volume() -> tuple[np.ndarray, np.ndarray]:
    """Soft tissue (40 HU) with calcium blobs; counts inside BOX: z=22 has 20 voxels, row y=20 has 6."""
    hu = np.full(SHAPE, 40, dtype=np.int16)
    wm = np.zeros(SHAPE, dtype=np.uint8)
    blobs = [  # (z, y slice, x slice, HU, weight)
        (22, slice(20, 24), slice(40, 44), 600, 4),  # 16 voxels, right half of the columns, upper rows
        (22, slice(30, 32), slice(20, 22), 250, 2),
        (10, slice(44, 46), slice(30, 32), 150, 1),
        (30, slice(20, 22), slice(10, 12), 350, 3),  # superior to the weight-4 blob
        (2, slice(55, 60), slice(55, 60), 150, 1),  # 25 voxels outside the box: must not drive the choice
    ]
    for z, ys, xs, value, weight in blobs:
        hu[z, ys, xs] = value
        wm[z, ys, xs] = weight
    return hu, wm


def _pixels(image: Image.Image, rect) -> np.ndarray:
    a = np.asarray(image)
    return a[rect.top:rect.top + rect.height, rect.left:rect.left + rect.width]


def _is(a: np.ndarray, colour) -> np.ndarray:
    return np.all(a == np.asarray(colour, dtype=np.uint8), axis=-1)


def _centre_px(voxel: float, n: int, px: int) -> int:
    """Display pixel holding the centre of voxel ``voxel`` of ``n`` drawn over ``px`` pixels."""
    return int((voxel + 0.5) * px / n)


@pytest.fixture(scope="module")
def rendered():
    hu, wm = _volume()
    image = render_qc(hu, SPACING, BOX, wm, "series demo · classic_heart_region · Agatston 123.4 · 11-100")
    layout = compute_layout(SHAPE, SPACING, ("x", "y"))
    return image, layout


def test_choose_slices_cut_through_the_box_centre():
    _, wm = _volume()
    choice = choose_slices(wm, BOX)
    assert (choice.z, choice.y) == (22, 21)
    # counted voxels inside the box on those cuts: slice 22 holds 16 + 4; row 21 holds 4 (z 22) + 2 (z 30)
    assert (choice.counted_axial, choice.counted_coronal) == (20, 6)
    # without a box: the volume's centre, whatever was counted elsewhere
    assert (choose_slices(wm, None).z, choose_slices(wm, None).y) == (SHAPE[0] // 2, SHAPE[1] // 2)


def test_choose_slices_counts_nothing_without_calcium():
    wm = np.zeros(SHAPE, dtype=np.uint8)
    choice = choose_slices(wm, BOX)
    assert (choice.z, choice.y) == ((7 + 37) // 2, (0 + 42) // 2)
    assert (choice.counted_axial, choice.counted_coronal) == (0, 0)


def test_size_and_mode(rendered):
    image, layout = rendered
    assert image.mode == "RGB"
    assert image.size == layout.size
    assert image.width <= 1100


def test_large_matrix_stays_small():
    layout = compute_layout((250, 512, 512), (1.25, 0.7, 0.7), ("t", "s"))
    assert layout.size[0] <= 1100
    assert layout.mm_per_px == pytest.approx(0.7)  # a 512 matrix keeps its in-plane spacing


def test_coronal_aspect_in_mm(rendered):
    image, layout = rendered
    expected = (SHAPE[0] * SPACING[0]) / (SHAPE[2] * SPACING[2])  # 60 mm tall / 44.8 mm wide
    assert layout.coronal.height / layout.coronal.width == pytest.approx(expected, abs=0.02)
    assert layout.axial.height / layout.axial.width == pytest.approx(1.0, abs=0.02)
    # measured on the picture itself: the extent of soft-tissue grey (40 HU -> ~128) right of the axial panel
    a = np.asarray(image).astype(int)
    grey = (np.abs(a - 128) <= 3).all(axis=-1)
    grey[:, :layout.axial.left + layout.axial.width] = False
    rows, cols = np.nonzero(grey)
    height, width = rows.max() - rows.min() + 1, cols.max() - cols.min() + 1
    assert height / width == pytest.approx(expected, rel=0.03)
    assert height > width  # 60 mm of z is taller than 44.8 mm of x although there are fewer slices than columns


def test_weight_four_is_magenta_where_the_blob_is(rendered):
    image, layout = rendered
    ax = layout.axial
    panel = _pixels(image, ax)
    # centre of the blob: y 20..23, x 40..43 -> voxel centre (21.5, 41.5)
    r, c = _centre_px(21.5, SHAPE[1], ax.height), _centre_px(41.5, SHAPE[2], ax.width)
    assert tuple(panel[r, c]) == MAGENTA
    rows, cols = np.nonzero(_is(panel, MAGENTA))
    assert rows.min() == pytest.approx(20 * ax.height / 64, abs=1.5)
    assert rows.max() + 1 == pytest.approx(24 * ax.height / 64, abs=1.5)
    assert cols.min() == pytest.approx(40 * ax.width / 64, abs=1.5)  # not mirrored
    assert cols.max() + 1 == pytest.approx(44 * ax.width / 64, abs=1.5)
    assert _is(panel, ORANGE).any()  # weight 2 on the same slice
    assert not _is(panel, YELLOW).any() and not _is(panel, RED).any()  # weights 1 and 3 lie on other slices


def test_coronal_has_superior_at_top(rendered):
    image, layout = rendered
    panel = _pixels(image, layout.coronal)
    magenta_rows = np.nonzero(_is(panel, MAGENTA))[0]
    red_rows = np.nonzero(_is(panel, RED))[0]
    assert magenta_rows.size and red_rows.size
    assert red_rows.mean() < magenta_rows.mean()  # z=30 is above z=22
    expected_row = _centre_px(SHAPE[0] - 1 - 22, SHAPE[0], layout.coronal.height)
    assert layout.coronal.top > 0
    assert magenta_rows.min() <= expected_row <= magenta_rows.max()


def test_box_outline_is_cyan(rendered):
    image, layout = rendered
    ax = layout.axial
    panel = _pixels(image, ax)
    z0, z1, y0, y1, x0, x1 = BOX
    left_edge = int(x0 * ax.width / SHAPE[2])
    assert tuple(panel[_centre_px(30, SHAPE[1], ax.height), left_edge]) == BOX_COLOUR
    top_edge = int(y0 * ax.height / SHAPE[1])
    assert tuple(panel[top_edge, _centre_px(30, SHAPE[2], ax.width)]) == BOX_COLOUR
    co = layout.coronal
    coronal = _pixels(image, co)
    top_edge = int((SHAPE[0] - z1) * co.height / SHAPE[0])  # z1 is the superior end, drawn at the top
    assert tuple(coronal[top_edge, _centre_px(30, SHAPE[2], co.width)]) == BOX_COLOUR
    assert not _is(coronal[: top_edge - 1], BOX_COLOUR).any()


def test_no_box_no_calcium():
    hu, _ = _volume()
    wm = np.zeros(SHAPE, dtype=np.uint8)
    image = render_qc(hu, SPACING, None, wm, "no box")
    assert image.mode == "RGB"
    a = np.asarray(image)
    assert not _is(a, BOX_COLOUR).any()  # neither box nor its legend key
    layout = compute_layout(SHAPE, SPACING, ("x", "y"))
    for rect in (layout.axial, layout.coronal):
        panel = _pixels(image, rect)
        for colour in WEIGHT_COLOURS.values():
            assert not _is(panel, colour).any()


def test_tiny_volume_with_region_mask():
    hu = np.full((8, 16, 16), 40, dtype=np.int16)
    wm = np.zeros(hu.shape, dtype=np.uint8)
    hu[4, 5, 5], wm[4, 5, 5] = 500, 4  # on the box (z 1-6) centre slice 4
    region = np.zeros(hu.shape, dtype=bool)
    region[1:7, 3:13, 3:13] = True
    image = render_qc(hu, (3.0, 0.7, 0.7), (1, 7, 2, 14, 2, 14), wm, "tiny", region_mask=region)
    layout = compute_layout(hu.shape, (3.0, 0.7, 0.7), ("x", "y"))
    assert image.mode == "RGB" and image.width <= 1100
    axial = _pixels(image, layout.axial)
    assert _is(axial, MAGENTA).any()
    # the faint region outline: greenish, neither grey nor a calcium colour
    a = axial.astype(int)
    assert ((a[..., 1] - a[..., 0] > 30) & (a[..., 1] - a[..., 2] > 30)).any()


def test_long_title_wraps_and_non_latin1_is_safe():
    hu, wm = _volume()
    short = render_qc(hu, SPACING, BOX, wm, "short")
    long = render_qc(hu, SPACING, BOX, wm, "series ✓\n" + "word " * 80)
    assert long.width == short.width
    assert long.height > short.height


def test_invalid_inputs():
    hu, wm = _volume()
    with pytest.raises(ValueError):
        render_qc(hu, SPACING, (5, 5, 10, 50, 5, 55), wm, "empty box")
    with pytest.raises(ValueError):
        render_qc(hu, SPACING, (5, 35, 10, 50, 5, 65), wm, "box outside")
    with pytest.raises(ValueError):
        render_qc(hu, SPACING, BOX, wm[:-1], "shape mismatch")
    with pytest.raises(ValueError):
        render_qc(hu, (0.0, 0.7, 0.7), BOX, wm, "zero spacing")
    bad = wm.copy()
    bad[22, 0, 0] = 7
    with pytest.raises(ValueError):
        render_qc(hu, SPACING, BOX, bad, "weight out of range")


def test_write_qc_png_atomic_and_readable(tmp_path, rendered):
    image, _ = rendered
    out = tmp_path / "qc" / "series.png"
    write_qc_png(out, image)
    assert sorted(p.name for p in out.parent.iterdir()) == ["series.png"]  # no temporary left behind
    with Image.open(out) as back:
        assert back.format == "PNG" and back.mode == "RGB" and back.size == image.size
        assert np.array_equal(np.asarray(back), np.asarray(image))
    write_qc_png(out, image.resize((10, 10)))  # replaces an existing file
    with Image.open(out) as back:
        assert back.size == (10, 10)
    assert sorted(p.name for p in out.parent.iterdir()) == ["series.png"]


def test_write_qc_png_failure_leaves_nothing(tmp_path):
    class Broken:
        def save(self, fh, format=None):
            fh.write(b"partial")
            raise OSError("disk full")

    out = tmp_path / "series.png"
    with pytest.raises(OSError):
        write_qc_png(out, Broken())  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []


def test_mediastinal_window():
    from cacflow.reports.qc import window_to_grey

    grey = window_to_grey(np.array([-1000, -160, 40, 240, 3000], dtype=np.int16))
    assert grey.tolist() == [0, 0, 128, 255, 255]


def test_every_methods_calcium_has_its_colour_on_the_methods_panel():
    from cacflow.reports.qc import METHOD_COLOURS, methods_crop

    hu, wm = _volume()
    classic = wm > 0
    reference = np.zeros(SHAPE, dtype=bool)
    reference[30, 20:22, 10:12] = True  # only the weight-3 blob, off the centre slice
    none = np.zeros(SHAPE, dtype=bool)
    masks = {"classic_heart_region": classic, "reference": reference, "lstm": none}
    image = render_qc(hu, SPACING, BOX, wm, "methods", method_masks=masks, notes=("regression 12.0 (11-100)",))
    layout = compute_layout(SHAPE, SPACING, ("x", "regression 12.0 (11-100)", "y"), methods_panel=BOX)
    assert image.size == layout.size and layout.methods is not None
    rect = layout.methods
    panel = _pixels(image, rect)
    wy0, wy1, wx0, wx1 = methods_crop(BOX, SHAPE)
    assert (wy0, wy1, wx0, wx1) == (0, 52, 0, 64)  # the box (rows 0-41, columns 5-54) and a quarter more each side
    assert rect.height / rect.width == pytest.approx((wy1 - wy0) / (wx1 - wx0), abs=0.02)  # square pixels

    def at(y: float, x: float) -> tuple:
        return tuple(panel[_centre_px(y - wy0, wy1 - wy0, rect.height), _centre_px(x - wx0, wx1 - wx0, rect.width)])

    first, second, third = METHOD_COLOURS[:3]
    assert at(20.5, 10.5) == second  # the reference (drawn after classic) covers the weight-3 blob of slice 30
    assert at(21.5, 41.5) == first  # classic's weight-4 blob
    assert at(44.5, 30.5) != first  # classic's blob at row 44 lies outside the box (rows < 42): not drawn
    assert not _is(panel, third).any()  # nothing counted by the third method
    # each method has its legend swatch beside the panel, the third too
    legend = np.asarray(image)[rect.top:rect.top + 60, rect.left + rect.width:]
    assert all(_is(legend, colour).any() for colour in (first, second, third))
