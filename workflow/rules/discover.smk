checkpoint discover:
    """Header-only inventory of the cohort root, series selection, manifest and shard tables."""
    input:
        discover_input,
    output:
        manifest=f"{RESULTS}/{{cohort}}/manifest/series.parquet",
        exclusions=f"{RESULTS}/{{cohort}}/manifest/exclusions.parquet",
        shards=f"{RESULTS}/{{cohort}}/work/shards.json",
    params:
        root=cohort_root,
    threads: config["sharding"]["threads"]
    resources:
        mem_mb=4000,
        runtime=60,
        cpus_per_task=config["sharding"]["threads"],
    log:
        "logs/discover/{cohort}.log",
    benchmark:
        "benchmarks/discover/{cohort}.tsv"
    conda:
        "../../envs/cacflow.yaml"
    script:
        "../scripts/discover.py"
