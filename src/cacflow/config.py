"""Configuration: load, validate against the JSON schema (filling defaults) and turn sections into records."""

from __future__ import annotations

import hashlib
import json
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

import jsonschema
import yaml

if TYPE_CHECKING:  # imported where used: the workflow imports this module while parsing, in every cluster job
    from cacflow.discovery.selection import SelectionRules
    from cacflow.imaging.resample import ZGrid


def schema() -> dict:
    """The configuration JSON schema shipped with the package."""
    return json.loads(resources.files("cacflow").joinpath("schemas/config.schema.json").read_text(encoding="utf-8"))


def _fill_defaults(validator_class):
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema_):
        if isinstance(instance, dict):
            for prop, sub in properties.items():
                if "default" in sub and prop not in instance:
                    instance[prop] = json.loads(json.dumps(sub["default"]))
        yield from validate_properties(validator, properties, instance, schema_)

    return jsonschema.validators.extend(validator_class, {"properties": set_defaults})


def _model_dir(given: str, workflow_dir: Path) -> str:
    """A configured model directory: as given when absolute or present from the working directory, else under
    ``workflow_dir`` (where the shipped ``models/`` lie), so runs from another ``--directory`` still find them."""
    path = Path(given)
    if path.is_absolute() or path.exists():
        return str(path)
    return str(Path(workflow_dir) / path)


def validate(config: dict, workflow_dir: Path | None = None) -> dict:
    """Validate ``config`` in place (defaults filled) and return it; raises ValueError naming the bad key.

    With ``workflow_dir`` (the workflow's folder), model directories that are relative and absent from the working
    directory are resolved under it (:func:`_model_dir`), so every stage and the tables' provenance see one path.
    """
    validator = _fill_defaults(jsonschema.Draft202012Validator)(schema())
    errors = sorted(validator.iter_errors(config), key=lambda e: list(e.absolute_path))
    if errors:
        lines = [f"  {'/'.join(str(p) for p in e.absolute_path) or '<root>'}: {e.message}" for e in errors[:10]]
        raise ValueError("invalid cacflow configuration:\n" + "\n".join(lines))
    # A second pass fills defaults inside objects created by the first (e.g. selection: {} -> its fields).
    for _ in validator.iter_errors(config):
        pass
    for _ in validator.iter_errors(config):
        pass
    grid = config["scoring"]["grid"]
    if grid not in config["resample"]["grids"]:
        raise ValueError(f"invalid cacflow configuration:\n  scoring/grid: {grid!r} is not one of resample/grids "
                         f"{sorted(config['resample']['grids'])}; add it there or pick one of those")
    if workflow_dir is not None:
        models = config["models"]
        config["models"] = {**{k: _model_dir(v, workflow_dir) for k, v in models.items() if k != "segmentation"},
                            "segmentation": {k: _model_dir(v, workflow_dir)
                                             for k, v in sorted(models["segmentation"].items())}}
    for name, cohort in config["cohorts"].items():
        chosen = cohort.get("segmentation")
        unknown_models = sorted(set(chosen or []) - set(config["models"]["segmentation"]))
        if unknown_models:
            raise ValueError(f"invalid cacflow configuration:\n  cohorts/{name}/segmentation: {unknown_models} not "
                             f"in models/segmentation {sorted(config['models']['segmentation'])}; configure the "
                             "model directory there first")
        unknown = sorted(set(cohort.get("selection", {})) - set(config["selection"]))
        if unknown:
            raise ValueError(f"invalid cacflow configuration:\n  cohorts/{name}/selection: unknown keys {unknown}; "
                             f"use keys of the top-level selection section {sorted(config['selection'])}")
    return config


def cohort_config(config: dict, cohort: str) -> dict:
    """The configuration as one cohort sees it: its ``selection`` overrides merged over the top-level rules, its
    ``heart_regions`` table (or None), its ``volumes`` section (or None: DICOM only), and ``models.segmentation``
    narrowed to the scorers the cohort runs (its ``segmentation`` list, if given)."""
    merged = dict(config)
    c = config["cohorts"][cohort]
    merged["selection"] = {**config["selection"], **c.get("selection", {})}
    merged["heart_regions"] = c.get("heart_regions")
    merged["volumes"] = c.get("volumes")
    chosen = c.get("segmentation")
    if chosen is not None and "models" in config:
        models = config["models"]
        merged["models"] = {**models, "segmentation": {k: v for k, v in models.get("segmentation", {}).items()
                                                       if k in chosen}}
    return merged


def cohort_root(config: dict, cohort: str) -> Path:
    """A cohort's DICOM root: its configured ``root``, or the tree its synthetic generator writes
    (``<resources>/synthetic/<cohort>/dicom``)."""
    c = config["cohorts"][cohort]
    return Path(c["root"]) if "root" in c else Path(config["resources"]) / "synthetic" / cohort / "dicom"


def cohort_labels(config: dict, cohort: str) -> Path | None:
    """A cohort's folder of reference label maps: its configured ``labels``, or a synthetic cohort's generated
    ones (``<resources>/synthetic/<cohort>/truth/labels``), or None (no references)."""
    c = config["cohorts"][cohort]
    if c.get("labels"):
        return Path(c["labels"])
    return Path(config["resources"]) / "synthetic" / cohort / "truth" / "labels" if "synthetic" in c else None


def load(path: Path) -> dict:
    """Read a YAML config file and validate it."""
    with open(path, encoding="utf-8") as fh:
        cfg = yaml.safe_load(fh) or {}
    try:
        return validate(cfg)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None


def selection_rules(config: dict) -> SelectionRules:
    """The ``selection`` section as :class:`SelectionRules`."""
    from cacflow.discovery.selection import SelectionRules

    s = dict(config.get("selection", {}))
    kw = {k: v for k, v in s.items() if k in SelectionRules.__dataclass_fields__}
    if "pixel_spacing_range_mm" in kw:
        kw["pixel_spacing_range_mm"] = tuple(kw["pixel_spacing_range_mm"])
    if "kernel_preference" in kw:
        kw["kernel_preference"] = tuple(kw["kernel_preference"])
    return SelectionRules(**kw)


def grids(config: dict) -> dict[str, ZGrid]:
    """Named resampling grids."""
    from cacflow.imaging.resample import ZGrid

    g = config.get("resample", {}).get("grids") or {"scoring": {"thickness_mm": 3.0, "increment_mm": 1.5}}
    return {name: ZGrid(float(v["thickness_mm"]), float(v["increment_mm"])) for name, v in g.items()}


def section_hash(*parts) -> str:
    """A short stable hash of JSON-serialisable config parts (for fingerprints and provenance)."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]
