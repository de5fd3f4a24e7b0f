"""Adapter: snakemake rule preprocess -> cacflow.pipeline.shard.run_shard."""

from pathlib import Path

from cacflow import logs
from cacflow.pipeline.layout import CohortLayout
from cacflow.pipeline.shard import run_shard, shard_options


def main(root: str, results: str, cohort: str, shard: str, config: dict, threads: int, log_file: str) -> None:
    logs.setup(log_file)
    run_shard(CohortLayout(Path(results), cohort), shard, Path(root), workers=threads, **shard_options(config))


if "snakemake" in globals():
    main(snakemake.params.root, snakemake.config["results"], snakemake.wildcards.cohort, snakemake.wildcards.shard,
         snakemake.config, snakemake.threads, snakemake.log[0])
