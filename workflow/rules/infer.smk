rule infer:
    """One shard of many scans on a GPU node: heart boxes, regression ConvNet outputs and segmentation scorers' masks
    (models loaded once)."""
    input:
        preprocess=f"{RESULTS}/{{cohort}}/shards/preprocess/{{shard}}.parquet",
        localizer=f"{MODELS['localizer']}/weights.pt",
        regressor=f"{MODELS['regressor']}/weights.pt",
        segmentation=lambda wc: [f"{d}/weights.pt" for d in cohort_segmenters(wc.cohort).values()],
    output:
        rows=f"{RESULTS}/{{cohort}}/shards/infer/{{shard}}.parquet",
    log:
        "logs/infer/{cohort}/{shard}.log",
    benchmark:
        "logs/benchmarks/infer/{cohort}/{shard}.tsv"
    conda:
        "../../envs/cacflow-gpu.yaml"
    threads: config["sharding"]["threads"]
    resources:
        gpu=1,
        cpus_per_gpu=config["sharding"]["threads"],
        mem_mb=lambda wc, threads, attempt: (4000 + 2000 * threads) * attempt,
        runtime=lambda wc, attempt: 120 * attempt,
    params:
        localizer=lambda wc, input: str(Path(input.localizer).parent),
        regressor=lambda wc, input: str(Path(input.regressor).parent),
        segmentation=lambda wc: cohort_segmenters(wc.cohort),
        # rerun trigger: inference settings. Not the scoring convention: the score stage applies it to the
        # regressor's raw per-slice outputs, so a changed convention reruns scoring and aggregation only.
        inference=lambda wc: config["inference"],
    script:
        "../scripts/infer.py"
