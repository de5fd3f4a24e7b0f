rule score:
    """One shard of many series: classic threshold score in the heart box, regression and reference rows, QC pictures."""
    input:
        preprocess=f"{RESULTS}/{{cohort}}/shards/preprocess/{{shard}}.parquet",
        infer=f"{RESULTS}/{{cohort}}/shards/infer/{{shard}}.parquet",
    output:
        **{t: f"{RESULTS}/{{cohort}}/shards/score/{{shard}}/{t}.parquet" for t in SCORE_SHARD_TABLES},
    log:
        "logs/score/{cohort}/{shard}.log",
    benchmark:
        "logs/benchmarks/score/{cohort}/{shard}.tsv"
    conda:
        "../../envs/cacflow.yaml"
    threads: config["sharding"]["threads"]
    resources:
        mem_mb=lambda wc, threads, attempt: 3000 * threads * attempt,
        runtime=lambda wc, attempt: 120 * attempt,
        cpus_per_task=config["sharding"]["threads"],
    params:
        root=cohort_root,
        labels=labels_dir,
        # rerun trigger: a changed convention or grid reruns scoring (and what follows), not preprocessing
        scoring=lambda wc: config["scoring"],
    script:
        "../scripts/score.py"
