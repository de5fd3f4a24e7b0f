rule evaluate:
    """Every method against the cohort's reference rows, the segmentation scorers' maps against the reference
    labels, sharp against soft reconstructions of one study, the localizer against true heart masks: tables, figures."""
    input:
        summary=f"{RESULTS}/{{cohort}}/summary.txt",
        infer=shard_outputs("infer"),
    output:
        agreement=f"{RESULTS}/{{cohort}}/evaluation/agreement.parquet",
        confusion=f"{RESULTS}/{{cohort}}/evaluation/confusion.parquet",
        localizer=f"{RESULTS}/{{cohort}}/evaluation/localizer.parquet",
        segmentation=f"{RESULTS}/{{cohort}}/evaluation/segmentation.parquet",
        kernels=f"{RESULTS}/{{cohort}}/evaluation/kernels.parquet",
    log:
        "logs/evaluate/{cohort}.log",
    benchmark:
        "logs/benchmarks/evaluate/{cohort}.tsv"
    conda:
        "../../envs/cacflow.yaml"
    threads: 2  # volumes are read ahead by two threads while the maps are compared
    resources:
        mem_mb=lambda wc, attempt: 4000 * attempt,
        runtime=lambda wc, attempt: 60 * attempt,
        cpus_per_task=2,
    params:
        root=cohort_root,
        labels=labels_dir,
        tables=TABLES,
    script:
        "../scripts/evaluate.py"


rule evaluate_all:
    """The evaluation of every default cohort that has reference labels."""
    input:
        expand(
            f"{RESULTS}/{{cohort}}/evaluation/agreement.parquet",
            cohort=[c for c in COHORTS if config["cohorts"][c]["default_target"] and labels_of(c)],
        ),
