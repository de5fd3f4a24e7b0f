"""Adapter: snakemake rules train_localizer / train_regressor / train_segmenter -> cacflow.training.run."""

from pathlib import Path

import torch

from cacflow import logs
from cacflow.pipeline.layout import CohortLayout
from cacflow.training import run


def main(rule: str, root: str, labels: str, results: str, config: dict, out_dir: str, localizer_weights: str | None,
         threads: int, log_file: str, model: str | None = None) -> None:
    logs.setup(log_file)
    torch.set_num_threads(max(1, threads))
    layout = CohortLayout(Path(results), config["training"]["cohort"])
    args = (layout, Path(root), Path(labels), config)
    if rule == "train_localizer":
        run.train_localizer_run(*args, Path(out_dir))
    elif rule == "train_regressor":
        run.train_regressor_run(*args, Path(localizer_weights).parent, Path(out_dir))
    else:
        run.train_segmenter_run(*args, Path(localizer_weights).parent, str(model), Path(out_dir))


if "snakemake" in globals():
    main(snakemake.rule, snakemake.params.root, snakemake.params.labels, snakemake.config["results"],
         snakemake.config, str(Path(snakemake.output.weights).parent), snakemake.input.get("localizer"),
         snakemake.threads, snakemake.log[0], snakemake.wildcards.get("model"))
