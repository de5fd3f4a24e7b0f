"""The localizer's nodule probe slices, on a hand-built canvas (HU, z y x)."""

from __future__ import annotations

import numpy as np

from cacflow.evaluation.localizer import PROBE_BLOB_HU, nodule_probe_slices


def _canvas() -> tuple[np.ndarray, np.ndarray]:
    """A 64^3 canvas: a fat body (z 8..55, y 10..49, x 6..57) holding two lungs (x 10..27 and 36..53) and a heart
    (z 24..39, y 20..33, x 28..35) between them; and its presence targets."""
    c = np.full((64, 64, 64), -1000.0, np.float32)
    c[8:56, 10:50, 6:58] = -100.0
    c[8:56, 14:46, 10:28] = -850.0
    c[8:56, 14:46, 36:54] = -850.0
    c[24:40, 20:34, 28:36] = 40.0
    t = np.zeros((3, 64), np.float32)
    t[0, 24:40], t[1, 20:34], t[2, 28:36] = 1.0, 1.0, 1.0
    return c, t


def test_probe_slices_are_heart_free_lung_slices_with_a_disc_over_lung_only():
    c, t = _canvas()
    for axis in range(3):
        plain = nodule_probe_slices(c, t, axis, 0.0, every=1)
        blob = nodule_probe_slices(c, t, axis, 4.0, every=1)
        assert plain.shape == blob.shape and len(plain) > 0
        heart_free = np.nonzero(t[axis] < 0.5)[0]
        with_lung = [j for j in heart_free if (np.take(c, j, axis) == -850.0).sum() >= 200]
        assert len(plain) == len(with_lung)  # heart slices and slices without lung are skipped
        assert np.array_equal(plain, np.stack([np.take(c, j, axis) for j in with_lung]))
        changed = blob != plain
        assert (plain[changed] == -850.0).all() and (blob[changed] == PROBE_BLOB_HU).all()
        per_slice = changed.sum(axis=(1, 2))
        assert (per_slice > 0).all() and (per_slice <= np.pi * 16 + 8).all()  # one disc of radius 4, lung only


def test_probe_takes_every_nth_slice_and_returns_an_empty_stack_without_lung():
    c, t = _canvas()
    picked = np.nonzero(t[2] < 0.5)[0][::3]  # sagittal: x 0..27 and 36..63, every third
    expected = [j for j in picked if 10 <= j < 28 or 36 <= j < 54]  # those through a lung
    got = nodule_probe_slices(c, t, 2, 0.0, every=3)
    assert np.array_equal(got, np.stack([c[:, :, j] for j in expected]))
    body = np.where(c < -500, -100.0, c).astype(np.float32)  # no lung anywhere
    assert nodule_probe_slices(body, t, 0, 3.0).shape == (0, 64, 64)
