"""Agreement between a method's scores and reference scores: the metrics of the seeds.

- ICC: two-way random effects, absolute agreement, single rater (McGraw & Wong 1996 "ICC(A,1)", Shrout & Fleiss
  1979 "ICC(2,1)"), on the score and on ln(1 + score) (seed 003 reports ICC for absolute agreement).
- Stratum agreement per scheme: accuracy and Cohen's linearly weighted kappa (scikit-learn), confusion matrix.
- Bland-Altman on the log scale: differences of ln(1 + score), their mean and 95 % limits of agreement.
- Zero calcium: sensitivity of the method for "any calcium" (reference > 0) and specificity for "no calcium".
- Confidence intervals: percentile bootstrap over scans (Efron & Tibshirani 1993, ch. 13) of the ICCs and the
  five-class accuracy and kappa, 95 %, 2000 resamples of a fixed seed, so that a table says how far a figure from
  25 or 90 scans can be trusted (:func:`bootstrap_intervals`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import cohen_kappa_score, confusion_matrix

from cacflow.scoring.strata import SCHEMES


def icc_a1(ratings: np.ndarray) -> float:
    """ICC(A,1) of an (n subjects, k raters) matrix: two-way, absolute agreement, single rater.

    ``(MSR - MSE) / (MSR + (k - 1) MSE + k (MSC - MSE) / n)`` with the row, column and residual mean squares of a
    two-way ANOVA without replication (:func:`_icc_a1_samples`). NaN when fewer than two subjects or no variance
    at all.
    """
    x = np.asarray(ratings, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] < 2:
        raise ValueError(f"ratings must be (subjects, raters) with at least two raters, got shape {x.shape}")
    if x.shape[0] < 2:
        return float("nan")
    return float(_icc_a1_samples(x[None])[0])


def _icc_a1_samples(x: np.ndarray) -> np.ndarray:
    """The ICC(A,1) formula of :func:`icc_a1` for many rating matrices at once: (samples, n subjects, k raters)
    -> (samples,), n >= 2; NaN where a sample has no variance."""
    _, n, k = x.shape
    grand = x.mean(axis=(1, 2))
    ss_rows = k * ((x.mean(axis=2) - grand[:, None]) ** 2).sum(axis=1)
    ss_cols = n * ((x.mean(axis=1) - grand[:, None]) ** 2).sum(axis=1)
    ss_err = ((x - grand[:, None, None]) ** 2).sum(axis=(1, 2)) - ss_rows - ss_cols
    msr, msc, mse = ss_rows / (n - 1), ss_cols / (k - 1), ss_err / ((n - 1) * (k - 1))
    denom = msr + (k - 1) * mse + k * (msc - mse) / n
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(denom > 0, (msr - mse) / denom, np.nan)


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


def stratum_classes(scores: np.ndarray, scheme: str) -> np.ndarray:
    """Class indices (n,) of Agatston scores (n,) in a stratum scheme (:data:`cacflow.scoring.strata.SCHEMES`)."""
    s = SCHEMES[scheme]
    return np.array([s.index(float(v)) for v in scores], dtype=np.int64)


def stratum_agreement(method: np.ndarray, reference: np.ndarray, scheme: str) -> dict:
    """Accuracy, linearly weighted kappa and the confusion matrix (rows reference, columns method) of one scheme."""
    labels = list(range(len(SCHEMES[scheme].labels)))
    m, r = stratum_classes(method, scheme), stratum_classes(reference, scheme)
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


#: Resamples and seed of :func:`bootstrap_intervals` (fixed: a table is the same each time it is made).
BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 20261124
#: The metrics given an interval, and the coverage of the interval.
INTERVAL_METRICS: tuple[str, ...] = ("icc", "icc_log", "five_class_accuracy", "five_class_kappa")
INTERVAL_LEVEL = 0.95


def _icc_a1_paired(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """:func:`icc_a1` of two raters for many samples at once: ``a``, ``b`` (samples, subjects) -> (samples,); NaN
    where a sample has no variance."""
    return _icc_a1_samples(np.stack([a, b], axis=2))


def _linear_kappa(reference: np.ndarray, method: np.ndarray, k: int) -> np.ndarray:
    """Cohen's linearly weighted kappa of class indices 0..k-1 for many samples at once: (samples, subjects) ->
    (samples,). ``1 - sum(w O) / sum(w E)`` with weights ``|i - j| / (k - 1)``, O the observed and E the
    chance-expected confusion; 1 where E puts no weight off the diagonal (every scan in one class on both sides,
    as :func:`stratum_agreement` has it)."""
    samples, n = reference.shape
    cells = (np.arange(samples)[:, None] * k * k + reference * k + method).ravel()
    observed = np.bincount(cells, minlength=samples * k * k).reshape(samples, k, k) / n
    expected = observed.sum(axis=2)[:, :, None] * observed.sum(axis=1)[:, None, :]
    weights = np.abs(np.subtract.outer(np.arange(k), np.arange(k))) / (k - 1)
    disagree, chance = (observed * weights).sum(axis=(1, 2)), (expected * weights).sum(axis=(1, 2))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(chance > 0, 1.0 - disagree / chance, 1.0)


def bootstrap_intervals(method: np.ndarray, reference: np.ndarray, resamples: int = BOOTSTRAP_RESAMPLES,
                        seed: int = BOOTSTRAP_SEED) -> dict[str, float]:
    """Percentile bootstrap intervals (:data:`INTERVAL_LEVEL`) of :data:`INTERVAL_METRICS` for paired Agatston
    scores (n,): ``<metric>_ci_low`` and ``<metric>_ci_high``. Scans are resampled with replacement, ``resamples``
    times from a generator of ``seed``; a resample without variance has no ICC and is left out of the ICC's
    interval. NaN with fewer than two scans."""
    method, reference = np.asarray(method, float), np.asarray(reference, float)
    out = {f"{m}_ci_{side}": float("nan") for m in INTERVAL_METRICS for side in ("low", "high")}
    n = len(method)
    if n < 2:
        return out
    pick = np.random.default_rng(seed).integers(0, n, size=(resamples, n))
    m_class = stratum_classes(method, "five_class")[pick]
    r_class = stratum_classes(reference, "five_class")[pick]
    values = {
        "icc": _icc_a1_paired(method[pick], reference[pick]),
        "icc_log": _icc_a1_paired(np.log1p(method)[pick], np.log1p(reference)[pick]),
        "five_class_accuracy": (m_class == r_class).mean(axis=1),
        "five_class_kappa": _linear_kappa(r_class, m_class, len(SCHEMES["five_class"].labels)),
    }
    tail = 100.0 * (1.0 - INTERVAL_LEVEL) / 2.0
    for metric, v in values.items():
        v = v[np.isfinite(v)]
        if len(v):
            out[f"{metric}_ci_low"], out[f"{metric}_ci_high"] = (float(x) for x in np.percentile(v, [tail, 100 - tail]))
    return out


def agreement_table(frame: pd.DataFrame, by: list[str] | None = None, intervals: bool = False) -> pd.DataFrame:
    """Agreement rows from a frame with columns ``method_score``, ``reference_score`` (+ grouping columns).

    One row for all scans ("all") and one per value of each column in ``by`` (e.g. kernel_class, kvp, reference
    stratum); the confusion matrices are left out (see :func:`agreement`). With ``intervals``, each row also has
    the bootstrap intervals of :func:`bootstrap_intervals`.
    """
    groups: list[tuple[str, str, pd.DataFrame]] = [("all", "all", frame)]
    for col in by or []:
        for value, g in frame.groupby(col, sort=True, dropna=False):
            groups.append((col, str(value), g))
    rows = []
    for col, value, g in groups:
        method, reference = g["method_score"].to_numpy(), g["reference_score"].to_numpy()
        a = agreement(method, reference)
        a.pop("confusion")
        if intervals:
            a.update(bootstrap_intervals(method, reference))
        rows.append({"group": col, "value": value, **a})
    return pd.DataFrame(rows)
