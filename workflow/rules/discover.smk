checkpoint discover:
    """Header-only inventory of the cohort root, series selection, manifest and shard tables."""
    input:
        discover_input,
    output:
        manifest=f"{RESULTS}/{{cohort}}/manifest/series.parquet",
        exclusions=f"{RESULTS}/{{cohort}}/manifest/exclusions.parquet",
        shards=f"{RESULTS}/{{cohort}}/work/shards.json",
    log:
        "logs/discover/{cohort}.log",
    benchmark:
        "logs/benchmarks/discover/{cohort}.tsv"
    conda:
        "../../envs/cacflow.yaml"
    threads: config["sharding"]["threads"]
    resources:
        mem_mb=lambda wc, attempt: 4000 * attempt,
        runtime=lambda wc, attempt: 60 * attempt,
        cpus_per_task=config["sharding"]["threads"],
    params:
        root=cohort_root,
        root_state=discover_root_state,
        settings=discover_settings,
    script:
        "../scripts/discover.py"
