"""The ``cacflow`` command: what is not a workflow step (synthetic data, one-off runs of a stage, maintenance runs on
a trained checkpoint)."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from cacflow import __version__, logs


def _synth(args: argparse.Namespace) -> int:
    from cacflow.synth.cohort import generate_cohort

    summary = generate_cohort(Path(args.out), n=args.n, seed=args.seed, small=args.small, workers=args.workers,
                              anatomy=args.anatomy)
    print(json.dumps(summary, indent=1, default=str))
    return 0


def _load(args: argparse.Namespace):
    """The config, the DICOM root and the layout of ``args.cohort`` (None: the config's ``training.cohort``)."""
    from cacflow import config as cfg
    from cacflow.pipeline.layout import CohortLayout

    config = cfg.load(Path(args.config))
    cohort = args.cohort or config["training"]["cohort"]
    if cohort not in config["cohorts"]:
        raise SystemExit(f"cohort {cohort!r} is not in {args.config}; known: {sorted(config['cohorts'])}")
    return config, cfg.cohort_root(config, cohort), CohortLayout(Path(config["results"]), cohort)


def _discover(args: argparse.Namespace) -> int:
    from cacflow.config import cohort_config
    from cacflow.pipeline.discover import run_discover

    config, root, layout = _load(args)
    # the cohort's own selection rules over the top-level ones, as the workflow's discover step applies them
    print(json.dumps(run_discover(root, layout, cohort_config(config, args.cohort), workers=args.workers)))
    return 0


def _preprocess(args: argparse.Namespace) -> int:
    from cacflow.pipeline.shard import run_shard, shard_options

    config, root, layout = _load(args)
    shards = args.shard or json.loads(layout.shard_index.read_text())["shards"]
    for shard in shards:
        frame = run_shard(layout, shard, root, workers=args.workers, **shard_options(config))
        print(shard, frame["status"].value_counts().to_dict() if len(frame) else {})
    return 0


def _maintenance(args: argparse.Namespace) -> int:
    """Run ``args.maintenance_run`` of :mod:`cacflow.training.maintenance` on the checkpoint in ``args.model_dir``
    with the labelled cohort it was trained on; print the checkpoint's kind and new test metrics."""
    from cacflow.config import cohort_labels
    from cacflow.training import maintenance

    config, root, layout = _load(args)
    labels = cohort_labels(config, layout.cohort)
    if labels is None:
        raise SystemExit(f"cohort {layout.cohort!r} has no reference labels (cohorts.{layout.cohort}.labels): "
                         "a maintenance run needs the labelled cohort the model was trained on")
    run = getattr(maintenance, args.maintenance_run)
    card = run(layout, root, labels, config, Path(args.localizer), Path(args.model_dir))
    print(json.dumps({"model_dir": args.model_dir, "kind": card.get("kind"), "test": card["metrics"]["test"]},
                     default=str))
    return 0


#: The maintenance subcommands (runs on a trained checkpoint): name -> (its run in
#: :mod:`cacflow.training.maintenance`, one-line help, what it does).
MAINTENANCE_COMMANDS = {
    "refit-vessel-postprocessing": (
        "refit_vessel_postprocessing_run",
        "fit a trained vessel segmenter's prior, lesion filter and calcium probability, re-evaluate it",
        "Fit the vessel prior, the lesion filter and the calcium probability of a trained vessel segmenter "
        "(unetpp, unet; settings: the config's training.vessel_segmentation, or training.unet_comparison for a "
        "plain U-Net, over the card's) on its training split, "
        "the filter's threshold and the probability chosen on its validation split; store them in the checkpoint "
        "and re-evaluate its validation and test scans. The network's weights and training record are kept; the "
        "card's metrics, method, vessel_prior, lesion_filter and calcium_probability are replaced and marked "
        "fitted_after_training. For a checkpoint trained before these steps existed."),
    "refit-level-filter": (
        "refit_level_filter_run",
        "fit a trained level model's lesion filter, re-evaluate it",
        "Fit the lesion filter of a trained calcification level model (levels; "
        "training.calcium_levels.lesion_filter_k over the card's) on its training pairs, the threshold chosen on "
        "its validation pairs; store it in the checkpoint and re-evaluate its validation and test pairs. The "
        "network's weights and training record are kept; the card's metrics, method and lesion_filter are replaced "
        "and marked fitted_after_training."),
    "reevaluate": (
        "reevaluate_run",
        "re-evaluate a trained scorer on another localizer's heart boxes",
        "Re-evaluate a trained regressor or segmentation scorer on the validation and test scans cropped to the "
        "heart boxes of the localizer given by --localizer, refitting nothing (run it for each scorer after "
        "retraining the localizer). The weights are left as they are; the card's metrics, per-scan test rows and "
        "localizer are replaced, and its reevaluated.previous keeps the old localizer and test metrics."),
}


def _add_maintenance(sub: argparse._SubParsersAction) -> None:
    """The maintenance subcommands of :data:`MAINTENANCE_COMMANDS`, with the options every run takes."""
    for name, (run, short, text) in MAINTENANCE_COMMANDS.items():
        s = sub.add_parser(name, help=short, description=text + " Needs the cohort discovered and preprocessed, as "
                           "for training (snakemake train does it).")
        s.add_argument("model_dir", metavar="MODEL_DIR",
                       help="the trained checkpoint's folder (weights.pt, model_card.json), rewritten in place: "
                            "copy it first to keep the original")
        s.add_argument("--localizer", required=True, metavar="DIR",
                       help="the heart localizer's folder whose boxes crop the scans, e.g. models/localizer")
        s.add_argument("--config", default="config.yaml",
                       help="config file: cohorts, results folder, scoring grid and convention, training settings "
                            "(split, device, the model's section) (default: config.yaml)")
        s.add_argument("--cohort", help="the labelled cohort the model was trained on, read from the results folder "
                                        "(preprocessed volumes) and its labels (default: the config's "
                                        "training.cohort); refused when its data or split differ from the card's")
        s.set_defaults(func=_maintenance, maintenance_run=run)


def _validate(args: argparse.Namespace) -> int:
    from cacflow import config as cfg

    cfg.load(Path(args.config))
    print(f"{args.config}: valid")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cacflow", description=__doc__)
    p.add_argument("--version", action="version", version=f"cacflow {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("synth", help="write a synthetic NLST-style DICOM cohort with ground truth")
    s.add_argument("--out", required=True, help="output folder (dicom/ and truth/ are written inside)")
    s.add_argument("--n", type=int, default=6, help="participants")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--small", action="store_true", help="smaller images for fast tests")
    s.add_argument("--anatomy", type=int, choices=(1, 2), default=1,
                   help="coronary anatomy version of the phantom (cacflow.synth.anatomy.ANATOMY_VERSIONS; default 1)")
    s.add_argument("--workers", type=int, default=1)
    s.set_defaults(func=_synth)

    for name, func, text in (("discover", _discover, "inventory a cohort root and select series"),
                             ("preprocess", _preprocess, "convert and resample the shards of a cohort")):
        s = sub.add_parser(name, help=text)
        s.add_argument("--config", default="config.yaml")
        s.add_argument("--cohort", required=True)
        s.add_argument("--workers", type=int, default=1)
        if name == "preprocess":
            s.add_argument("--shard", action="append", help="shard id (repeatable); default: all")
        s.set_defaults(func=func)

    s = sub.add_parser("validate-config", help="check a config file against the schema")
    s.add_argument("config")
    s.set_defaults(func=_validate)

    _add_maintenance(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logs.setup(level=logging.DEBUG if args.verbose else logging.INFO)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
