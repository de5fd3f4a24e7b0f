"""The evaluation target: every method of a cohort against its ``reference`` rows, and the localizer against the
true heart masks, as tables and figures under ``results/<cohort>/evaluation/``.

Outputs:
- ``agreement.parquet``: one row per method and group (all scans; per kernel class, kVp and reference stratum):
  n, ICC and ICC of ln(1 + score), accuracy and linearly weighted kappa per stratum scheme, Bland-Altman on the log
  scale, any-calcium sensitivity and zero-calcium specificity.
- ``confusion.parquet``: method, scheme, reference class, method class, count.
- ``localizer.parquet``: per series with a heart mask: box IoU, heart coverage, localizer status and confidence.
- ``figures/<method>.png``: scatter on log axes, Bland-Altman (log scale) and the five-class confusion matrix.
"""

from __future__ import annotations

import logging
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from cacflow.evaluation.agreement import agreement, agreement_table  # noqa: E402
from cacflow.evaluation.localizer import localizer_metrics  # noqa: E402
from cacflow.imaging.resample import ZGrid, resample_labels  # noqa: E402
from cacflow.io.labels import read_label_map  # noqa: E402
from cacflow.io.tables import write_parquet  # noqa: E402
from cacflow.io.zarr_store import read_geometry  # noqa: E402
from cacflow.pipeline.aggregate import table_path  # noqa: E402
from cacflow.pipeline.layout import CohortLayout  # noqa: E402
from cacflow.scoring.strata import SCHEMES  # noqa: E402
from cacflow.training.data import labelled_series  # noqa: E402

log = logging.getLogger(__name__)

REFERENCE = "reference"


def paired_scores(scores: pd.DataFrame, series: pd.DataFrame) -> pd.DataFrame:
    """Scored rows of every method joined to the same series' reference row, with kernel class and kVp."""
    scored = scores[scores["status"] == "scored"]
    ref = scored[scored["method"] == REFERENCE][["series_key", "agatston"]].rename(
        columns={"agatston": "reference_score"})
    other = scored[scored["method"] != REFERENCE][["series_key", "method", "agatston"]].rename(
        columns={"agatston": "method_score"})
    meta = series[[c for c in ("series_key", "kernel_class", "kvp") if c in series.columns]]
    out = other.merge(ref, on="series_key").merge(meta, on="series_key", how="left")
    out["reference_stratum"] = [SCHEMES["five_class"].label(float(v)) for v in out["reference_score"]]
    for c in ("method_score", "reference_score"):
        out[c] = out[c].astype(float)
    return out


