rule preprocess:
    """One shard of many series: DICOM -> Zarr (HU, geometry) -> resampled scoring grid(s), per-scan status."""
    input:
        unpack(shard_inputs),
    output:
        status=f"{RESULTS}/{{cohort}}/shards/preprocess/{{shard}}.parquet",
    params:
        root=cohort_root,
    threads: config["sharding"]["threads"]
    resources:
        mem_mb=lambda wc, threads, attempt: 3000 * threads * attempt,
        runtime=lambda wc, attempt: 120 * attempt,
        cpus_per_task=config["sharding"]["threads"],
    log:
        "logs/preprocess/{cohort}/{shard}.log",
    benchmark:
        "benchmarks/preprocess/{cohort}/{shard}.tsv"
    conda:
        "../../envs/cacflow.yaml"
    script:
        "../scripts/preprocess.py"
