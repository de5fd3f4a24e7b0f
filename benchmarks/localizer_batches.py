"""Localizer training with its batches built in worker processes: batches per second and seconds per epoch.

Usage (after the training cohort is preprocessed, as for `benchmarks/training.py`):
    python benchmarks/localizer_batches.py --config config.yaml --device cpu --series 24 --workers 0,1,2
        [--epochs 2] [--out benchmarks/out/localizer_batches_cpu.json]

Loads the canvases of the first ``--series`` training-split series, then for each worker count:
- builds one epoch of training batches (``samples_per_epoch`` / ``batch_size`` of them) and consumes them without a
  network: batches per second of the batch pipeline alone;
- trains the axial network for ``--epochs`` epochs with the config's localizer settings (validation on two
  validation-split series): median seconds per epoch.
The batches, and so the trained weights, are the same for every worker count
(``tests/training/test_localizer_training.py``); only the time changes. Reports seconds; compare worker counts by
their ratio to 0 workers on the same machine.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from cacflow import config as cfg
from cacflow.models.predict import pick_device
from cacflow.pipeline.layout import CohortLayout
from cacflow.training import localizer as tl
from cacflow.training.batches import available_cpus, batch_stream
from cacflow.training.common import seed_everything
from cacflow.training.engine import epoch_seconds
from cacflow.training.inputs import cohort_setup, hyper_from_config

ROOT = Path(__file__).resolve().parents[1]


def batches_per_second(records: list[tl.CanvasRecord], hp: tl.LocalizerHyper, workers: int, count: int) -> float:
    """Training batches of the axial plane built (and handed over) per second with ``workers`` processes."""
    def make(index: int):
        return tl.training_batch(records, 0, hp, 7, index)

    t0 = time.perf_counter()
    with batch_stream(make, count, workers) as it:
        for _ in it:
            pass
    return count / (time.perf_counter() - t0)


def training_epoch_seconds(records: list[tl.CanvasRecord], val: list[tl.CanvasRecord], hp: tl.LocalizerHyper,
                           device: torch.device) -> list[float]:
    """Seconds per epoch of one axial network trained with ``hp`` (its early-stopping clock)."""
    _, history = tl.train_plane("axial", records, val, hp, device, seed_everything(hp.seed))
    return epoch_seconds(history["history"])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", type=Path, default=ROOT / "config.yaml")
    p.add_argument("--device", default="cpu", choices=["auto", "cpu", "cuda"])
    p.add_argument("--series", type=int, default=24, help="training-split series whose canvases are loaded")
    p.add_argument("--workers", default="0,1,2", help="worker counts to compare, comma-separated")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stdout)
    config = cfg.load(args.config)
    cohort = config["training"]["cohort"]
    layout = CohortLayout(Path(config["results"]), cohort)
    root, labels = cfg.cohort_root(config, cohort), cfg.cohort_labels(config, cohort)
    if labels is None:
        raise SystemExit(f"cohort {cohort!r} has no reference labels: nothing to build batches from")
    series, grid, convention, _ = cohort_setup(layout, root, labels, config)
    device = pick_device(args.device)
    t0 = time.perf_counter()
    train = tl.load_canvases([s for s in series if s.split == "train"][:args.series], grid, convention)
    val = tl.load_canvases([s for s in series if s.split == "val"][:2], grid, convention)
    load_s = time.perf_counter() - t0
    hp = replace(hyper_from_config(tl.LocalizerHyper, config["training"]["localizer"]), max_epochs=args.epochs,
                 patience=args.epochs)
    steps = max(1, hp.samples_per_epoch // hp.batch_size)
    report = {"device": str(device), "cpus": available_cpus(), "torch_threads": torch.get_num_threads(),
              "series": len(train), "load_s": round(load_s, 1), "batch_size": hp.batch_size,
              "batches_per_epoch": steps, "runs": {}}
    for workers in [int(w) for w in args.workers.split(",") if w]:
        rate = batches_per_second(train, hp, workers, steps)
        per_epoch = training_epoch_seconds(train, val, replace(hp, workers=workers), device)
        report["runs"][workers] = {"batches_per_s": round(rate, 2), "epoch_s": [round(s, 2) for s in per_epoch],
                                   "median_epoch_s": round(float(np.median(per_epoch)), 2)}
        print(json.dumps({workers: report["runs"][workers]}), flush=True)
    base = report["runs"].get(0)
    if base:
        report["epoch_speed_up_vs_0_workers"] = {w: round(base["median_epoch_s"] / r["median_epoch_s"], 2)
                                                 for w, r in report["runs"].items()}
    out = args.out or ROOT / "benchmarks" / "out" / f"localizer_batches_{device.type}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1))
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
