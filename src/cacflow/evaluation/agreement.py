"""Agreement between a method's scores and reference scores: the metrics of the seeds.

- ICC: two-way random effects, absolute agreement, single rater (McGraw & Wong 1996 "ICC(A,1)", Shrout & Fleiss
  1979 "ICC(2,1)"), on the score and on ln(1 + score) (seed 003 reports ICC for absolute agreement).
- Stratum agreement per scheme: accuracy and Cohen's linearly weighted kappa (scikit-learn), confusion matrix.
- Bland-Altman on the log scale: differences of ln(1 + score), their mean and 95 % limits of agreement.
- Zero calcium: sensitivity of the method for "any calcium" (reference > 0) and specificity for "no calcium".
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import cohen_kappa_score, confusion_matrix

from cacflow.scoring.strata import SCHEMES


def icc_a1(ratings: np.ndarray) -> float:
    """ICC(A,1) of an (n subjects, k raters) matrix: two-way, absolute agreement, single rater.

    ``(MSR - MSE) / (MSR + (k - 1) MSE + k (MSC - MSE) / n)`` with the row, column and residual mean squares of a
    two-way ANOVA without replication. NaN when fewer than two subjects or no variance at all.
    """
    x = np.asarray(ratings, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] < 2:
        raise ValueError(f"ratings must be (subjects, raters) with at least two raters, got shape {x.shape}")
    n, k = x.shape
    if n < 2:
        return float("nan")
    grand = x.mean()
    ss_rows = k * ((x.mean(axis=1) - grand) ** 2).sum()
    ss_cols = n * ((x.mean(axis=0) - grand) ** 2).sum()
    ss_err = ((x - grand) ** 2).sum() - ss_rows - ss_cols
    msr, msc, mse = ss_rows / (n - 1), ss_cols / (k - 1), ss_err / ((n - 1) * (k - 1))
    denom = msr + (k - 1) * mse + k * (msc - mse) / n
    return float((msr - mse) / denom) if denom > 0 else float("nan")


def bland_altman_log(method: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    """Mean difference and 95 % limits of agreement of ln(1 + method) - ln(1 + reference)."""
    d = np.log1p(np.asarray(method, float)) - np.log1p(np.asarray(reference, float))
    mean, sd = float(d.mean()), float(d.std(ddof=1)) if len(d) > 1 else float("nan")
    return {"ba_log_mean_diff": mean, "ba_log_sd": sd, "ba_log_loa_low": mean - 1.96 * sd,
            "ba_log_loa_high": mean + 1.96 * sd}


def zero_calcium(method: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    """Sensitivity for any calcium (reference > 0 found > 0) and specificity for none (reference 0 found 0)."""
    m, r = np.asarray(method, float) > 0, np.asarray(reference, float) > 0
    sens = float((m & r).sum() / r.sum()) if r.any() else float("nan")
    spec = float((~m & ~r).sum() / (~r).sum()) if (~r).any() else float("nan")
    return {"any_calcium_sensitivity": sens, "zero_calcium_specificity": spec}


def stratum_agreement(method: np.ndarray, reference: np.ndarray, scheme: str) -> dict:
    """Accuracy, linearly weighted kappa and the confusion matrix (rows reference, columns method) of one scheme."""
    s = SCHEMES[scheme]
    labels = list(range(len(s.labels)))
    m = np.array([s.index(float(v)) for v in method])
    r = np.array([s.index(float(v)) for v in reference])
    kappa = float(cohen_kappa_score(r, m, weights="linear", labels=labels)) if len(set(r) | set(m)) > 1 else 1.0
    return {"accuracy": float((m == r).mean()), "kappa_linear": kappa,
            "confusion": confusion_matrix(r, m, labels=labels).tolist()}


def agreement(method: np.ndarray, reference: np.ndarray) -> dict:
    """Every agreement metric of paired Agatston scores (n,), NaN-free. Keys are flat except ``confusion``."""
    method, reference = np.asarray(method, float), np.asarray(reference, float)
    if method.shape != reference.shape or np.isnan(method).any() or np.isnan(reference).any():
        raise ValueError("agreement needs paired, non-missing scores of equal length")
    out: dict = {"n": int(len(method)),
                 "icc": icc_a1(np.stack([method, reference], 1)),
                 "icc_log": icc_a1(np.log1p(np.stack([method, reference], 1))),
                 **bland_altman_log(method, reference), **zero_calcium(method, reference), "confusion": {}}
    for scheme in SCHEMES:
        a = stratum_agreement(method, reference, scheme)
        out[f"{scheme}_accuracy"], out[f"{scheme}_kappa"] = a["accuracy"], a["kappa_linear"]
        out["confusion"][scheme] = a["confusion"]
    return out


def agreement_table(frame: pd.DataFrame, by: list[str] | None = None) -> pd.DataFrame:
    """Agreement rows from a frame with columns ``method_score``, ``reference_score`` (+ grouping columns).

    One row for all scans ("all") and one per value of each column in ``by`` (e.g. kernel_class, kvp, reference
    stratum); the confusion matrices are left out (see :func:`agreement`).
    """
    groups: list[tuple[str, str, pd.DataFrame]] = [("all", "all", frame)]
    for col in by or []:
        for value, g in frame.groupby(col, sort=True, dropna=False):
            groups.append((col, str(value), g))
    rows = []
    for col, value, g in groups:
        a = agreement(g["method_score"].to_numpy(), g["reference_score"].to_numpy())
        a.pop("confusion")
        rows.append({"group": col, "value": value, **a})
    return pd.DataFrame(rows)
