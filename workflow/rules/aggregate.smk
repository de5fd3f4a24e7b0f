rule aggregate:
    """The cohort's partition of every table (series, scores, vessels, lesions, exclusions) and its summary."""
    input:
        manifest=f"{RESULTS}/{{cohort}}/manifest/series.parquet",
        exclusions=f"{RESULTS}/{{cohort}}/manifest/exclusions.parquet",
        preprocess=shard_outputs("preprocess"),
        score=shard_outputs("score"),
    output:
        **{t: f"{TABLES}/{t}/cohort={{cohort}}/part-0.parquet" for t in TABLE_NAMES},
        summary=f"{RESULTS}/{{cohort}}/summary.txt",
    log:
        "logs/aggregate/{cohort}.log",
    conda:
        "../../envs/cacflow.yaml"
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        tables=lambda wc, output: str(Path(output.series).parents[2]),  # <tables>/series/cohort=<c>/part-0
    script:
        "../scripts/aggregate.py"
