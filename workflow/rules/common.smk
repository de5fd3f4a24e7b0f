# Config validation and input functions only.
import json
import sys
from pathlib import Path

from snakemake.utils import min_version

import cacflow.config
from cacflow.discovery.root_state import root_state
from cacflow.pipeline.layout import CohortLayout

min_version("9.0")

# Validates against src/cacflow/schemas/config.schema.json, fills defaults and resolves model directories;
# raises naming the bad key.
config = cacflow.config.validate(config, workflow_dir=Path(workflow.basedir))

RESULTS = config["results"]
TABLES = f"{RESULTS}/tables"
TABLE_NAMES = ["series", "scores", "vessels", "lesions", "exclusions"]
SCORE_SHARD_TABLES = ["scores", "vessels", "lesions", "regions", "exclusions"]
RESOURCES = config["resources"]
COHORTS = sorted(config["cohorts"])
TRAIN_COHORT = config["training"]["cohort"]
TRAIN_OUT = config["training"]["out"]


# model directories, resolved by validation (relative ones under the workflow's folder when absent here)
MODELS = {name: config["models"][name] for name in ("localizer", "regressor")}
# segmentation scorers: {method name: model directory}; each is a method of the score tables
SEGMENTERS = dict(config["models"]["segmentation"])


def cohort_segmenters(cohort):
    """{method: model directory} of the segmentation scorers a cohort runs (cohorts.<name>.segmentation, default
    every configured one), so turning one on for a cohort reruns that cohort's inference only."""
    return cacflow.config.cohort_config(config, cohort)["models"]["segmentation"]


# segmentation scorers the training target can train, by their <training.out> folder name
SEGMENTER_TRAININGS = ["unetpp", "unet", "levels", "lstm", "patch3d"]


def is_synthetic(cohort):
    return "synthetic" in config["cohorts"][cohort]


def root_of(cohort):
    """The DICOM root of a cohort: its configured folder, or the generated synthetic tree."""
    return str(cacflow.config.cohort_root(config, cohort))


def cohort_root(wildcards):
    return root_of(wildcards.cohort)


def discover_input(wildcards):
    """Synthetic cohorts depend on their generator's completion marker (real roots are read as they are), and a
    cohort with user-supplied heart regions on that table, so editing it reruns the cohort's discovery."""
    c = config["cohorts"][wildcards.cohort]
    inputs = [f"{RESOURCES}/synthetic/{wildcards.cohort}/truth/cohort.json"] if is_synthetic(wildcards.cohort) else []
    return inputs + ([c["heart_regions"]] if c.get("heart_regions") else [])


def discover_root_state(wildcards):
    """Rerun trigger of a real root's discovery: a fingerprint of its folder tree (new participants, studies,
    series), so arriving data rerun this cohort's discovery and no other's. Synthetic cohorts have their
    generator's marker as input instead; watch_depth 0 turns watching off."""
    c = config["cohorts"][wildcards.cohort]
    if is_synthetic(wildcards.cohort) or not c["watch_depth"]:
        return "not watched"
    if workflow.remote_exec and "discover" not in {t.rulename for t in workflow.dag_settings.target_jobs}:
        # a cluster job running something else never reruns discovery: skip the folder walk (seconds at NLST scale)
        return "not evaluated in this job"
    return root_state(c["root"], c["watch_depth"])


def discover_settings(wildcards):
    """Rerun trigger of a cohort's discovery: the settings it applies (the cohort's selection rules, shard size,
    allowed identifying fields, volume-file defaults), so a changed rule re-selects that cohort's series."""
    c = cacflow.config.cohort_config(config, wildcards.cohort)
    settings = {
        "selection": c["selection"],
        "shard_size": config["sharding"]["shard_size"],
        "allowed_fields": config["privacy"]["allowed_fields"],
    }
    if c["volumes"] is not None:  # only then: DICOM cohorts keep their settings (and are not rediscovered)
        settings["volumes"] = c["volumes"]
    return settings


_MISSING = {}  # (cohort, shard index mtime) -> {shard: missing outputs}: checked once per cohort per DAG build


def shard_inputs(wildcards):
    """Inputs of a shard's first job: its task table, which discovery rewrites only when the shard's series or their
    files change, and its repair record, which is rewritten here when outputs of the shard's last run have gone
    missing (a deleted volume, QC picture or shard table), so the plain command rebuilds them. Cluster jobs skip the
    check (the head process did it), and so skip importing it (pandas, pyarrow) while they parse the workflow."""
    from cacflow.pipeline.completeness import ensure_repair_record, missing_outputs, request_repair

    layout = CohortLayout(Path(RESULTS), wildcards.cohort)
    if not workflow.remote_exec:
        key = (wildcards.cohort, layout.shard_index.stat().st_mtime_ns)
        if key not in _MISSING:
            grid_names = sorted(cacflow.config.grids(config))
            _MISSING[key] = missing_outputs(layout, cohort_shards(wildcards.cohort), grid_names)
        missing = _MISSING[key].get(wildcards.shard)
        if missing:
            request_repair(layout, wildcards.shard, missing)
            _MISSING[key].pop(wildcards.shard)
            print(
                f"cacflow: {wildcards.cohort} {wildcards.shard}: {len(missing)} output(s) missing "
                f"(e.g. {missing[0]}): its jobs rerun and rebuild them",
                file=sys.stderr,
            )
    return {
        "tasks": str(layout.shard_tasks(wildcards.shard)),
        "repair": str(ensure_repair_record(layout, wildcards.shard)),
    }


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
        return expand(
            f"{RESULTS}/{cohort}/shards/score/{{shard}}/{{table}}.parquet", shard=shards, table=SCORE_SHARD_TABLES
        )
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


def all_targets(wildcards=None):
    """Every cohort's summary and table partitions, except cohorts marked default_target: false (training cohorts).
    The partitions are named so that a deleted one is rebuilt by the plain command. Says where the summaries are
    (also when there is nothing to do, when Snakemake runs no hook)."""
    cohorts = [c for c in COHORTS if config["cohorts"][c]["default_target"]]
    summaries = expand(f"{RESULTS}/{{cohort}}/summary.txt", cohort=cohorts)
    if not workflow.remote_exec and summaries:
        print(f"cacflow: run summaries: {', '.join(summaries)}; tables under {TABLES}/", file=sys.stderr)
    return summaries + expand(f"{TABLES}/{{table}}/cohort={{cohort}}/part-0.parquet", table=TABLE_NAMES, cohort=cohorts)


def targeted_cohorts():
    """The cohorts this run was asked for: the default target's cohorts, or those a named target file belongs to."""
    targets = set(workflow.dag_settings.targets) or {"all"}
    results = Path(RESULTS).as_posix().strip("./")
    chosen = []
    for c in COHORTS:
        if "all" in targets and config["cohorts"][c]["default_target"]:
            chosen.append(c)
        elif any(f"{results}/{c}/" in Path(t).as_posix() or f"cohort={c}/" in t for t in targets):
            chosen.append(c)
    return chosen


def print_summaries():
    """Print the run summary of each cohort this run was asked for (called when a run succeeds)."""
    for cohort in targeted_cohorts():
        path = Path(RESULTS) / cohort / "summary.txt"
        if path.exists():
            print(path.read_text(), end="")
            print(f"  (written to {path})")
