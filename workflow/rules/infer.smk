rule infer:
    """One shard of many scans on a GPU node: heart localizer boxes and regression ConvNet scores (models loaded once)."""
    input:
        preprocess=f"{RESULTS}/{{cohort}}/shards/preprocess/{{shard}}.parquet",
        localizer=f"{MODELS['localizer']}/weights.pt",
        regressor=f"{MODELS['regressor']}/weights.pt",
    output:
        rows=f"{RESULTS}/{{cohort}}/shards/infer/{{shard}}.parquet",
    params:
        localizer=MODELS["localizer"],
        regressor=MODELS["regressor"],
        # rerun triggers: inference settings and the convention (the regressor's zero rule reads it)
        inference=lambda wc: config["inference"],
        convention=lambda wc: config["scoring"]["convention"],
    threads: config["sharding"]["threads"]
    resources:
        gpu=1,
        cpus_per_gpu=config["sharding"]["threads"],
        mem_mb=lambda wc, threads: 4000 + 2000 * threads,
        runtime=120,
    log:
        "logs/infer/{cohort}/{shard}.log",
    benchmark:
        "benchmarks/infer/{cohort}/{shard}.tsv"
    conda:
        "../../envs/cacflow-gpu.yaml"
    script:
        "../scripts/infer.py"
