"""The evaluation target: every method of a cohort against its ``reference`` rows, and the localizer against the
true heart masks, as tables and figures under ``results/<cohort>/evaluation/``.

Outputs:
- ``agreement.parquet``: one row per method and group (all scans; per kernel class, kVp and reference stratum):
  n, ICC and ICC of ln(1 + score), accuracy and linearly weighted kappa per stratum scheme, Bland-Altman on the log
  scale, any-calcium sensitivity and zero-calcium specificity.
- ``confusion.parquet``: method, scheme, reference class, method class, count.
- ``localizer.parquet``: per series with a heart mask: box IoU, heart coverage, localizer status and confidence.
- ``segmentation.parquet``: each segmentation scorer's stored map against the reference labels, pooled over the
  labelled series and per kernel class: calcium Dice, vessel Dice (vessel-aware kinds), lesion detection rate and
  reference lesion count per vessel (seed 001's measures; level maps are judged in ``kernels.parquet``).
- ``kernels.parquet``: where a study holds one soft and one sharp reconstruction (the same acquisition read with two
  kernels), each method's score of the sharp series against the soft series' reference (seed 000's measure of
  kernel robustness: the soft kernel's score is the one to reproduce) and against the same method's score of the
  soft series (does the method give one answer per acquisition?). One row per method and comparison.
- ``figures/<method>.png``: scatter on log axes, Bland-Altman (log scale) and the five-class confusion matrix.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from cacflow.evaluation.agreement import agreement, agreement_table  # noqa: E402
from cacflow.evaluation.localizer import localizer_metrics  # noqa: E402
from cacflow.evaluation.segmentation import SegmentationCounts, stored_mask_counts  # noqa: E402
from cacflow.imaging.resample import ZGrid, resample_labels  # noqa: E402
from cacflow.io.labels import read_label_map  # noqa: E402
from cacflow.io.sparse_mask import decode_mask  # noqa: E402
from cacflow.io.tables import write_parquet  # noqa: E402
from cacflow.io.zarr_store import read_geometry  # noqa: E402
from cacflow.pipeline.aggregate import table_path  # noqa: E402
from cacflow.pipeline.box_columns import box_from_row  # noqa: E402
from cacflow.pipeline.labelled import labelled_series, load_many  # noqa: E402
from cacflow.pipeline.layout import CohortLayout  # noqa: E402
from cacflow.scoring.agatston import AgatstonConvention  # noqa: E402
from cacflow.scoring.masks import VESSEL_KINDS  # noqa: E402
from cacflow.scoring.scan import VESSELS  # noqa: E402
from cacflow.scoring.strata import SCHEMES  # noqa: E402

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
        rows.append(agreement_table(g, by, intervals=True).assign(method=method))
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


KERNEL_COMPARISONS = {
    "sharp_vs_soft_reference": "the method on the sharp series against the soft series' reference",
    "sharp_vs_soft_same_method": "the method on the sharp series against the same method on the soft series",
}


def kernel_pairs(series: pd.DataFrame) -> pd.DataFrame:
    """The studies with exactly one soft and one sharp series: columns study_key, soft_key, sharp_key, kvp.

    Two reconstructions of one study are taken to be one acquisition read with two kernels (as NLST and the
    synthetic generator write them). A study with two or more series of one kernel class is left out: which pair
    belongs together is not known from the tables."""
    cols = ["study_key", "soft_key", "sharp_key", "kvp"]
    if not {"study_key", "kernel_class"} <= set(series.columns):
        return pd.DataFrame(columns=cols)
    s = series[series["kernel_class"].isin(["soft", "sharp"])]
    out = []
    for study, g in s.groupby("study_key", sort=True):
        soft, sharp = g[g["kernel_class"] == "soft"], g[g["kernel_class"] == "sharp"]
        if len(soft) == 1 and len(sharp) == 1:
            out.append({"study_key": study, "soft_key": soft["series_key"].iloc[0],
                        "sharp_key": sharp["series_key"].iloc[0],
                        "kvp": sharp["kvp"].iloc[0] if "kvp" in sharp.columns else None})
    return pd.DataFrame(out, columns=cols)


def kernel_agreement(scores: pd.DataFrame, pairs: pd.DataFrame) -> pd.DataFrame:
    """Agreement rows of every method's sharp-series score against the soft series of the same study
    (:data:`KERNEL_COMPARISONS`; :func:`cacflow.evaluation.agreement.agreement_table`, grouped by kVp and by the
    soft reference's five-class stratum); ``pairs`` from :func:`kernel_pairs`. Only pairs where both series were
    scored by the method count."""
    scored = scores[scores["status"] == "scored"].set_index(["series_key", "method"])["agatston"].astype(float)
    rows = []
    for method in sorted(set(scores.loc[scores["method"] != REFERENCE, "method"])):
        frame = []
        for p in pairs.itertuples(index=False):
            sharp, soft = scored.get((p.sharp_key, method)), scored.get((p.soft_key, method))
            ref = scored.get((p.soft_key, REFERENCE))
            if sharp is None or soft is None or ref is None:
                continue
            frame.append({"study_key": p.study_key, "kvp": f"{float(p.kvp):g}" if pd.notna(p.kvp) else "unknown",
                          "reference_stratum": SCHEMES["five_class"].label(float(ref)), "sharp": sharp,
                          "soft": soft, "soft_reference": ref})
        if not frame:
            continue
        f = pd.DataFrame(frame)
        for comparison, other in (("sharp_vs_soft_reference", "soft_reference"), ("sharp_vs_soft_same_method", "soft")):
            g = f.assign(method_score=f["sharp"], reference_score=f[other])
            rows.append(agreement_table(g, ["kvp", "reference_stratum"], intervals=True)
                        .assign(method=method, comparison=comparison))
    if not rows:
        return pd.DataFrame(columns=["method", "comparison", "group", "value", "n"])
    out = pd.concat(rows, ignore_index=True)
    return out[["method", "comparison"] + [c for c in out.columns if c not in ("method", "comparison")]]


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


def _infer_rows(layout: CohortLayout, shards: list[str]) -> pd.DataFrame | None:
    """The cohort's inference rows indexed by series key (None when no shard was inferred)."""
    infer = [pd.read_parquet(layout.shard_infer(s)) for s in shards if layout.shard_infer(s).exists()]
    return pd.concat(infer, ignore_index=True).set_index("series_key") if infer else None


SEGMENTATION_COLUMNS = (["method", "kind", "group", "value", "n", "calcium_dice", "vessel_dice"]
                        + [f"detection_{v}" for v in VESSELS.values()] + [f"lesions_{v}" for v in VESSELS.values()])
LOCALIZER_COLUMNS = ["series_key", "heart_box_method", "localizer_status", "localizer_confidence", "box_iou",
                     "heart_coverage"]


def _localizer_row(series_key: str, row: pd.Series, heart: np.ndarray) -> dict:
    """One series' localizer box metrics against its true heart mask (bool (z, y, x) on the scoring grid)."""
    box = box_from_row(row)
    return {"series_key": series_key, "heart_box_method": row["heart_box_method"],
            "localizer_status": row["localizer_status"], "localizer_confidence": row["localizer_confidence"],
            **localizer_metrics(box, heart)}


def _segmentation_rows(counts: dict[tuple[str, str, str], SegmentationCounts], n_series: dict, kinds: dict
                       ) -> pd.DataFrame:
    out = []
    for key, c in sorted(counts.items()):
        method, group, value = key
        det = c.detection_rate()
        out.append({"method": method, "kind": kinds[method], "group": group, "value": value, "n": n_series[key],
                    "calcium_dice": c.dice, "vessel_dice": c.vessel_dice if kinds[method] in VESSEL_KINDS else None,
                    **{f"detection_{v}": det[v] for v in VESSELS.values()},
                    **{f"lesions_{v}": c.lesions[v] for v in VESSELS.values()}})
    return pd.DataFrame(out, columns=SEGMENTATION_COLUMNS)


def labelled_frames(layout: CohortLayout, root: Path, labels_dir: Path | None, grid_name: str, grid: ZGrid,
                    convention: AgatstonConvention, shards: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(localizer rows, segmentation rows) of the cohort's labelled series, in one pass over them.

    Localizer: per series with a true heart mask (``<labels>/heart/<uid>.nii.gz``), box IoU and heart coverage.
    Segmentation: each segmentation scorer's stored map against the reference labels (seed 001's measures, pooled
    over the series and per kernel class): calcium and vessel Dice, lesion detection rate per vessel
    (:func:`cacflow.evaluation.segmentation.stored_mask_counts`; level maps are not judged here). A series' volume
    is read only when it has stored maps; its heart mask is then taken from the same read."""
    rows_by_key = _infer_rows(layout, shards)
    if labels_dir is None or rows_by_key is None:
        return pd.DataFrame(columns=LOCALIZER_COLUMNS), pd.DataFrame(columns=SEGMENTATION_COLUMNS)
    series = [s for s in labelled_series(layout, root, labels_dir, grid_name, 0, (1.0, 0.0, 0.0))
              if s.series_key in rows_by_key.index]

    def has_maps(key: str) -> bool:
        row = rows_by_key.loc[key]
        return row["status"] == "done" and isinstance(row["segmentation"], str)

    with_maps = [s for s in series if has_maps(s.series_key)]
    loc: list[dict] = []
    counts: dict[tuple[str, str, str], SegmentationCounts] = {}
    n_series: dict[tuple[str, str, str], int] = {}
    kinds: dict[str, str] = {}
    for s, arrays in load_many(with_maps, grid, convention, targets=False):
        row = rows_by_key.loc[s.series_key]
        if arrays.heart is not None:
            loc.append(_localizer_row(s.series_key, row, arrays.heart))
        for method, entry in json.loads(row["segmentation"]).items():
            c = stored_mask_counts(entry["kind"], decode_mask(entry["mask"]), arrays.hu, arrays.spacing_zyx,
                                   arrays.labels, convention)
            if c is None:
                continue
            kinds[method] = entry["kind"]
            for key in ((method, "all", "all"), (method, "kernel_class", s.kernel_class or "unknown")):
                counts.setdefault(key, SegmentationCounts()).add(c)
                n_series[key] = n_series.get(key, 0) + 1
    mapped = {s.series_key for s in with_maps}
    for s in series:  # the rest: the heart mask alone
        if s.heart_path is None or s.series_key in mapped:
            continue
        native = read_geometry(s.native_volume)
        heart = resample_labels(read_label_map(s.heart_path, native), native, grid) > 0
        loc.append(_localizer_row(s.series_key, rows_by_key.loc[s.series_key], heart))
    loc_frame = pd.DataFrame(sorted(loc, key=lambda r: r["series_key"]), columns=LOCALIZER_COLUMNS)
    return loc_frame, _segmentation_rows(counts, n_series, kinds)


def evaluate_cohort(layout: CohortLayout, tables_root: Path, root: Path, labels_dir: Path | None, config: dict,
                    shards: list[str], out_dir: Path) -> dict[str, Path]:
    """Write the evaluation tables and figures of one cohort; returns their paths."""
    scores = pd.read_parquet(table_path(tables_root, "scores", layout.cohort))
    series = pd.read_parquet(table_path(tables_root, "series", layout.cohort))
    paired = paired_scores(scores, series)
    agree, conf = agreement_frames(paired)
    grid_name = config["scoring"]["grid"]
    g = config["resample"]["grids"][grid_name]
    grid = ZGrid(float(g["thickness_mm"]), float(g["increment_mm"]))
    loc, seg = labelled_frames(layout, root, labels_dir, grid_name, grid,
                               AgatstonConvention.from_dict(config["scoring"]["convention"]), shards)
    pairs = kernel_pairs(series)
    kernels = kernel_agreement(scores, pairs)
    meta = {"cohort": layout.cohort, "reference": REFERENCE, "n_paired": int(len(paired))}
    out = {"agreement": write_parquet(agree, out_dir / "agreement.parquet", meta),
           "confusion": write_parquet(conf, out_dir / "confusion.parquet", meta),
           "localizer": write_parquet(loc, out_dir / "localizer.parquet", meta),
           "segmentation": write_parquet(seg, out_dir / "segmentation.parquet", meta),
           "kernels": write_parquet(kernels, out_dir / "kernels.parquet",
                                    {**meta, "comparisons": KERNEL_COMPARISONS,
                                     "kernel_pairs": int(len(pairs))})}
    for method, grp in paired.groupby("method", sort=True):
        out[f"figure_{method}"] = figure(method, grp, out_dir / "figures" / f"{method}.png")
    log.info("%s: evaluation of %d paired scores, %d localizer rows, %d soft/sharp study pairs written to %s",
             layout.cohort, len(paired), len(loc), len(pairs), out_dir)
    return out
