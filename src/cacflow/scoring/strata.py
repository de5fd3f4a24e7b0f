"""Risk strata of the Agatston score: several schemes at once, boundaries exact.

Scores are real numbers (slice normalisation makes them fractional), so each boundary says which side is closed:

- ``five_class`` (Rumberger et al., Mayo Clin Proc 1999; the seeds' five categories): 0 | (0, 10] "1-10" |
  (10, 100] "11-100" | (100, 400] "101-400" | > 400. Right-closed: 10 is "1-10"; any score > 0 is not "0".
- ``four_class`` (the common 0 / 1-100 / 101-400 / >400 grouping): 0 | (0, 100] | (100, 400] | > 400.
- ``cac_drs`` (CAC-DRS, Hecht et al., J Cardiovasc Comput Tomogr 2018): A0 = 0 | A1 [>0, 100) "1-99" |
  A2 [100, 300) "100-299" | A3 >= 300. Left-closed: 100 is "100-299", 300 is ">=300".

A missing score (NaN or None) has no stratum (None), never "0".
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Scheme:
    """A stratification: ``labels[k]`` for scores in class k. Class 0 is exactly zero; the others are bounded by
    ``bounds`` (upper bounds of classes 1..K-2), closed on the right (``right_closed``) or on the left."""

    name: str
    labels: tuple[str, ...]
    bounds: tuple[float, ...]
    right_closed: bool

    def index(self, score: float | None) -> int | None:
        """Ordinal class (0 = no calcium) of an Agatston score; None for a missing score."""
        if score is None or (isinstance(score, float) and math.isnan(score)):
            return None
        if score < 0:
            raise ValueError(f"an Agatston score cannot be negative, got {score}")
        if score == 0:
            return 0
        for k, bound in enumerate(self.bounds, start=1):
            if (score <= bound) if self.right_closed else (score < bound):
                return k
        return len(self.bounds) + 1

    def label(self, score: float | None) -> str | None:
        """Class label of a score; None for a missing score."""
        k = self.index(score)
        return None if k is None else self.labels[k]


SCHEMES: dict[str, Scheme] = {
    "five_class": Scheme("five_class", ("0", "1-10", "11-100", "101-400", ">400"), (10.0, 100.0, 400.0), True),
    "four_class": Scheme("four_class", ("0", "1-100", "101-400", ">400"), (100.0, 400.0), True),
    "cac_drs": Scheme("cac_drs", ("0", "1-99", "100-299", ">=300"), (100.0, 300.0), False),
}


def strata(score: float | None) -> dict[str, str | None]:
    """Every scheme's label of a score: ``{"five_class": "11-100", ...}``."""
    return {name: s.label(score) for name, s in SCHEMES.items()}
