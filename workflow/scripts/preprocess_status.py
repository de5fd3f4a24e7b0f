"""Adapter: snakemake rule preprocess_status -> cacflow.pipeline.summary.summarise_cohort."""

from pathlib import Path

from cacflow import logs
from cacflow.pipeline.layout import CohortLayout
from cacflow.pipeline.summary import summarise_cohort


def main(results: str, cohort: str, shard_files: list[str], log_file: str) -> None:
    logs.setup(log_file)
    summarise_cohort(CohortLayout(Path(results), cohort), [Path(p) for p in shard_files])


if "snakemake" in globals():
    main(snakemake.config["results"], snakemake.wildcards.cohort, list(snakemake.input.shards), snakemake.log[0])
