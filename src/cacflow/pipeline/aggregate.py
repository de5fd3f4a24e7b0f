"""Cohort tables: hive-partitioned Parquet under ``<results>/tables/<table>/cohort=<name>/part-0.parquet``.

Tables (columns in ``docs/outputs.md``):

- ``series``: the discovery manifest (selection decision, acquisition fields) with preprocessing and heart-region QC;
- ``scores``: one row per series x method with Agatston, volume, mass, lesion count, every stratum and a status;
- ``vessels``: per series x method x vessel (methods with vessel labels);
- ``lesions``: per 3-D lesion;
- ``exclusions``: every excluded file or series, with stage, reason code and message.

Rerunning a cohort replaces only its own partition files, each atomically (temporary sibling + rename); other
cohorts' files are not touched. Partition values are strings. Each file's schema metadata holds one JSON
provenance entry under the key ``cacflow`` (format version, cacflow version, config hash, conventions, models).
"""

from __future__ import annotations

import datetime as _dt
import logging
from pathlib import Path

import pandas as pd

from cacflow import __version__
from cacflow.config import section_hash
from cacflow.imaging.heart_region import HEURISTIC_VERSION
from cacflow.io.tables import write_parquet
from cacflow.models.checkpoint import CheckpointError, model_id, read_card
from cacflow.pipeline.layout import CohortLayout
from cacflow.pipeline.schemas import TYPES, coerce_types
from cacflow.pipeline.score import SCORER_VERSION
from cacflow.scoring.agatston import AgatstonConvention
from cacflow.scoring.strata import SCHEMES
from cacflow.scoring.tube_voltage import kvp_note

log = logging.getLogger(__name__)

TABLES: tuple[str, ...] = ("series", "scores", "vessels", "lesions", "exclusions")
#: Version of the table layout; bump when a column changes meaning or type.
TABLES_FORMAT = 1


def table_path(tables_root: Path, table: str, cohort: str) -> Path:
    """The partition file of one cohort in one table."""
    return Path(tables_root) / table / f"cohort={cohort}" / "part-0.parquet"


def provenance(config: dict, cohort: str, table: str, models: dict | None = None) -> dict:
    """The JSON provenance entry written into every table file's schema metadata."""
    convention = AgatstonConvention.from_dict(config["scoring"]["convention"])
    grid_name = config["scoring"]["grid"]
    return {
        "format": f"cacflow.tables/{TABLES_FORMAT}",
        "table": table,
        "cohort": cohort,
        "cacflow_version": __version__,
        "config_hash": section_hash({k: v for k, v in config.items() if k != "cohorts"}, config["cohorts"][cohort]),
        "conventions": {
            "agatston": convention.as_dict(),
            "convention_id": section_hash(convention.as_dict()),
            "grid": {"name": grid_name, **config["resample"]["grids"][grid_name]},
            "strata": {n: {"labels": list(s.labels), "bounds": list(s.bounds),
                           "closed": "right" if s.right_closed else "left"} for n, s in SCHEMES.items()},
        },
        "methods": {"classic_heart_region": {"region": "heuristic", "heuristic_version": HEURISTIC_VERSION,
                                             "scorer_version": SCORER_VERSION},
                    "regression": {"region": "localizer box (heuristic fallback, flagged)",
                                   "models": ["localizer", "regressor"]},
                    "reference": {"labels": "cohort label maps", "scorer_version": SCORER_VERSION},
                    **{name: {"region": "localizer box (heuristic fallback, flagged)", "models": [name],
                              "gate_hu": 130, "scorer_version": SCORER_VERSION}
                       for name in config.get("models", {}).get("segmentation", {})}},
        "models": models or {},
        "created_utc": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }


def _concat(paths: list[Path], table: str) -> pd.DataFrame:
    frames = [pd.read_parquet(p) for p in paths if Path(p).exists()]
    frames = [f for f in frames if len(f)]
    if not frames:
        return coerce_types(table, pd.DataFrame({c: pd.Series(dtype=t) for c, t in TYPES[table].items()}))
    return coerce_types(table, pd.concat(frames, ignore_index=True))


def _strings(frame: pd.DataFrame) -> pd.DataFrame:
    """Object columns of text become pandas ``string`` (Parquet UTF8), so every reader sees one type."""
    out = frame.copy()
    for c in out.columns:
        if out[c].dtype != "string" and (pd.api.types.is_string_dtype(out[c]) or out[c].dtype == object) and \
                out[c].map(lambda v: v is None or (isinstance(v, float) and v != v) or isinstance(v, str)).all():
            out[c] = out[c].astype("string")
    return out