def agreement_frames(paired: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(agreement rows, confusion rows) for every method in ``paired``."""
    rows, conf = [], []
    by = [c for c in ("kernel_class", "kvp", "reference_stratum") if c in paired.columns]
    for method, g in paired.groupby("method", sort=True):
        g = g.assign(kvp=g["kvp"].map(lambda v: f"{float(v):g}")) if "kvp" in g.columns else g
        rows.append(agreement_table(g, by).assign(method=method))
        a = agreement(g["method_score"].to_numpy(), g["reference_score"].to_numpy())
        for scheme, matrix in a["confusion"].items():
            labels = SCHEMES[scheme].labels
            for i, row in enumerate(matrix):
                for j, count in enumerate(row):
                    conf.append({"method": method, "scheme": scheme, "reference": labels[i], "predicted": labels[j],
                                 "count": int(count)})
    agree = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()
    if len(agree):
        agree = agree[["method"] + [c for c in agree.columns if c != "method"]]
    return agree, pd.DataFrame(conf, columns=["method", "scheme", "reference", "predicted", "count"])


def figure(method: str, g: pd.DataFrame, path: Path) -> Path:
    """Scatter (log axes), Bland-Altman of ln(1 + score) and five-class confusion matrix of one method."""
    m, r = g["method_score"].to_numpy(float), g["reference_score"].to_numpy(float)
    fig, ax = plt.subplots(1, 3, figsize=(13, 4.2))
    ax[0].scatter(np.log1p(r), np.log1p(m), s=14)
    hi = float(max(np.log1p(r).max(initial=1), np.log1p(m).max(initial=1))) * 1.05
    ax[0].plot([0, hi], [0, hi], "k--", lw=0.8)
    ax[0].set(xlabel="ln(1 + reference Agatston)", ylabel=f"ln(1 + {method})", title="scores")
    mean, diff = (np.log1p(m) + np.log1p(r)) / 2, np.log1p(m) - np.log1p(r)
    ax[1].scatter(mean, diff, s=14)
    md, sd = float(diff.mean()), float(diff.std(ddof=1)) if len(diff) > 1 else 0.0
    for y, style in ((md, "-"), (md - 1.96 * sd, "--"), (md + 1.96 * sd, "--")):
        ax[1].axhline(y, color="k", ls=style, lw=0.8)
    ax[1].set(xlabel="mean of ln(1 + score)", ylabel="difference (method - reference)",
              title=f"Bland-Altman (log): {md:+.2f} [{md - 1.96 * sd:+.2f}, {md + 1.96 * sd:+.2f}]")
    a = agreement(m, r)
    cm = np.array(a["confusion"]["five_class"])
    ax[2].imshow(cm, cmap="Blues")
    labels = SCHEMES["five_class"].labels
    ax[2].set(xticks=range(len(labels)), yticks=range(len(labels)), xticklabels=labels, yticklabels=labels,
              xlabel=method, ylabel="reference",
              title=f"five-class: acc {a['five_class_accuracy']:.2f}, kappa {a['five_class_kappa']:.2f}")
    for i in range(len(labels)):
        for j in range(len(labels)):
            ax[2].text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=9)
    fig.suptitle(f"{method} vs reference: n = {len(g)}, ICC {a['icc']:.3f}, ICC(log) {a['icc_log']:.3f}")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def localizer_frame(layout: CohortLayout, root: Path, labels_dir: Path | None, grid_name: str, grid: ZGrid,
                    shards: list[str]) -> pd.DataFrame:
    """Per-series localizer box metrics against the true heart masks (``<labels>/heart/<uid>.nii.gz``)."""
    cols = ["series_key", "heart_box_method", "localizer_status", "localizer_confidence", "box_iou", "heart_coverage"]
    if labels_dir is None:
        return pd.DataFrame(columns=cols)
    infer = [pd.read_parquet(layout.shard_infer(s)) for s in shards if layout.shard_infer(s).exists()]
    if not infer:
        return pd.DataFrame(columns=cols)
    rows_by_key = pd.concat(infer, ignore_index=True).set_index("series_key")
    out = []
    for s in labelled_series(layout, root, labels_dir, grid_name, 0, (1.0, 0.0, 0.0)):
        if s.heart_path is None or s.series_key not in rows_by_key.index:
            continue
        r = rows_by_key.loc[s.series_key]
        native = read_geometry(s.native_volume)
        heart = resample_labels(read_label_map(s.heart_path, native), native.z_positions_mm, grid) > 0
        box = None if pd.isna(r["box_z0"]) else tuple(int(r[f"box_{a}{e}"]) for a in "zyx" for e in "01")
        out.append({"series_key": s.series_key, "heart_box_method": r["heart_box_method"],
                    "localizer_status": r["localizer_status"], "localizer_confidence": r["localizer_confidence"],
                    **localizer_metrics(box, heart)})
    return pd.DataFrame(out, columns=cols)


def evaluate_cohort(layout: CohortLayout, tables_root: Path, root: Path, labels_dir: Path | None, config: dict,
                    shards: list[str], out_dir: Path) -> dict[str, Path]:
    """Write the evaluation tables and figures of one cohort; returns their paths."""
    scores = pd.read_parquet(table_path(tables_root, "scores", layout.cohort))
    series = pd.read_parquet(table_path(tables_root, "series", layout.cohort))
    paired = paired_scores(scores, series)
    agree, conf = agreement_frames(paired)
    grid_name = config["scoring"]["grid"]
    g = config["resample"]["grids"][grid_name]
    loc = localizer_frame(layout, root, labels_dir, grid_name, ZGrid(float(g["thickness_mm"]),
                                                                      float(g["increment_mm"])), shards)
    meta = {"cohort": layout.cohort, "reference": REFERENCE, "n_paired": int(len(paired))}
    out = {"agreement": write_parquet(agree, out_dir / "agreement.parquet", meta),
           "confusion": write_parquet(conf, out_dir / "confusion.parquet", meta),
           "localizer": write_parquet(loc, out_dir / "localizer.parquet", meta)}
    for method, grp in paired.groupby("method", sort=True):
        out[f"figure_{method}"] = figure(method, grp, out_dir / "figures" / f"{method}.png")
    log.info("%s: evaluation of %d paired scores, %d localizer rows written to %s", layout.cohort, len(paired),
             len(loc), out_dir)
    return out
