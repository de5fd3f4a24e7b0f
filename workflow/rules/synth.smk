rule synth_cohort:
    """Generate a synthetic NLST-style cohort (DICOM tree + ground truth beside it)."""
    output:
        marker=f"{RESOURCES}/synthetic/{{cohort}}/truth/cohort.json",
    log:
        "logs/synth/{cohort}.log",
    benchmark:
        "logs/benchmarks/synth/{cohort}.tsv"
    conda:
        "../../envs/cacflow.yaml"
    threads: config["sharding"]["threads"]
    resources:
        mem_mb=8000,
        runtime=lambda wc, attempt: 120 * attempt,
        cpus_per_task=config["sharding"]["threads"],
    params:
        out=lambda wc: f"{RESOURCES}/synthetic/{wc.cohort}",
        spec=lambda wc: config["cohorts"][wc.cohort]["synthetic"],
    script:
        "../scripts/synth.py"
