"""Adapter: snakemake rules train_localizer / train_regressor / train_vessel / train_levels -> cacflow.training.run."""

from pathlib import Path

import torch

from cacflow import logs
from cacflow.pipeline.layout import CohortLayout
from cacflow.training.run import train_levels_run, train_localizer_run, train_regressor_run, train_vessel_run


def main(rule: str, root: str, labels: str, results: str, config: dict, out_dir: str, localizer_weights: str | None,
         threads: int, log_file: str, arch: str | None = None) -> None:
    logs.setup(log_file)
    torch.set_num_threads(max(1, threads))
    layout = CohortLayout(Path(results), config["training"]["cohort"])
    if rule == "train_localizer":
        train_localizer_run(layout, Path(root), Path(labels), config, Path(out_dir))
    elif rule == "train_levels":
        train_levels_run(layout, Path(root), Path(labels), config, Path(localizer_weights).parent, Path(out_dir))
    elif rule == "train_vessel":
        train_vessel_run(layout, Path(root), Path(labels), config, Path(localizer_weights).parent, str(arch),
                         Path(out_dir))
    else:
        train_regressor_run(layout, Path(root), Path(labels), config, Path(localizer_weights).parent, Path(out_dir))


if "snakemake" in globals():
    main(snakemake.rule, snakemake.params.root, snakemake.params.labels, snakemake.config["results"],
         snakemake.config, str(Path(snakemake.output.weights).parent), snakemake.input.get("localizer"),
         snakemake.threads, snakemake.log[0], snakemake.wildcards.get("arch"))
