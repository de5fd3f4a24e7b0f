"""Adapter: snakemake checkpoint discover -> cacflow.pipeline.discover.run_discover."""

from pathlib import Path

from cacflow import logs
from cacflow.config import cohort_config
from cacflow.pipeline.discover import run_discover
from cacflow.pipeline.layout import CohortLayout


def main(root: str, results: str, cohort: str, config: dict, threads: int, log_file: str) -> None:
    logs.setup(log_file)
    run_discover(Path(root), CohortLayout(Path(results), cohort), cohort_config(config, cohort), workers=threads)


if "snakemake" in globals():
    main(snakemake.params.root, snakemake.config["results"], snakemake.wildcards.cohort, snakemake.config,
         snakemake.threads, snakemake.log[0])
