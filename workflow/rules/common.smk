# Config validation and input functions only.
import json
from pathlib import Path

from snakemake.utils import min_version

import cacflow.config

min_version("9.0")

# Validates against src/cacflow/schemas/config.schema.json and fills defaults; raises naming the bad key.
config = cacflow.config.validate(config)

RESULTS = config["results"]
TABLES = f"{RESULTS}/tables"
TABLE_NAMES = ["series", "scores", "vessels", "lesions", "exclusions"]
SCORE_SHARD_TABLES = ["scores", "vessels", "lesions", "regions", "exclusions"]
RESOURCES = config["resources"]
COHORTS = sorted(config["cohorts"])


wildcard_constraints:
    cohort="[A-Za-z][A-Za-z0-9_-]*",
    shard="shard-[0-9]+",


def is_synthetic(cohort):
    return "synthetic" in config["cohorts"][cohort]


def cohort_root(wildcards):
    """The DICOM root of a cohort: its configured folder, or the generated synthetic tree."""
    c = config["cohorts"][wildcards.cohort]
    return c["root"] if "root" in c else f"{RESOURCES}/synthetic/{wildcards.cohort}/dicom"


def discover_input(wildcards):
    """Synthetic cohorts depend on their generator's completion marker; real roots are read as they are."""
    if is_synthetic(wildcards.cohort):
        return f"{RESOURCES}/synthetic/{wildcards.cohort}/truth/cohort.json"
    return []


def labels_dir(wildcards):
    """The cohort's folder of reference label maps: configured, or a synthetic cohort's generated labels, or None."""
    c = config["cohorts"][wildcards.cohort]
    if c.get("labels"):
        return c["labels"]
    return f"{RESOURCES}/synthetic/{wildcards.cohort}/truth/labels" if is_synthetic(wildcards.cohort) else None


def cohort_shards(cohort):
    """Shard ids of a cohort, known once its discovery checkpoint has run."""
    index = checkpoints.discover.get(cohort=cohort).output.shards
    return json.loads(Path(index).read_text())["shards"]


def shard_outputs(stage):
    """Input function: every shard's output of a stage ('preprocess' status table or 'score' tables)."""

    def inputs(wildcards):
        shards = cohort_shards(wildcards.cohort)
        if stage == "preprocess":
            return expand(f"{RESULTS}/{{cohort}}/shards/preprocess/{{shard}}.parquet", cohort=wildcards.cohort,
                          shard=shards)
        return expand(f"{RESULTS}/{{cohort}}/shards/score/{{shard}}/{{table}}.parquet", cohort=wildcards.cohort,
                      shard=shards, table=SCORE_SHARD_TABLES)

    return inputs


def all_targets():
    return expand(f"{RESULTS}/{{cohort}}/summary.txt", cohort=COHORTS)


def print_summaries():
    """Print each cohort's run summary (called when a run succeeds)."""
    for cohort in COHORTS:
        path = Path(RESULTS) / cohort / "summary.txt"
        if path.exists():
            print(path.read_text(), end="")
