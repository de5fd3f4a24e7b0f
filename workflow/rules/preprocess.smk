rule preprocess:
    """One shard of many series: DICOM -> Zarr (HU, geometry) -> resampled scoring grid(s), per-scan status."""
    input:
        unpack(shard_inputs),
    output:
        status=f"{RESULTS}/{{cohort}}/shards/preprocess/{{shard}}.parquet",
    log:
        "logs/preprocess/{cohort}/{shard}.log",
    benchmark:
        "logs/benchmarks/preprocess/{cohort}/{shard}.tsv"
    conda:
        "../../envs/cacflow.yaml"
    threads: config["sharding"]["threads"]
    resources:
        mem_mb=lambda wc, threads, attempt: 3000 * threads * attempt,
        runtime=lambda wc, attempt: 120 * attempt,
        cpus_per_task=config["sharding"]["threads"],
    params:
        root=cohort_root,
    script:
        "../scripts/preprocess.py"
