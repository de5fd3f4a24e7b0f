"""The heart box on real chest CT against a reader's box (``reads/real_ct.json``): the localizer's own box, and the
box the pipeline scores in (the localizer's, or the anatomical heuristic's where the localizer is unsure).

Each read scan is converted as the pipeline converts it (DICOM folder or volume file), resampled to the scoring
grid, and given to :func:`cacflow.models.heart_box.choose_heart_box`. Boxes are compared in LPS mm: the share of the
read box a box covers, and their intersection over union. Run::

    python -m cacflow.evaluation.real_heart --shared ../shared --reads reads/real_ct.json

The acceptance of issue 36: on every real scan the localizer's own box is used, covers >= 95 % of the read box and
has IoU >= 0.6 with it (:data:`MIN_COVERAGE`, :data:`MIN_IOU`).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from cacflow.evaluation.reads import box_coverage_mm, box_iou_mm, load_reads, load_scan
from cacflow.imaging.resample import ZGrid, resample_volume
from cacflow.imaging.volume import Volume
from cacflow.models.heart_box import LOCALIZER, choose_heart_box
from cacflow.models.predict import HeartLocalizer

#: A box must cover at least this share of the read box, and overlap it by at least this IoU.
MIN_COVERAGE = 0.95
MIN_IOU = 0.6
#: The scoring grid the pipeline localizes on (3 mm slabs every 1.5 mm).
SCORING_GRID = ZGrid(3.0, 1.5)
LpsBox = tuple[tuple[float, float, float], tuple[float, float, float]]


def _box_figures(prefix: str, box: LpsBox | None, read: LpsBox) -> dict:
    if box is None:
        return {f"{prefix}_coverage": 0.0, f"{prefix}_iou": 0.0}
    return {f"{prefix}_coverage": box_coverage_mm(read, box), f"{prefix}_iou": box_iou_mm(read, box)}


def heart_box_against_read(volume: Volume, read_box: LpsBox, localizer: HeartLocalizer,
                           grid: ZGrid = SCORING_GRID) -> dict:
    """The localizer's own box and the pipeline's chosen box on one scan, each against the read box (LPS mm):
    coverage of the read box, IoU, and the localizer's status and confidence."""
    scoring = resample_volume(volume, grid, "scoring")
    origin = np.asarray(scoring.origin)
    choice = choose_heart_box(localizer, scoring.hu, scoring.spacing_zyx, origin, scoring.direction)
    own = choice.localizer  # the localizer's own answer, whether or not the pipeline uses its box
    row = {"localizer_status": own.status, "localizer_confidence": round(float(own.confidence), 3),
           **_box_figures("localizer", own.box_lps_mm, read_box),
           "chosen_method": choice.method, "chosen_reason": choice.reason,
           **_box_figures("chosen", choice.box_lps_mm, read_box)}
    row["meets_target"] = bool(choice.method == LOCALIZER and row["chosen_coverage"] >= MIN_COVERAGE
                               and row["chosen_iou"] >= MIN_IOU)
    return row


def evaluate_reads(shared: Path, reads_path: Path, localizer_dir: Path) -> list[dict]:
    """:func:`heart_box_against_read` for every read scan (``shared``: the folder the reads' sources are relative
    to); one row per scan with its id and patient."""
    localizer = HeartLocalizer.load(localizer_dir, "cpu")
    rows = []
    for read in load_reads(reads_path):
        row = heart_box_against_read(load_scan(shared, read), read.box, localizer)
        rows.append({"scan": read.id, "patient": read.patient, "localizer_model": localizer.id, **row})
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shared", type=Path, default=Path("../shared"), help="the folder the reads' sources are in")
    p.add_argument("--reads", type=Path, default=Path("reads/real_ct.json"))
    p.add_argument("--localizer", type=Path, default=Path("models/localizer"))
    p.add_argument("--out", type=Path, default=None, help="also write the rows as JSON here")
    args = p.parse_args(argv)
    rows = evaluate_reads(args.shared, args.reads, args.localizer)
    cols = ("scan", "localizer_status", "localizer_confidence", "localizer_coverage", "localizer_iou",
            "chosen_method", "chosen_coverage", "chosen_iou", "meets_target")
    print(" | ".join(cols))
    for r in rows:
        print(" | ".join(f"{r[c]:.2f}" if isinstance(r[c], float) else str(r[c]) for c in cols))
    met = sum(r["meets_target"] for r in rows)
    print(f"localizer's own box used, covering >= {MIN_COVERAGE:.0%} of the read box with IoU >= {MIN_IOU}: "
          f"{met} of {len(rows)} scans")
    if args.out:
        args.out.write_text(json.dumps(rows, indent=1, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
