"""One verdict vocabulary for every finding, table cell and statement of the book.

A claim is tested by one or more *comparisons* (D2S against S2D for one attack and budget,
say). Each comparison has a deciding difference with a 95 % interval, and reads

* ``"supports"`` when the interval lies entirely on the claimed side of zero (or of the
  claim's threshold),
* ``"against"`` when it lies entirely on the other side,
* ``"inconclusive"`` when it contains zero (the data cannot tell the two apart at this n).

The verdict over all comparisons (:func:`combine`) is one of :data:`VERDICTS`:

* ``"holds"``: every comparison supports the claim;
* ``"does not hold"``: every comparison is against it;
* ``"partly"``: some comparisons support it and some are decisively against it;
* ``"inconclusive"``: otherwise (at least one comparison is inconclusive and the decisive ones,
  if any, all point the same way): more images or seeds are needed; never read as "holds";
* ``"not testable"``: no comparison could be made (no data for it in this run, or the paper's
  dataset did not run); a reason may follow after a colon.

A dataset never stands in for another when a claim is judged: the CIFAR findings are judged on
CIFAR data (or its JPEG copy, named as such), never on Tiny ImageNet.
"""
from __future__ import annotations

import math
from typing import Iterable, Sequence

VERDICTS: tuple[str, ...] = ("holds", "partly", "does not hold", "inconclusive", "not testable")
"""The verdict vocabulary, from strongest support to no test."""

OUTCOMES: tuple[str, ...] = ("supports", "against", "inconclusive")
"""Outcome of one comparison."""


