"""Training benchmark: the workflow's training runs on one device, timed per epoch, with the figures of their cards.

Usage (after the workflow has preprocessed the training cohort, `snakemake ... preprocess` or
`benchmarks/gpu_training.sh` on a GPU node):
    python benchmarks/training.py --config config.yaml --device cuda --models localizer,regressor,levels
        [--max-epochs N] [--out benchmarks/out/training_cuda.json] [--models-out results/bench_models]

Each model is trained exactly as `snakemake train_<model>` trains it (``cacflow.training.run``), with the config's
hyper-parameters, on ``--device``; ``--max-epochs`` caps the epochs (a timing run; the default runs them all, so the
card's metrics are those of a full run). The regressor and the level model take their heart boxes from the shipped
localizer (``models/localizer``), as the shipped cards do, so their test figures compare with those cards.
Per model: the device, the seconds of the whole run (loading, training, evaluation), the epochs run and the median
seconds per epoch (from the early-stopping history's clock, ``seconds``), the best epoch and the test metrics the
card holds. Reports seconds; compare devices by the ratio of seconds per epoch at the same hyper-parameters.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from cacflow import config as cfg
from cacflow.pipeline.layout import CohortLayout
from cacflow.training import run
from cacflow.training.engine import epoch_seconds
from cacflow.training.regressor import RegressorHyper

ROOT = Path(__file__).resolve().parents[1]
#: the config section of each model's hyper-parameters
SECTIONS = {"localizer": "localizer", "regressor": "regressor", "levels": "calcium_levels",
            "unetpp": "vessel_segmentation", "unet": "unet_comparison", "lstm": "conv_lstm",
            "patch3d": "patch_unet3d"}


def histories(card: dict) -> list[list[dict]]:
    """Every training history in a card (the localizer: one per plane; the regressor: one per stage; a scorer:
    one)."""
    found = []

    def walk(node):
        if isinstance(node, dict):
            if isinstance(node.get("history"), list):
                found.append(node["history"])
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(card.get("training", {}))
    return found


def summarise(card: dict, wall_s: float) -> dict:
    """What the benchmark reports of one run's card."""
    runs = histories(card)
    per_epoch = [s for h in runs for s in epoch_seconds(h)]
    return {"device": card.get("device"), "wall_s": round(wall_s, 1), "training_seconds": card.get("training_seconds"),
            "histories": len(runs), "epochs": [len([e for e in h if e["epoch"] >= 0]) for h in runs],
            "median_epoch_s": round(float(np.median(per_epoch)), 2) if per_epoch else None,
            "test": card.get("metrics", {}).get("test")}


def train_one(model: str, layout: CohortLayout, root: Path, labels: Path, config: dict, out: Path) -> dict:
    """One training run as the workflow's rule runs it; returns the card."""
    localizer = ROOT / "models" / "localizer"
    if model == "localizer":
        return run.train_localizer_run(layout, root, labels, config, out)
    if model == "regressor":
        return run.train_regressor_run(layout, root, labels, config, localizer, out)
    return run.train_segmenter_run(layout, root, labels, config, localizer, model, out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", type=Path, default=ROOT / "config.yaml")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--models", default="localizer,regressor")
    p.add_argument("--max-epochs", type=int, default=0, help="cap on epochs per network (0: the config's)")
    p.add_argument("--models-out", type=Path, default=ROOT / "results" / "bench_models")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stdout)
    config = cfg.load(args.config)
    config["training"]["device"] = args.device
    cohort = config["training"]["cohort"]
    layout = CohortLayout(Path(config["results"]), cohort)
    root, labels = cfg.cohort_root(config, cohort), cfg.cohort_labels(config, cohort)
    if labels is None:
        raise SystemExit(f"cohort {cohort!r} has no reference labels (cohorts.{cohort}.labels): nothing to train on")
    report = {"device": args.device, "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
              "torch": torch.__version__, "threads": torch.get_num_threads(), "max_epochs": args.max_epochs,
              "models": {}}
    out = args.out or ROOT / "benchmarks" / "out" / f"training_{args.device}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    for model in [m for m in args.models.split(",") if m]:
        run_config = copy.deepcopy(config)
        if args.max_epochs:
            section = run_config["training"][SECTIONS[model]]
            if model == "regressor":  # a cap on each stage of the recipe
                stages = section.get("stages") or [asdict(s) for s in RegressorHyper().stages]
                section["stages"] = [{**s, "max_epochs": min(s["max_epochs"], args.max_epochs)} for s in stages]
            else:
                section["max_epochs"] = args.max_epochs
        t0 = time.perf_counter()
        card = train_one(model, layout, root, labels, run_config, args.models_out / model)
        report["models"][model] = summarise(card, time.perf_counter() - t0)
        print(json.dumps({model: report["models"][model]}, default=float), flush=True)
        out.write_text(json.dumps(report, indent=1, default=float))  # after each model: a killed run keeps these
    return 0


if __name__ == "__main__":
    sys.exit(main())
