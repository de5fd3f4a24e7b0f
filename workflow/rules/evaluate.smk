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
    params:
        root=cohort_root,
        labels=labels_dir,
        tables=TABLES,
    resources:
        mem_mb=4000,
        runtime=30,
    log:
        "logs/evaluate/{cohort}.log",
    conda:
        "../../envs/cacflow.yaml"
    script:
        "../scripts/evaluate.py"


rule evaluate_all:
    """The evaluation of every default cohort that has reference labels."""
    input:
        expand(f"{RESULTS}/{{cohort}}/evaluation/agreement.parquet",
               cohort=[c for c in COHORTS if config["cohorts"][c]["default_target"] and labels_of(c)]),
