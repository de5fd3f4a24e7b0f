"""The ``cacflow`` command: what is not a workflow step (synthetic data, one-off runs of a stage)."""

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
    from cacflow import config as cfg
    from cacflow.pipeline.layout import CohortLayout

    config = cfg.load(Path(args.config))
    if args.cohort not in config["cohorts"]:
        raise SystemExit(f"cohort {args.cohort!r} is not in {args.config}; known: {sorted(config['cohorts'])}")
    return config, cfg.cohort_root(config, args.cohort), CohortLayout(Path(config["results"]), args.cohort)


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
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logs.setup(level=logging.DEBUG if args.verbose else logging.INFO)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
