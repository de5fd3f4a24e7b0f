"""The short run summary a user reads at the end of a run (also written to ``<results>/<cohort>/summary.txt``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from cacflow.io.tables import write_text
from cacflow.pipeline.aggregate import table_path
from cacflow.scoring.strata import SCHEMES


def _counts(series: pd.Series) -> str:
    vc = series.value_counts()
    return ", ".join(f"{k} {int(v)}" for k, v in vc.items()) if len(vc) else "none"


def cohort_summary(tables_root: Path, cohort: str) -> str:
    """Scans found, scored, excluded by reason, counts by stratum, how heart boxes were found, and each method's
    agreement with the reference where both exist."""
    read = {t: pd.read_parquet(table_path(tables_root, t, cohort)) for t in ("series", "scores", "exclusions")}
    series, scores, excl = read["series"], read["scores"], read["exclusions"]
    lines = [f"cacflow summary, cohort {cohort}"]
    n_selected = int(series["selected"].sum()) if "selected" in series else 0
    lines.append(f"  series found: {len(series)}; selected for scoring: {n_selected}")
    series_excl = excl[excl["level"] == "series"] if len(excl) else excl
    # one series excluded by several methods (or stages) for one reason counts once
    per_series = series_excl.drop_duplicates(["series_key", "reason"]) if len(series_excl) else series_excl
    n_excl = per_series["series_key"].nunique() if len(per_series) else 0
    lines.append(f"  series excluded: {n_excl}; by reason (a series counts once per reason): "
                 f"{_counts(per_series['reason']) if len(per_series) else 'none'}")
    file_excl = excl[excl["level"] == "file"] if len(excl) else excl
    if len(file_excl):
        lines.append(f"  files excluded, by reason: {_counts(file_excl['reason'])}")
    order = list(SCHEMES["five_class"].labels)
    for method, g in scores.groupby("method", sort=True):
        scored = g[g["status"] == "scored"]
        strata = scored["five_class"].value_counts().reindex(order, fill_value=0)
        lines.append(f"  {method}: scored {len(scored)} of {len(g)}"
                     + (f" (not scored: {_counts(g.loc[g['status'] != 'scored', 'reason'])})" if len(scored) < len(g)
                        else ""))
        lines.append("    five-class strata: " + ", ".join(f"{k}: {int(v)}" for k, v in strata.items()))
    if "second_reader" in scores.columns and scores["second_reader"].notna().any():
        flags = scores.drop_duplicates("series_key")["second_reader"]
        lines.append(f"  second reader (automatic methods one five-class stratum or more apart): "
                     f"{int(flags.fillna(False).sum())} of {int(flags.notna().sum())} series flagged")
    if "heart_box_method" in series.columns and series["heart_box_method"].notna().any():
        lines.append(f"  heart box: {_counts(series['heart_box_method'].dropna())}")
    wide = scores[scores["status"] == "scored"].pivot_table(index="series_key", columns="method", values="agatston",
                                                             aggfunc="first")
    five = SCHEMES["five_class"]
    for method in [m for m in wide.columns if m != "reference"] if "reference" in wide.columns else []:
        both = wide[[method, "reference"]].dropna()
        if len(both):
            c, r = both[method].astype(float), both["reference"].astype(float)
            same = sum(five.index(a) == five.index(b) for a, b in zip(c, r))
            lines.append(f"  {method} vs reference ({len(both)} series): same five-class stratum "
                         f"{same}/{len(both)}; median |difference| {float(np.median(np.abs(c - r))):.1f}; "
                         f"median difference (method - reference) {float(np.median(c - r)):+.1f}")
    return "\n".join(lines) + "\n"


def write_summary(tables_root: Path, cohort: str, path: Path) -> str:
    """Write the summary text atomically and return it."""
    text = cohort_summary(tables_root, cohort)
    write_text(text, path)
    return text