def check_threshold(name: str, value, low: float = 0.0, high: float | None = None, unit: str = "%") -> float:
    """``value`` as a float when it is a number in ``[low, high]`` (no upper bound for None); else a
    ValueError naming the parameter, the value and the accepted range. The pages call it on their
    thresholds right after their parameters are read, before any compute."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and low <= value and (
        high is None or value <= high)  # NaN fails both comparisons
    if not ok:
        rng = f"[{low:g}, {high:g}]" if high is not None else f">= {low:g}"
        raise ValueError(f"{name} must be a number {'in ' if high is not None else ''}{rng} ({unit}), got {value!r}")
    return float(value)


def compare(lo: float, hi: float, threshold: float = 0.0, direction: str = ">") -> str:
    """Outcome of one comparison from the 95 % interval ``[lo, hi]`` of its deciding quantity.

    ``direction=">"``: the claim is "quantity > threshold"; ``"<"``: "quantity < threshold".
    A NaN bound gives ``"inconclusive"``.
    """
    if direction not in (">", "<"):
        raise ValueError(f"direction must be '>' or '<', got {direction!r}")
    if lo is None or hi is None or math.isnan(lo) or math.isnan(hi):
        return "inconclusive"
    if lo > hi:
        raise ValueError(f"interval bounds out of order: lo={lo} > hi={hi}")
    above, below = lo > threshold, hi < threshold
    if direction == ">":
        return "supports" if above else ("against" if below else "inconclusive")
    return "supports" if below else ("against" if above else "inconclusive")


def combine(outcomes: Iterable[str], reason: str = "") -> str:
    """The verdict (:data:`VERDICTS`) of a claim from its comparisons' outcomes (module docstring).

    ``reason`` is appended to ``"not testable"`` after a colon when there is no comparison.
    """
    out = list(outcomes)
    bad = [o for o in out if o not in OUTCOMES]
    if bad:
        raise ValueError(f"unknown comparison outcome {bad[0]!r}; accepted: {', '.join(OUTCOMES)}")
    if not out:
        return f"not testable: {reason}" if reason else "not testable"
    s, a, i = out.count("supports"), out.count("against"), out.count("inconclusive")
    if s and a:
        return "partly"
    if i:
        return "inconclusive"
    return "holds" if s else "does not hold"


def within(lo: float, hi: float, low: float, high: float) -> str:
    """Outcome of "the quantity lies in ``[low, high]``" (a range such as "25-37 %", or an
    equivalence margin ``[-tol, tol]`` around zero) from its 95 % interval ``[lo, hi]``:
    ``"supports"`` when the interval lies inside the range, ``"against"`` when it lies entirely
    outside it, ``"inconclusive"`` otherwise (or on a NaN bound)."""
    if low > high:
        raise ValueError(f"range bounds out of order: low={low} > high={high}")
    if lo is None or hi is None or math.isnan(lo) or math.isnan(hi):
        return "inconclusive"
    if lo > hi:
        raise ValueError(f"interval bounds out of order: lo={lo} > hi={hi}")
    if low <= lo and hi <= high:
        return "supports"
    if hi < low or lo > high:
        return "against"
    return "inconclusive"


def equivalence(lo: float, hi: float, tol: float) -> str:
    """Outcome of "two quantities are the same within ``tol``" from the 95 % interval ``[lo, hi]``
    of their difference: :func:`within` ``[-tol, tol]`` (two one-sided tests at 2.5 % each)."""
    if not tol >= 0:
        raise ValueError(f"tol must be >= 0, got {tol!r}")
    return within(lo, hi, -tol, tol)


def agreement(lo: float, hi: float, paper: float, tol: float) -> str:
    """Verdict of a reproduced table cell (95 % interval ``[lo, hi]``) against the paper's number.

    * ``"does not hold"``: the paper's number lies outside ``[lo - tol, hi + tol]`` (the
      interval widened by the tolerance);
    * ``"inconclusive"``: it lies inside, but the interval is wider than the tolerance band
      (``hi - lo > 2 * tol``: at this n a difference of ``tol`` could not be seen);
    * ``"holds"``: it lies inside and ``hi - lo <= 2 * tol``;
    * ``"not testable: ..."`` when a bound or the paper's number is NaN.

    With ``tol = 10`` points, a Wilson interval at 50 % is narrow enough from n = 97 images
    (the paper's 100 images decide), and not at n = 20 (inconclusive).
    """
    if not tol >= 0:
        raise ValueError(f"tol must be >= 0, got {tol!r}")
    if any(v is None or math.isnan(v) for v in (lo, hi)):
        return "not testable: reproduced value undefined (no image counts)"
    if paper is None or math.isnan(paper):
        return "not testable: no paper value"
    if lo > hi:
        raise ValueError(f"interval bounds out of order: lo={lo} > hi={hi}")
    if paper < lo - tol - 1e-9 or paper > hi + tol + 1e-9:
        return "does not hold"
    return "inconclusive" if hi - lo > 2 * tol + 1e-9 else "holds"


def combine_verdicts(verdicts: Sequence[str]) -> str:
    """One verdict from several runs' verdicts (seeds): the common one when all agree; otherwise
    the runs that were *not testable* are left out (their quantity is undefined, e.g. nothing
    flipped, so they carry no evidence either way; the ledger's evidence still lists every run's
    verdict) and the common verdict of the rest is returned when they agree, else ``"partly"``
    when some hold and some do not, else ``"inconclusive"``."""
    fams = [family(v) for v in verdicts]
    if not fams:
        return "not testable"
    if len(set(fams)) == 1:
        return verdicts[0]
    tested = [f for f in fams if f != "not testable"]
    if tested and len(set(tested)) == 1:
        return tested[0]
    if "holds" in tested and "does not hold" in tested:
        return "partly"
    return "inconclusive"


def family(verdict: str) -> str:
    """The vocabulary word a verdict starts with (``"not testable: only X ran"`` -> ``"not testable"``)."""
    for v in VERDICTS:
        if str(verdict).startswith(v):
            return v
    raise ValueError(f"{verdict!r} is not a verdict; accepted: {', '.join(VERDICTS)}")


def tag(profile: str, generated: bool = False) -> str:
    """Tag that travels with every verdict of a run: ``""`` for real data at a result profile
    (``paper``, ``fast``), else ``"[smoke]"`` (or ``"[<profile>]"``) and ``"[generated data]"``."""
    parts = []
    if profile not in ("paper", "fast"):
        parts.append(f"[{profile}]")
    if generated:
        parts.append("[generated data]")
    return " ".join(parts)
