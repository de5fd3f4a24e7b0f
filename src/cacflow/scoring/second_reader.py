"""The second-reader flag: scans whose automatic scores disagree on the risk stratum go to a human reader.

Rule (written here once): take the five-class stratum index (0, 1-10, 11-100, 101-400, > 400;
:data:`cacflow.scoring.strata.SCHEMES` ``five_class``) of every automatic method that scored the scan (not the
``reference`` method, which is a reader's). If at least two methods scored it and the highest index exceeds the
lowest by :data:`MIN_STRATA_APART` (one stratum) or more, the scan is flagged; with fewer than two scored
methods the flag is unknown (None). The note names each method's stratum, so a reader sees why.
"""

from __future__ import annotations

#: Stratum indices two methods must lie apart for a flag.
MIN_STRATA_APART = 1


def second_reader(strata: dict[str, tuple[int, str]]) -> tuple[bool | None, str | None]:
    """(flag, note) from {method: (five-class index, label)} of the automatic methods that scored a scan."""
    if len(strata) < 2:
        return None, None
    indices = [i for i, _ in strata.values()]
    if max(indices) - min(indices) < MIN_STRATA_APART:
        return False, None
    note = "; ".join(f"{m}: {label}" for m, (_, label) in sorted(strata.items()))
    return True, f"five-class strata disagree ({note})"
