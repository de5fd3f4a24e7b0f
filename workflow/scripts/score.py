"""Adapter: snakemake rule score -> cacflow.pipeline.score.run_score_shard."""

from pathlib import Path

from cacflow import logs
from cacflow.config import cohort_config
from cacflow.pipeline.layout import CohortLayout
from cacflow.pipeline.score import run_score_shard


def main(root: str, labels: str | None, results: str, cohort: str, shard: str, config: dict, threads: int,
         log_file: str) -> None:
    logs.setup(log_file)
    run_score_shard(CohortLayout(Path(results), cohort), shard, Path(root), cohort_config(config, cohort),
                    labels_dir=Path(labels) if labels else None, workers=threads)


if "snakemake" in globals():
    main(snakemake.params.root, snakemake.params.labels, snakemake.config["results"], snakemake.wildcards.cohort,
         snakemake.wildcards.shard, snakemake.config, snakemake.threads, snakemake.log[0])
