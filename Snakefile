# cacflow — coronary artery calcium scoring for chest CT cohorts.
#
# Data flow, one direction, per cohort (results/<cohort>/...):
#   synth (demo/synthetic cohorts only) -> discover (checkpoint: manifest + shards)
#   -> preprocess (one job per shard: DICOM -> Zarr, resample to the scoring grid) -> preprocess_status
#
# Run: snakemake --cores 2            (local)      snakemake --profile profiles/slurm   (cluster)

configfile: "config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/synth.smk"
include: "workflow/rules/discover.smk"
include: "workflow/rules/preprocess.smk"


rule all:
    default_target: True
    input:
        all_targets(),
