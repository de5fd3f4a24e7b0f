# Config validation and input functions only.
import json
from pathlib import Path

from snakemake.utils import min_version

import cacflow.config
from cacflow.discovery.root_state import root_state

min_version("9.0")

# Validates against src/cacflow/schemas/config.schema.json and fills defaults; raises naming the bad key.
config = cacflow.config.validate(config)

RESULTS = config["results"]
TABLES = f"{RESULTS}/tables"
TABLE_NAMES = ["series", "scores", "vessels", "lesions", "exclusions"]
SCORE_SHARD_TABLES = ["scores", "vessels", "lesions", "regions", "exclusions"]
RESOURCES = config["resources"]
COHORTS = sorted(config["cohorts"])
TRAIN_COHORT = config["training"]["cohort"]
TRAIN_OUT = config["training"]["out"]


def model_dir(given):
    """A configured model directory: as given if it exists from the working directory, else relative to the
    workflow (where the shipped models/ lie), so runs from another --directory still find them."""
    path = Path(given)
    if path.is_absolute() or path.exists():
        return str(path)
    return str(Path(workflow.basedir) / path)


MODELS = {name: model_dir(config["models"][name]) for name in ("localizer", "regressor")}
# segmentation scorers: {method name: model directory}; each is a method of the score tables
SEGMENTERS = {name: model_dir(d) for name, d in sorted(config["models"]["segmentation"].items())}
config["models"] = {**MODELS, "segmentation": SEGMENTERS}  # scripts and table provenance see resolved directories
# segmentation scorers the training target can train, by their <training.out> folder name
SEGMENTER_TRAININGS = ["unetpp", "unet", "levels", "lstm", "patch3d"]


wildcard_constraints:
    cohort="[A-Za-z][A-Za-z0-9_-]*",
    shard="shard-[0-9]+",


def is_synthetic(cohort):
    return "synthetic" in config["cohorts"][cohort]


def root_of(cohort):
    """The DICOM root of a cohort: its configured folder, or the generated synthetic tree."""
    return str(cacflow.config.cohort_root(config, cohort))


def cohort_root(wildcards):
    return root_of(wildcards.cohort)


def discover_input(wildcards):
    """Synthetic cohorts depend on their generator's completion marker; real roots are read as they are."""
    if is_synthetic(wildcards.cohort):
        return f"{RESOURCES}/synthetic/{wildcards.cohort}/truth/cohort.json"
    return []


def discover_root_state(wildcards):
    """Rerun trigger of a real root's discovery: a fingerprint of its folder tree (new participants, studies,
    series), so arriving data rerun this cohort's discovery and no other's. Synthetic cohorts have their
    generator's marker as input instead; watch_depth 0 turns watching off."""
    c = config["cohorts"][wildcards.cohort]
    if is_synthetic(wildcards.cohort) or not c["watch_depth"]:
        return "not watched"
    if workflow.remote_exec and "discover" not in {t.rulename for t in workflow.dag_settings.target_jobs}:
        # a cluster job of another rule never reruns discovery: skip the folder walk (seconds at NLST scale)
        return "not evaluated in this job"
    return root_state(c["root"], c["watch_depth"])


def labels_of(cohort):
    """The cohort's folder of reference label maps: configured, or a synthetic cohort's generated labels, or None."""
    labels = cacflow.config.cohort_labels(config, cohort)
    return None if labels is None else str(labels)


def labels_dir(wildcards):
    return labels_of(wildcards.cohort)


def cohort_shards(cohort):
    """Shard ids of a cohort, known once its discovery checkpoint has run."""
    index = checkpoints.discover.get(cohort=cohort).output.shards
    return json.loads(Path(index).read_text())["shards"]


def stage_outputs(stage, cohort):
    """Every shard's output of a stage ('preprocess' status table, 'infer' rows or 'score' tables) of a cohort."""
    shards = cohort_shards(cohort)
    if stage == "score":
        return expand(f"{RESULTS}/{cohort}/shards/score/{{shard}}/{{table}}.parquet", shard=shards,
                      table=SCORE_SHARD_TABLES)
    return expand(f"{RESULTS}/{cohort}/shards/{stage}/{{shard}}.parquet", shard=shards)


def shard_outputs(stage):
    """Input function: every shard's output of a stage of the wildcard cohort."""
    return lambda wildcards: stage_outputs(stage, wildcards.cohort)


def training_inputs(wildcards):
    """The training cohort's preprocessed shards (the labelled volumes the train rules read)."""
    if TRAIN_COHORT not in config["cohorts"]:
        raise ValueError(f"training/cohort: {TRAIN_COHORT!r} is not a cohort of this config; add it under cohorts")
    return stage_outputs("preprocess", TRAIN_COHORT)


def regressor_start(wildcards):
    """The checkpoint a regressor run starts from (training.regressor.init_from), or nothing from scratch."""
    start = config["training"]["regressor"].get("init_from", "")
    return [f"{start}/weights.pt"] if start else []


def all_targets():
    """Every cohort's summary, except cohorts marked default_target: false (training cohorts)."""
    return expand(f"{RESULTS}/{{cohort}}/summary.txt",
                  cohort=[c for c in COHORTS if config["cohorts"][c]["default_target"]])


def print_summaries():
    """Print each cohort's run summary (called when a run succeeds)."""
    for cohort in COHORTS:
        path = Path(RESULTS) / cohort / "summary.txt"
        if path.exists():
            print(path.read_text(), end="")
