# Config validation and input functions only.
import json
from pathlib import Path

from snakemake.utils import min_version

import cacflow.config

min_version("9.0")

# Validates against src/cacflow/schemas/config.schema.json and fills defaults; raises naming the bad key.
config = cacflow.config.validate(config)

RESULTS = config["results"]
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


def shard_statuses(wildcards):
    """Status tables of every shard of a cohort, known once discovery has run."""
    index = checkpoints.discover.get(cohort=wildcards.cohort).output.shards
    shards = json.loads(Path(index).read_text())["shards"]
    return expand(f"{RESULTS}/{{cohort}}/shards/preprocess/{{shard}}.parquet", cohort=wildcards.cohort, shard=shards)


def all_targets():
    return expand(f"{RESULTS}/{{cohort}}/preprocess_status.parquet", cohort=COHORTS)
