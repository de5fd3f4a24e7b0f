"""Adapter: snakemake rule aggregate -> cacflow.pipeline.aggregate.aggregate_cohort and the run summary."""

from pathlib import Path

from cacflow import logs
from cacflow.config import cohort_config
from cacflow.pipeline.aggregate import aggregate_cohort
from cacflow.pipeline.layout import CohortLayout
from cacflow.pipeline.report import write_summary


def main(results: str, tables: str, cohort: str, preprocess_files: list[str], summary: str, config: dict,
         log_file: str) -> None:
    logs.setup(log_file)
    shards = sorted(Path(p).stem for p in preprocess_files)
    layout = CohortLayout(Path(results), cohort)
    aggregate_cohort(layout, Path(tables), shards, cohort_config(config, cohort))
    write_summary(Path(tables), cohort, Path(summary))


if "snakemake" in globals():
    main(snakemake.config["results"], snakemake.params.tables, snakemake.wildcards.cohort,
         list(snakemake.input.preprocess), snakemake.output.summary, snakemake.config, snakemake.log[0])
