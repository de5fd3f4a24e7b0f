"""Adapter: snakemake rule infer -> cacflow.pipeline.infer.run_infer_shard."""

from pathlib import Path

from cacflow import logs
from cacflow.pipeline.infer import run_infer_shard
from cacflow.pipeline.layout import CohortLayout


def main(results: str, cohort: str, shard: str, config: dict, localizer: str, regressor: str,
         segmentation: dict[str, str], threads: int, log_file: str) -> None:
    logs.setup(log_file)
    config = {**config, "inference": {**config["inference"], "loader_workers": max(1, threads - 1)}}
    run_infer_shard(CohortLayout(Path(results), cohort), shard, config, Path(localizer), Path(regressor),
                    {k: Path(v) for k, v in segmentation.items()})


if "snakemake" in globals():
    main(snakemake.config["results"], snakemake.wildcards.cohort, snakemake.wildcards.shard, snakemake.config,
         snakemake.params.localizer, snakemake.params.regressor, dict(snakemake.params.segmentation),
         snakemake.threads, snakemake.log[0])
