"""Adapter: snakemake rule evaluate -> cacflow.evaluation.report.evaluate_cohort."""

from pathlib import Path

from cacflow import logs
from cacflow.evaluation.report import evaluate_cohort
from cacflow.pipeline.layout import CohortLayout


def main(results: str, tables: str, cohort: str, root: str, labels: str | None, config: dict,
         infer_files: list[str], out_file: str, log_file: str) -> None:
    logs.setup(log_file)
    shards = sorted(Path(p).stem for p in infer_files)
    evaluate_cohort(CohortLayout(Path(results), cohort), Path(tables), Path(root), Path(labels) if labels else None,
                    config, shards, Path(out_file).parent)


if "snakemake" in globals():
    main(snakemake.config["results"], snakemake.params.tables, snakemake.wildcards.cohort, snakemake.params.root,
         snakemake.params.labels, snakemake.config, list(snakemake.input.infer), snakemake.output.agreement,
         snakemake.log[0])
