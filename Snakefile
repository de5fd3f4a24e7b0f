# cacflow — coronary artery calcium scoring for chest CT cohorts.
#
# Data flow, one direction, per cohort (results/<cohort>/...):
#   synth (demo/synthetic cohorts only) -> discover (checkpoint: manifest + shards)
#   -> preprocess (one job per shard: DICOM -> Zarr, resample to the scoring grid)
#   -> infer (one GPU job per shard: heart localizer box, regression ConvNet scores; models loaded once)
#   -> score (one job per shard: classic, regression and reference scores, QC pictures)
#   -> aggregate (one job per cohort: results/tables/<table>/cohort=<name>/part-0.parquet, summary)
#
# Training (models/ ships synthetic-trained weights): snakemake --cores 2 train
#
# Run: snakemake --cores 2            (local)      snakemake --profile profiles/slurm   (cluster)


configfile: "config.yaml"


wildcard_constraints:
    cohort="[A-Za-z][A-Za-z0-9_-]*",
    shard="shard-[0-9]+",


include: "workflow/rules/common.smk"
include: "workflow/rules/synth.smk"
include: "workflow/rules/discover.smk"
include: "workflow/rules/preprocess.smk"
include: "workflow/rules/infer.smk"
include: "workflow/rules/score.smk"
include: "workflow/rules/aggregate.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/train.smk"


# Steps that only gather small tables run in the head process, never as cluster jobs. (evaluate is a job: it reads
# every labelled series' volume and label maps.)
localrules:
    all,
    aggregate,
    evaluate_all,
    train,


rule all:
    default_target: True
    input:
        all_targets,


# The run summary of each cohort the run was asked for, printed when a run succeeds.
onsuccess:
    print_summaries()