def build_tables(layout: CohortLayout, shards: list[str]) -> dict[str, pd.DataFrame]:
    """The five cohort tables from the manifest, discovery exclusions and every shard's outputs."""
    manifest = pd.read_parquet(layout.manifest)
    pre = [pd.read_parquet(layout.shard_status(s)) for s in shards if layout.shard_status(s).exists()]
    pre = pd.concat([f for f in pre if len(f)], ignore_index=True) if any(len(f) for f in pre) else \
        pd.DataFrame(columns=["series_key", "status", "reason", "message", "n_slices"])
    pre = pre[["series_key", "status", "reason", "message", "n_slices"]].rename(columns={
        "status": "preprocess_status", "reason": "preprocess_reason", "message": "preprocess_message",
        "n_slices": "native_slices"})
    regions = _concat([layout.shard_scores(s, "regions") for s in shards], "regions")
    series = manifest.merge(pre, on="series_key", how="left").merge(regions, on="series_key", how="left")
    series["preprocess_status"] = series["preprocess_status"].fillna("not_selected")
    series["native_slices"] = series["native_slices"].astype("Int64")
    series = series.drop(columns=["shard"], errors="ignore").rename(
        columns={"reason": "selection_reason", "message": "selection_message"})

    scores = _concat([layout.shard_scores(s, "scores") for s in shards], "scores")
    scores = with_tube_voltage(scores, manifest)
    vessels = _concat([layout.shard_scores(s, "vessels") for s in shards], "vessels")
    lesions = _concat([layout.shard_scores(s, "lesions") for s in shards], "lesions")

    disc = pd.read_parquet(layout.discover_exclusions)
    conv = pre[pre["preprocess_status"] == "excluded"][["series_key", "preprocess_reason", "preprocess_message"]]
    conv = conv.rename(columns={"preprocess_reason": "reason", "preprocess_message": "message"}).assign(
        level="series", stage="convert")
    if "series_uid" in manifest.columns:
        conv = conv.merge(manifest[["series_key", "series_uid"]], on="series_key", how="left")
    score_excl = _concat([layout.shard_scores(s, "exclusions") for s in shards], "exclusions")
    exclusions = pd.concat([disc.assign(method=None), conv.assign(method=None), score_excl], ignore_index=True)
    order = ["level", "stage", "method", "series_key", "reason", "message"]
    exclusions = exclusions[[c for c in order if c in exclusions.columns]
                            + [c for c in exclusions.columns if c not in order]]

    tables = {"series": series.sort_values("series_key", kind="stable"),
              "scores": scores.sort_values(["series_key", "method"], kind="stable"),
              "vessels": vessels.sort_values(["series_key", "method", "vessel"], kind="stable"),
              "lesions": lesions.sort_values(["series_key", "method", "lesion_index"], kind="stable"),
              "exclusions": exclusions}
    return {k: ordered_strata(_strings(v.reset_index(drop=True))) for k, v in tables.items()}


def with_tube_voltage(scores: pd.DataFrame, manifest: pd.DataFrame) -> pd.DataFrame:
    """Every score row with its series' tube voltage (``kvp``) and ``kvp_note`` where it is not the 120 kVp the
    Agatston convention is defined at (:mod:`cacflow.scoring.tube_voltage`)."""
    kvp = manifest.set_index("series_key")["kvp"] if "kvp" in manifest.columns else pd.Series(dtype=float)
    out = scores.copy()
    out["kvp"] = out["series_key"].map(kvp).astype("Float64")
    out["kvp_note"] = pd.array([kvp_note(None if pd.isna(v) else float(v)) for v in out["kvp"]], dtype="string")
    return out


def ordered_strata(frame: pd.DataFrame) -> pd.DataFrame:
    """Stratum columns as ordered categories (0 < 1-10 < 11-100 < ...), so they sort by risk, not as text."""
    out = frame
    for name, scheme in SCHEMES.items():
        if name in out.columns:
            out = out.assign(**{name: pd.Categorical(out[name], categories=list(scheme.labels), ordered=True)})
    return out


def write_tables(tables_root: Path, cohort: str, tables: dict[str, pd.DataFrame], config: dict,
                 models: dict | None = None) -> dict[str, Path]:
    """Replace this cohort's partition of each table, atomically per file; other cohorts are untouched."""
    paths = {}
    for name, frame in tables.items():
        paths[name] = write_parquet(frame, table_path(tables_root, name, cohort),
                                    provenance(config, cohort, name, models))
    return paths


def model_provenance(config: dict) -> dict:
    """What the tables' model-based rows came from: each configured model's id, card summary and weights hash."""
    out = {}
    models = dict(config.get("models", {}))
    models.update(models.pop("segmentation", None) or {})
    for name, directory in models.items():
        try:
            card = read_card(Path(directory))
        except CheckpointError:
            continue
        out[name] = {"id": model_id(card), "directory": str(directory), "trained_on": card.get("trained_on"),
                     "data_sha256": card.get("data_sha256"), "weights_sha256": card.get("weights_sha256"),
                     **({"target_transform": card["target_transform"]} if "target_transform" in card else {})}
    return out


def aggregate_cohort(layout: CohortLayout, tables_root: Path, shards: list[str], config: dict) -> dict[str, Path]:
    """Build and write the cohort's tables; returns their paths."""
    tables = build_tables(layout, shards)
    paths = write_tables(tables_root, layout.cohort, tables, config, model_provenance(config))
    log.info("%s: tables written: %s", layout.cohort, {k: len(v) for k, v in tables.items()})
    return paths
