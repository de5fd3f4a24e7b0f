"""QC pictures of the score stage: one for a scan excluded at scoring too, saying why."""

from __future__ import annotations

import numpy as np
from PIL import Image

from cacflow.imaging.volume import Volume
from cacflow.io.zarr_store import write_volume
from cacflow.pipeline.layout import CohortLayout
from cacflow.pipeline.score import CLASSIC, ScoreTask, score_series
from cacflow.scoring.agatston import DEFAULT_CONVENTION


def test_a_scan_without_a_heart_gets_a_picture_that_says_why(tmp_path):
    """A water cylinder with a calcium insert and no lungs (a QRM-like phantom): the heuristic finds no heart, the
    classic method is excluded, and the picture is written all the same, its header naming the reason."""
    z, y, x = np.mgrid[0:40, 0:128, 0:128]
    hu = np.full((40, 128, 128), -1000, dtype=np.int16)
    hu[(y - 64) ** 2 + (x - 64) ** 2 < 55 ** 2] = 0
    hu[(z > 15) & (z < 25) & ((y - 64) ** 2 + (x - 80) ** 2 < 16)] = 400
    volume = Volume(hu=hu, spacing_zyx=(1.5, 1.0, 1.0), origin=(-64.0, -64.0, 0.0), direction=np.eye(3),
                    z_positions_mm=np.arange(40) * 1.5)
    layout = CohortLayout(tmp_path / "results", "qrm")
    write_volume(layout.volume("s1", "scoring"), volume)
    task = ScoreTask(series_key="s1", results=str(layout.results), cohort="qrm", grid_name="scoring", grid=(3.0, 1.5),
                     convention=DEFAULT_CONVENTION.as_dict(), volume_fingerprint="fp")
    out = score_series(task)
    classic = [r for r in out.scores if r["method"] == CLASSIC][0]
    assert classic["status"] == "excluded" and classic["reason"]
    assert out.region["qc_picture"] == "qrm/qc/s1.png"
    image = Image.open(layout.qc_picture("s1"))
    assert image.format == "PNG" and image.width >= 500
    assert image.height < 800  # no method counted anything: the two cuts, without the methods panel
