"""The claims ledger: every checkable statement of the paper next to what a reproduction measured,
read only from published results (:func:`dynn_lib.experiments.runner.load_results`).

Rows (:func:`claims_ledger`):

* ``F1`` ... ``F10``: the ten findings, paraphrased, with the verdict and evidence of the
  library's test of each (``rq1.finding_1`` ... ``rq4.finding_10``, on the published per-image
  tables, so each deciding difference has its seeded bootstrap interval over images). Findings
  5 and 8 compare a dataset with larger models (CIFAR-100) with one with smaller models
  (CIFAR-10) in matched cells; with only one of them present their verdict is
  ``"not testable: needs CIFAR-100 beside CIFAR-10; of those only <dataset> ran"`` (Tiny ImageNet
  beside them does not count: it never stands in for a CIFAR dataset).
* ``T1-...``, ``T2-...``, ``T3-...``: one row per cell of the paper's Tables 1, 2 and 3
  (protocol section 10), paper value beside the reproduced one.
* ``S-...``: the percentages and comparisons quoted in the paper's text (protocol section 10,
  "Statements from the text") that the published tables can measure.

One vocabulary (:data:`dynn_lib.verdicts.VERDICTS`): ``holds``, ``partly``, ``does not hold``,
``inconclusive``, ``not testable`` (with its reason after a colon: the paper's dataset did not
run, the question's results are absent, the reproduced value is undefined...).

Which dataset answers for which paper dataset (``dataset_used``, :data:`STAND_INS`): the paper's
CIFAR-10 cells are compared with ``cifar10``, else ``cifar10-jpeg`` (CIFAR-10 re-encoded as JPEG,
which the dataset column says), else ``synthetic`` (generated data: the comparison then only
exercises the code, and the dataset column says so); CIFAR-100 cells only with ``cifar100``; Tiny
ImageNet statements only with ``tinyimagenet``. A dataset never stands in for another: Findings
1-10 are tested on the CIFAR datasets (and their stand-ins) only, never on Tiny ImageNet (which
the paper only uses for RQ1, and which has its own text rows); with only Tiny ImageNet they are
"not testable".

Verdict rules (tolerances are parameters of :func:`claims_ledger`):

* **Table cells** (Tables 1-3; :func:`dynn_lib.verdicts.agreement`): the reproduced value's 95 %
  interval over images ``[lo, hi]`` (Wilson for a percentage, the tables' ``X_lo``/``X_hi``; a
  seeded bootstrap for T2) is widened by the tolerance ``tol``: the cell **holds** when the
  paper's number lies inside ``[lo - tol, hi + tol]`` and the interval is no wider than the
  tolerance band (``hi - lo <= 2 tol``); it is **inconclusive** when the number lies inside but
  the interval is wider (n too small to see a difference of ``tol``); it **does not hold** when
  the number lies outside. Tolerances: ``pct_tol`` = 10 percentage points for success and T1
  percentages (a Wilson interval at 50 % on the paper's 100 images is 19.2 points wide, so 100
  images decide and 20 do not), ``t2_tol`` = 0.5 exits for T2. Best α is categorical: holds
  when it equals the paper's; inconclusive when the success at the paper's α has a Wilson
  interval overlapping the best α's; does not hold otherwise.
* **Bounds and ranges** of the text ("over 70 %", "25-37 %"): :func:`dynn_lib.verdicts.compare`
  / :func:`dynn_lib.verdicts.within` on the share's Wilson interval (holds when the interval
  lies on the stated side or inside the range, does not hold when entirely outside,
  inconclusive otherwise).
* **Comparisons** ("D2S > S2D", "FGSM > PGD"): the pooled difference's seeded bootstrap interval
  over images; an interval containing 0 is inconclusive, never holds.
* **Cross-dataset statements** ("CIFAR-100 > CIFAR-10", "Tiny ImageNet lower"): matched cells
  only (same pair, attack, ε), each direction (D2S, S2D) on its own, each cell with Newcombe's
  interval for two independent image sets; the cells' outcomes are combined.
* **PSNR**: the paper's "same PSNR for SDNN and DyNN sources" is an equivalence judged at every
  ε by :func:`dynn_lib.experiments.appendix.psnr_statement` (the appendix page calls the same
  function, so both read the same); the paper's absolute PSNR (23.2 dB) states no ε, so its
  rows are "not testable" and name the ε whose PSNR is nearest.

Seeds: the results folder layout (``<results>/<profile>/<dataset>/<question>/``) holds one run.
To aggregate seeds, publish each seed into its own results folder and pass them all
(:func:`results_dirs` finds ``<root>`` and ``<root>/seed-*``). The seeds of a run are read from
its ``record.json``: the workspace seed, plus the attack seed when it is neither 0 (the default)
nor equal to the workspace seed; runs with the same seeds are counted once. "n" always counts
images; ``n_seeds`` counts seeds. With one seed a cell shows ``value [lo, hi] (n=N images)``;
with several, ``mean ± std over k seeds`` (sample standard deviation) beside every run's 95 %
interval. The verdict over seeds is :func:`dynn_lib.verdicts.combine_verdicts` of the runs'
verdicts (the common one when all agree; "partly" when some hold and some do not).

The module also holds two helpers the book's pages share: :func:`page_overrides` (the
``overrides`` parameter of every page, same meaning as ``dynn reproduce -p NAME VALUE``) and
:func:`data_note` (the data-honesty box computed from a result's record); findings are drawn by
:func:`dynn_lib.display.verdict_box`.
"""
from __future__ import annotations

import html
import math
import re
import time
from dataclasses import fields
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import pandas as pd

from . import data, metrics, profiles, verdicts, versions
from .experiments import appendix, rq1, rq2, rq3, rq4
from .experiments.common import larger_smaller, one_row_per_cell
from .experiments.runner import QUESTIONS, load_record, load_results, model_conflicts, results_path

__all__ = ["COLUMNS", "VERDICTS", "FINDINGS", "STAND_INS", "claims_ledger", "results_dirs", "summary_counts",
           "style_ledger", "page_overrides", "data_note", "paper_dataset_for",
           "published_datasets", "paper_quote", "provenance_table"]

COLUMNS = ("claim_id", "source", "claim", "paper_value", "reproduced_value", "n_seeds", "n_images", "dataset_used",
           "verdict", "evidence")
"""The ledger's columns, in order (numeric helper columns follow: ``paper_number``,
``reproduced_mean``, ``reproduced_std``, ``reproduced_lo``, ``reproduced_hi``, ``seeds``)."""

VERDICTS = verdicts.VERDICTS
"""Verdict families (:data:`dynn_lib.verdicts.VERDICTS`; "not testable" carries its reason after a colon)."""

FINDINGS: dict[int, tuple[str, str, str]] = {
    1: ("rq1", "§3", "Adversarial examples crafted on an early-exit surrogate fool a static target more often "
                     "than examples crafted on a static surrogate fool an early-exit target (D2S > S2D)."),
    2: ("rq1", "§3", "An early-exit surrogate produces adversarial examples both faster and more effectively "
                     "than a static surrogate."),
    3: ("rq2", "§4", "Ordinary accuracy-oriented attacks do not noticeably raise the computation an early-exit "
                     "network spends per input."),
    4: ("rq2", "§4", "The more an adversarial example lowers the exits' confidence, the later it leaves the "
                     "network, i.e. the more computation it costs."),
    5: ("rq2", "§4", "Examples made on a bigger model (the CIFAR-100 networks) push inputs to later exits more "
                     "often than examples made on a smaller one."),
    6: ("rq3", "§5", "Placing the first exit early in the network makes the early exits harder to fool."),
    7: ("rq3", "§5", "Early exits are fooled less often by black-box (transferred) examples than by white-box "
                     "ones."),
    8: ("rq3", "§5", "Against transferred examples, early exits hold up better when the surrogate is the smaller "
                     "model (CIFAR-10) than when it is the bigger one (CIFAR-100)."),
    9: ("rq4", "§6", "Networks with more, denser exits resist the Early Attack better (ResNet-56, whose exits are "
                     "spread out, is the easiest target)."),
    10: ("rq4", "§6", "Early-Attack examples made on one early-exit network rarely achieve the same effect on "
                      "another."),
}
"""Finding number -> (question, paper section, the finding in this book's words)."""

STAND_INS: dict[str, tuple[str, ...]] = {
    "cifar10": ("cifar10", "cifar10-jpeg", "synthetic"),
    "cifar100": ("cifar100",),
    "tinyimagenet": ("tinyimagenet",),
}
"""Paper dataset -> the run datasets that may answer for it, best first."""

_NOT_FOR_FINDINGS = ("tinyimagenet",)
"""Datasets on which Findings 1-10 are never judged (the paper only runs RQ1 there)."""

_PAPER_NAMES = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100", "tinyimagenet": "Tiny ImageNet"}
_ARCH = {"vgg16": "VGG", "mobilenet": "MobileNet", "resnet56": "ResNet"}
_T3_ARCH = {"vgg16": "VGG", "mobilenet": "MNet", "resnet56": "RNet"}


# ================================================================ loading

def results_dirs(root: str | Path) -> list[Path]:
    """``root`` followed by its ``seed-*`` sub-folders (sorted): one results folder per seed."""
    root = Path(root)
    return [root] + sorted(p for p in root.glob("seed-*") if p.is_dir())


class _Runs:
    """Published tables of every results folder, loaded lazily and de-duplicated by seeds."""

    def __init__(self, dirs: Sequence[Path], profile: str):
        self.dirs, self.profile = list(dirs), profile
        self._cache: dict[tuple[str, str], list[tuple[str, dict[str, pd.DataFrame], dict]]] = {}

    def get(self, dataset: str, question: str) -> list[tuple[str, dict[str, pd.DataFrame], dict]]:
        """[(seed label, tables, record)] for every folder holding ``question`` on ``dataset``."""
        key = (dataset, question)
        if key not in self._cache:
            runs, seen = [], set()
            for d in self.dirs:
                if not (results_path(d, self.profile, dataset, question) / "record.json").is_file():
                    continue
                rec = load_record(d, self.profile, dataset, question)
                label = _seed_label(rec)
                if label in seen:
                    continue
                seen.add(label)
                runs.append((label, load_results(d, self.profile, dataset, question), rec))
            self._cache[key] = runs
        return self._cache[key]

    def has(self, dataset: str, question: str) -> bool:
        return bool(self.get(dataset, question))


def _seed_label(record: dict) -> str:
    cfg = record.get("config", {})
    ws_seed = cfg.get("seed")
    exp = cfg.get("experiment") or {}
    exp_seed = exp.get("seed") if isinstance(exp, dict) else None
    return f"{ws_seed}" if exp_seed in (None, 0, ws_seed) else f"{ws_seed} (attack seed {exp_seed})"


def published_datasets(results_dir: str | Path, profile: str, question: str) -> list[str]:
    """Datasets with published ``question`` results under ``<results_dir>/<profile>/`` (sorted)."""
    root = Path(results_dir) / profile
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir()
                  if (p / question / "record.json").is_file() and p.name in data.DATASETS)


def paper_dataset_for(paper_dataset: str, datasets: Iterable[str]) -> str | None:
    """The run dataset that answers for ``paper_dataset`` (see :data:`STAND_INS`), or None."""
    ds = list(datasets)
    return next((d for d in STAND_INS.get(paper_dataset, (paper_dataset,)) if d in ds), None)


def _label(dataset: str | None) -> str:
    """The ``dataset_used`` entry: the dataset's name, marked when it stands in for another or is
    generated data."""
    if dataset is None:
        return "—"
    if data.get_info(dataset).generated:
        return dataset + " (GENERATED: meaningless)"
    if dataset == "cifar10-jpeg":
        return dataset + " (answers for CIFAR-10: a JPEG re-encoded copy)"
    return dataset


# ================================================================ formatting and aggregation

def _finite(values: Iterable[float]) -> list[float]:
    return [float(v) for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))
            and np.isfinite(float(v))]


def _agg(values: Sequence[float]) -> tuple[float, float, int]:
    """(mean, sample std (0 for one value), k) over finite values; (nan, nan, 0) when none."""
    v = _finite(values)
    if not v:
        return math.nan, math.nan, 0
    return float(np.mean(v)), float(np.std(v, ddof=1)) if len(v) > 1 else 0.0, len(v)


def _num(v: float, digits: int, unit: str = "") -> str:
    return "n/a" if v is None or math.isnan(v) else f"{v:.{digits}f}{unit}"


_ci = metrics.interval_text  # "[lo, hi]" or why there is no interval


class _M:
    """One run's (seed's) measurement of a claim: value with its 95 % interval over images, the
    images it rests on, and that run's verdict and evidence."""

    def __init__(self, value: float, lo: float = math.nan, hi: float = math.nan, n_images: int = 0,
                 verdict: str = "inconclusive", evidence: str = ""):
        self.value, self.lo, self.hi, self.n_images = float(value), float(lo), float(hi), int(n_images)
        self.verdict, self.evidence = verdict, evidence


def _row(claim_id: str, source: str, claim: str, paper_value: str, reproduced_value: str, n_seeds: int,
         dataset_used: str, verdict: str, evidence: str, paper_number: float = math.nan,
         reproduced_mean: float = math.nan, reproduced_std: float = math.nan, seeds: str = "", n_images: int = 0,
         reproduced_lo: float = math.nan, reproduced_hi: float = math.nan) -> dict:
    verdicts.family(verdict)  # one vocabulary: anything else is a bug
    return {"claim_id": claim_id, "source": source, "claim": claim, "paper_value": paper_value,
            "reproduced_value": reproduced_value, "n_seeds": int(n_seeds), "n_images": int(n_images),
            "dataset_used": dataset_used, "verdict": verdict, "evidence": evidence,
            "paper_number": float(paper_number), "reproduced_mean": float(reproduced_mean),
            "reproduced_std": float(reproduced_std), "reproduced_lo": float(reproduced_lo),
            "reproduced_hi": float(reproduced_hi), "seeds": seeds}


def _aggregate(claim_id: str, source: str, claim: str, paper_value: str, dataset_used: str,
               measured: Sequence[tuple[str, _M]], paper_number: float = math.nan, digits: int = 1,
               unit: str = "") -> dict:
    """One ledger row from the per-seed measurements: mean ± std over seeds beside each run's
    95 % interval over images; the verdict is :func:`dynn_lib.verdicts.combine_verdicts` of the
    runs' verdicts."""
    labels = [lb for lb, _ in measured]
    ms = [m for _, m in measured]
    mean, std, k = _agg([m.value for m in ms])
    n_img = max((m.n_images for m in ms), default=0)
    if len(ms) == 1:
        m = ms[0]
        ci = "" if math.isnan(m.lo) or math.isnan(m.hi) else f" {_ci(m.lo, m.hi, digits)}"
        shown = f"{_num(m.value, digits, unit)}{ci} (n={m.n_images} images)" if not math.isnan(m.value) else "n/a"
        lo, hi, ev = m.lo, m.hi, m.evidence
    else:
        per = "; ".join(f"seed {lb}: {_num(m.value, digits)} {_ci(m.lo, m.hi, digits)}" for lb, m in measured)
        shown = (f"{_num(mean, digits)} ± {_num(std, digits)}{unit} over {k} seeds (95 % interval per run, "
                 f"n={n_img} images each: {per})" if k else "n/a")
        lo = hi = math.nan
        ev = " ".join(f"[seed {lb}: {m.verdict}] {m.evidence}" for lb, m in measured)
    verdict = verdicts.combine_verdicts([m.verdict for m in ms]) if ms else "not testable: no run"
    return _row(claim_id, source, claim, paper_value, shown, len(ms), dataset_used, verdict, ev, paper_number,
                mean, std, ", ".join(labels), n_img, lo, hi)


# ================================================================ findings

def _concat(runs_per_ds: list[dict[str, pd.DataFrame]], name: str) -> pd.DataFrame:
    frames = [t[name] for t in runs_per_ds if name in t]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _by_seed(runs: _Runs, datasets: Sequence[str], question: str) -> dict[str, list[dict[str, pd.DataFrame]]]:
    """seed label -> [tables of each dataset that has this seed]."""
    out: dict[str, list[dict[str, pd.DataFrame]]] = {}
    for ds in datasets:
        for label, tables, _ in runs.get(ds, question):
            out.setdefault(label, []).append(tables)
    return out


def _finding_functions() -> dict[int, Callable[[list[dict[str, pd.DataFrame]]], dict]]:
    """Finding number -> the library's test of it on one seed's published tables (the per-image
    tables, so the deciding differences get their bootstrap intervals)."""
    def f9(ts):
        pi = _concat(ts, "per_image")
        return rq4.finding_9(_concat(ts, "table1"), per_image=pi if len(pi) else None)

    def f10(ts):
        tr = _concat(ts, "transfer")
        return rq4.finding_10(_concat(ts, "table3"), transfer=tr if len(tr) else None)

    return {
        1: lambda ts: rq1.finding_1(_concat(ts, "per_image")),
        2: lambda ts: rq1.finding_2(_concat(ts, "per_image"), _concat(ts, "summary")),
        3: lambda ts: rq2.finding_3(_concat(ts, "per_image")),
        4: lambda ts: rq2.finding_4(_concat(ts, "per_image")),
        5: lambda ts: rq2.finding_5([t["summary"] for t in ts]),
        6: lambda ts: rq3.finding_6(_concat(ts, "per_image")),
        7: lambda ts: rq3.finding_7(_concat(ts, "per_image")),
        8: lambda ts: rq3.finding_8([t["summary"] for t in ts]),
        9: f9,
        10: f10,
    }


def _finding_rows(runs: _Runs, main: Sequence[str], others: Sequence[str]) -> list[dict]:
    rows = []
    funcs = _finding_functions()
    for n, (question, section, text) in FINDINGS.items():
        fid, src = f"F{n}", f"Finding {n} ({section})"
        seeds = _by_seed(runs, main, question)
        used = [ds for ds in main if runs.has(ds, question)]
        ds_text = "; ".join(_label(d) for d in used) or "—"
        if not main:
            why = (f"the findings are judged on CIFAR data only; {', '.join(others)} cannot stand in for it"
                   if others else "no dataset requested")
            rows.append(_row(fid, src, text, "stated", "—", 0, "—", f"not testable: {why}", why))
            continue
        if not seeds:
            why = f"no published {question} results for {', '.join(main)}"
            rows.append(_row(fid, src, text, "stated", "—", 0, ds_text, f"not testable: {why}", why))
            continue
        if n in (5, 8) and larger_smaller(used) is None:
            only = ", ".join(used)
            rows.append(_row(fid, src, text, "stated", "—", len(seeds), ds_text,
                             f"not testable: needs CIFAR-100 beside CIFAR-10; of those only {only} ran",
                             "needs a dataset with larger models (CIFAR-100) next to one with smaller models "
                             f"(CIFAR-10); only {only} ran", seeds=", ".join(seeds)))
            continue
        measured = []
        for label, tables in seeds.items():
            n_im = 0
            try:
                res = funcs[n](tables)
                v, ev, n_im = res["verdict"], res["evidence"], int(res.get("n_images", 0))
                verdicts.family(v)
            except (ValueError, KeyError) as e:  # e.g. Finding 9 without ResNet-56 in the run
                v, ev = f"not testable: {str(e)[:160]}", f"not testable: {e}"
            measured.append((label, _M(math.nan, n_images=n_im, verdict=v, evidence=ev)))
        row = _aggregate(fid, src, text, "stated", ds_text, measured)
        row["reproduced_value"] = "; ".join(f"{m.verdict}" + (f" (seed {lb})" if len(measured) > 1 else "")
                                            + f", n={m.n_images} images" for lb, m in measured)
        rows.append(row)
    return rows


# ================================================================ Tables 1-3

def _rows_where(df: pd.DataFrame, **eq) -> pd.DataFrame:
    for k, v in eq.items():
        df = df[df[k] == v]
    return df


def _cell_measure(row: pd.Series, col: str, n_col: str, paper: float, tol: float, pct: bool, digits: int,
                  unit: str) -> _M:
    """One run's table cell: value, 95 % interval (the table's ``<col>_lo``/``_hi``; a Wilson
    interval from the count when an older table lacks them) and :func:`dynn_lib.verdicts.agreement`."""
    v = float(row[col]) if col in row.index and row[col] is not None else math.nan
    n = int(row[n_col]) if n_col in row.index and not pd.isna(row[n_col]) else 0
    lo = float(row[col + "_lo"]) if col + "_lo" in row.index else math.nan
    hi = float(row[col + "_hi"]) if col + "_hi" in row.index else math.nan
    if pct and math.isnan(lo) and not math.isnan(v) and n:
        lo, hi = metrics.wilson_interval(round(v * n / 100), n)
    if math.isnan(v):
        return _M(v, n_images=n, verdict="not testable: reproduced value undefined (no images or no examples)",
                  evidence="reproduced value undefined (no images or no examples)")
    if math.isnan(lo) or math.isnan(hi):  # a bootstrap over too few images: the value stands, no interval
        return _M(v, lo, hi, n, "inconclusive: no interval at this n, so the paper's number cannot be judged",
                  f"reproduced {_num(v, digits, unit)} over {n} images {_ci(lo, hi, digits)}; paper {paper:g}{unit}")
    verdict = verdicts.agreement(lo, hi, paper, tol)
    ev = (f"reproduced {_num(v, digits, unit)} with 95 % interval {_ci(lo, hi, digits)} over {n} images, widened by "
          f"the tolerance {tol:g}{unit}: {_ci(lo - tol, hi + tol, digits)}; paper {paper:g}{unit} "
          + ("inside" if verdicts.family(verdict) != "does not hold" else "outside")
          + ("; interval wider than 2 × tolerance, so this n cannot decide" if verdict == "inconclusive" else ""))
    return _M(v, lo, hi, n, verdict, ev)


def _best_alpha_measure(tables: dict[str, pd.DataFrame], arch: str, paper_alpha: float) -> _M | None:
    """Best α of one run: "not testable" when no α succeeded; "inconclusive" when every α gives the
    same rate; "holds" when the best α is the paper's, or the paper's α ties with it for the best
    rate; "inconclusive" when the success at the paper's α has a Wilson interval overlapping the
    best one's (the two α cannot be told apart at this n); "does not hold" otherwise."""
    t1 = _rows_where(tables.get("table1", pd.DataFrame()), arch=arch) if "table1" in tables else pd.DataFrame()
    if not len(t1):
        return None
    r = t1.iloc[0]
    best, n = float(r["best_alpha"]), int(r["n_images"])
    if math.isnan(best):
        return _M(best, n_images=n, verdict="not testable: no Early-Attack rate in this run",
                  evidence="no Early-Attack rate")
    if float(r["early_attack"]) == 0:
        return _M(best, n_images=n, verdict="not testable: no α succeeded, so there is no best α",
                  evidence=f"0 successes at every α on {n} images")
    t2 = _rows_where(tables.get("table2", pd.DataFrame()), arch=arch) if "table2" in tables else pd.DataFrame()
    rates = ({float(v) for c, v in t2.iloc[0].items() if str(c).startswith("alpha=") and not str(c).endswith(
        ("_lo", "_hi"))} if len(t2) else set())
    if len(rates) == 1:
        return _M(best, n_images=n, verdict="inconclusive: every α gives the same rate, so no α is the best",
                  evidence=f"{rates.pop():.1f}% at every α on {n} images")
    if math.isclose(best, paper_alpha):
        return _M(best, n_images=n, verdict="holds", evidence=f"best α {best:g} = paper's {paper_alpha:g}")
    col = rq4.alpha_column(paper_alpha)
    if not len(t2) or col not in t2.columns:
        return _M(best, n_images=n, verdict=f"not testable: α={paper_alpha:g} not in this run's grid",
                  evidence=f"best α {best:g}; the paper's α={paper_alpha:g} did not run")
    row = t2.iloc[0]
    bcol = rq4.alpha_column(best)

    def ci(c):
        if c + "_lo" in row.index:
            return float(row[c + "_lo"]), float(row[c + "_hi"])
        return metrics.wilson_interval(round(float(row[c]) * n / 100), n)

    if math.isclose(float(row[col]), float(row[bcol])):  # a tie: the paper's α is one of the best
        return _M(best, n_images=n, verdict="holds",
                  evidence=(f"the paper's α={paper_alpha:g} ties with α={best:g} for the best rate "
                            f"({float(row[col]):.1f}% on {n} images; Table 1 names the smallest tied α)"))
    (pl, ph), (bl, bh) = ci(col), ci(bcol)
    overlap = pl <= bh and bl <= ph
    verdict = "inconclusive" if overlap else "does not hold"
    return _M(best, n_images=n, verdict=verdict,
              evidence=(f"best α {best:g} ({float(row[bcol]):.1f}% {_ci(bl, bh, 1)}) vs the paper's α={paper_alpha:g} "
                        f"({float(row[col]):.1f}% {_ci(pl, ph, 1)}) on {n} images: intervals "
                        + ("overlap, the two α cannot be told apart" if overlap else "do not overlap")))


PAPER_RQ4_KIND = "sdn"
"""The DyNN kind the paper's Tables 1-3 attacked (the SDN-trained networks its released code loads);
a run of another kind (``-p kind ic_only``) leaves those cells not testable rather than compare
other networks with them."""


def rq4_kinds(table: pd.DataFrame | None) -> list[str]:
    """The DyNN kinds a published RQ4 table attacked (its ``kind`` column), sorted; [] when it has none."""
    if table is None or "kind" not in table:
        return []
    return sorted({str(k) for k in table["kind"].dropna()})


def _cell(runs: _Runs, datasets: Sequence[str], family: str, claim_id: str, source: str, claim: str,
          paper: float, name: str, measure: Callable[[dict[str, pd.DataFrame]], _M | None], digits: int = 1,
          unit: str = "", paper_text: str | None = None) -> dict:
    ds = paper_dataset_for(family, datasets)
    ptxt = paper_text if paper_text is not None else f"{paper:g}{unit}"
    if ds is None:
        why = f"the paper's dataset ({_PAPER_NAMES[family]}) did not run in this build"
        return _row(claim_id, source, claim, ptxt, "—", 0, "—", f"not testable: {why}", why, paper)
    if not runs.has(ds, "rq4"):
        why = f"no published rq4 results for {ds}"
        return _row(claim_id, source, claim, ptxt, "—", 0, _label(ds), f"not testable: {why}", why, paper)
    kinds = sorted({k for _, tables, _ in runs.get(ds, "rq4") for k in rq4_kinds(tables.get(name))})
    if set(kinds) - {PAPER_RQ4_KIND}:
        why = (f"the published rq4 results of {ds} attacked the {' and '.join(kinds)} DyNNs (profile field kind); "
               f"the paper's Tables 1-3 are of the {PAPER_RQ4_KIND}-trained ones, which its released code loads")
        return _row(claim_id, source, claim, ptxt, "—", 0, _label(ds), f"not testable: {why}", why, paper)
    measured = [(label, m) for label, tables, _ in runs.get(ds, "rq4") if name in tables
                for m in [measure(tables)] if m is not None]
    if not measured:
        why = f"the published {name} of {ds} has no row for this model or pair"
        return _row(claim_id, source, claim, ptxt, "—", 0, _label(ds), f"not testable: {why}", why, paper)
    return _aggregate(claim_id, source, claim, ptxt, _label(ds), measured, paper, digits, unit)


def _table_rows(runs: _Runs, datasets: Sequence[str], pct_tol: float, t2_tol: float) -> list[dict]:
    rows = []
    t1_cols = (("early_attack", "Early Attack success at its best α (%)", "%"),
               ("best_alpha", "best α", ""), ("pgd", "PGD baseline success (%)", "%"),
               ("fgsm", "FGSM baseline success (%)", "%"))

    def first(t: pd.DataFrame, **eq) -> pd.Series | None:
        sub = _rows_where(t, **eq)
        return sub.iloc[0] if len(sub) else None

    for (fam, arch), paper in rq4.PAPER_TABLE1.items():
        for col, what, unit in t1_cols:
            if col == "best_alpha":
                meas = (lambda ts, a=arch, p=paper[col]: _best_alpha_measure(ts, a, p))
            else:
                meas = (lambda ts, a=arch, c=col, p=paper[col], u=unit: (
                    None if (r := first(ts["table1"], arch=a)) is None
                    else _cell_measure(r, c, "n_images", p, pct_tol, True, 1, u)))
            rows.append(_cell(runs, datasets, fam, f"T1-{fam}-{arch}-{col}",
                              f"Table 1, {_PAPER_NAMES[fam]} {_ARCH[arch]}",
                              f"{what}, {_PAPER_NAMES[fam]} {_ARCH[arch]}", paper[col], "table1", meas,
                              digits=1 if unit else 3, unit=unit))
    for (fam, arch), per_alpha in rq4.PAPER_TABLE2.items():
        for alpha, paper in per_alpha.items():
            col = rq4.alpha_column(alpha)
            meas = (lambda ts, a=arch, c=col, p=paper: (
                None if (r := first(ts["table2"], arch=a)) is None or c not in r.index
                else _cell_measure(r, c, "n_images", p, pct_tol, True, 1, "%")))
            rows.append(_cell(runs, datasets, fam, f"T2-{fam}-{arch}-a{alpha:g}",
                              f"Table 2, {_PAPER_NAMES[fam]} {_ARCH[arch]} α={alpha:g}",
                              f"Early Attack success (%) with α = {alpha:g}, {_PAPER_NAMES[fam]} {_ARCH[arch]}",
                              paper, "table2", meas, unit="%"))
    for (fam, sur), targets in rq4.PAPER_TABLE3.items():
        for tgt, vals in targets.items():
            # T1 is a share of all n examples; T2 a mean over the n_t1_kept examples that kept the answer
            for key, n_col, tol, digits, unit, pct, what in (
                    ("t1", "n", pct_tol, 1, "%", True, "T1: share of examples keeping the target's final answer (%)"),
                    ("t2", "n_t1_kept", t2_tol, 2, "", False, "T2: mean number of the target's internal exits "
                                                              "moved off its answer")):
                meas = (lambda ts, s=sur, g=tgt, k=key, nc=n_col, p=vals[key], tl=tol, pc=pct, d=digits, u=unit: (
                    None if (r := first(ts["table3"], surrogate_arch=s, target_arch=g)) is None
                    else _cell_measure(r, k, nc, p, tl, pc, d, u)))
                rows.append(_cell(runs, datasets, fam, f"T3-{fam}-{sur}-{tgt}-{key}",
                                  f"Table 3, {_PAPER_NAMES[fam]} {key.upper()} {_T3_ARCH[sur]}→{_T3_ARCH[tgt]}",
                                  f"{what}, {_PAPER_NAMES[fam]} {_ARCH[sur]} → {_ARCH[tgt]}", vals[key], "table3",
                                  meas, digits=digits, unit=unit))
    return rows


# ================================================================ statements from the text

def _eps_rows(df: pd.DataFrame, eps: float = 8 / 255) -> pd.DataFrame:
    """Rows at the stored ε closest to ``eps`` (the protocol default 8/255)."""
    if df.empty or "eps" not in df.columns:
        return df
    values = np.unique(df["eps"].astype(float).to_numpy())
    e = values[np.argmin(np.abs(values - eps))]
    return df[np.isclose(df["eps"].astype(float), e, rtol=0, atol=1e-9)]


def _eps_text(df: pd.DataFrame) -> str:
    if df.empty or "eps_255" not in df.columns:
        return ""
    return f" at ε = {float(df['eps_255'].iloc[0]):g}/255"


class _Statement:
    """One quoted statement: where it comes from, what it says, and how one run measures and
    judges it (``measure(tables) -> _M``; with ``needs``, ``measure(tables, runs, datasets, seed)``)."""

    def __init__(self, sid: str, source: str, claim: str, paper_value: str, family: str, question: str,
                 measure: Callable[..., _M], digits: int = 1, unit: str = "%", paper_number: float = math.nan,
                 needs: Sequence[str] = ()):
        self.sid, self.source, self.claim, self.paper_value = sid, source, claim, paper_value
        self.family, self.question, self.measure = family, question, measure
        self.digits, self.unit, self.paper_number, self.needs = digits, unit, paper_number, tuple(needs)


def _statement_row(runs: _Runs, datasets: Sequence[str], st: _Statement) -> dict:
    ds = paper_dataset_for(st.family, datasets)
    if ds is None:
        why = f"the paper's dataset ({_PAPER_NAMES[st.family]}) did not run in this build"
        return _row(st.sid, st.source, st.claim, st.paper_value, "—", 0, "—", f"not testable: {why}", why,
                    st.paper_number)
    missing = [n for n in st.needs if paper_dataset_for(n, datasets) is None]
    if missing:
        why = f"needs {', '.join(_PAPER_NAMES[m] for m in missing)} results too; not run in this build"
        return _row(st.sid, st.source, st.claim, st.paper_value, "—", 0, _label(ds), f"not testable: {why}", why,
                    st.paper_number)
    runs_ds = runs.get(ds, st.question)
    if not runs_ds:
        why = f"no published {st.question} results for {ds}"
        return _row(st.sid, st.source, st.claim, st.paper_value, "—", 0, _label(ds), f"not testable: {why}", why,
                    st.paper_number)
    measured = []
    for label, tables, _ in runs_ds:
        try:
            m = st.measure(tables, runs, datasets, label) if st.needs else st.measure(tables)
        except (KeyError, ValueError, IndexError) as e:
            m = _M(math.nan, verdict=f"not testable: not measurable ({str(e)[:120]})",
                   evidence=f"not measurable: {e}")
        measured.append((label, m))
    return _aggregate(st.sid, st.source, st.claim, st.paper_value, _label(ds), measured, st.paper_number, st.digits,
                      st.unit)


def _judged(value: float, lo: float, hi: float, n: int, outcome: str, evidence: str) -> _M:
    """A statement's run measurement from one comparison outcome (``verdicts.combine``)."""
    if math.isnan(value):
        return _M(value, lo, hi, n, "not testable: nothing to measure (no row for this setting, or an empty "
                  "denominator such as no flipped input)", evidence)
    return _M(value, lo, hi, n, verdicts.combine([outcome]), evidence)


def _share(df: pd.DataFrame, col: str, count: str, total: str) -> tuple[float, float, float, int]:
    """Pooled share (%) over the selected summary rows with its Wilson interval (the rows are
    different images or one setting; one row in practice)."""
    if not len(df):
        return math.nan, math.nan, math.nan, 0
    k = float(df[count].sum()) if count in df.columns else float((df[col] * df[total] / 100).round().sum())
    n = int(df[total].sum())
    if n == 0:
        return math.nan, math.nan, math.nan, 0
    lo, hi = metrics.wilson_interval(k, n)
    return 100.0 * k / n, lo, hi, n


def _matched(big: pd.DataFrame, small: pd.DataFrame, keys: Sequence[str], k_col: str, n_col: str, rate_col: str,
             direction: str) -> list[dict]:
    """Matched cells (same ``keys``) of two datasets' summaries: difference big minus small with
    its Newcombe interval and the outcome of ``difference {direction} 0``."""
    def counts(df):
        df = df.copy()
        if k_col not in df.columns:
            df[k_col] = (df[rate_col] * df[n_col] / 100).round()
        return one_row_per_cell(df, keys)[[k_col, n_col, rate_col]]

    a, b = counts(big), counts(small)
    out = []
    for key in a.index.intersection(b.index):
        d, lo, hi = metrics.newcombe_interval(a.loc[key, k_col], a.loc[key, n_col], b.loc[key, k_col],
                                              b.loc[key, n_col])
        if math.isnan(d):
            continue
        out.append({"key": key, "difference": d, "lo": lo, "hi": hi, "outcome": verdicts.compare(lo, hi, 0.0, direction),
                    "n": (int(a.loc[key, n_col]), int(b.loc[key, n_col]))})
    return out


def _statements(psnr_tol: float) -> list[_Statement]:
    S: list[_Statement] = []

    def n_img(df: pd.DataFrame) -> int:
        return int(df[["dataset", "image"]].drop_duplicates().shape[0]) if len(df) else 0

    def rq1_rows(t):
        pi = t["per_image"]
        return pi if "success" in pi.columns else rq1.add_success(pi)

    def success_gap(pi, a, b, what):
        """Success rate of rows ``a`` minus rows ``b`` (paired bootstrap over images), judged > 0."""
        diff, lo, hi = metrics.bootstrap_rate_difference(a["image"], a["success"], a["correct_clean"], b["image"],
                                                         b["success"], b["correct_clean"])
        return _judged(diff, lo, hi, n_img(pi), verdicts.compare(lo, hi, 0.0, ">"),
                       f"{what} {_num(diff, 1, ' pp')} {_ci(lo, hi, 1)} (95 % bootstrap over {n_img(pi)} images)")

    def d2s_minus_s2d(t):
        pi = rq1_rows(t)
        return success_gap(pi, pi[pi["direction"] == "D2S"], pi[pi["direction"] == "S2D"],
                           "success over target-correct images pooled over pairs, attacks and ε: D2S minus S2D")

    def fgsm_minus_pgd(t):
        pi = rq1_rows(t)
        pi = pi[pi["direction"] == "S2D"]
        return success_gap(pi, pi[pi["attack"] == "fgsm"], pi[pi["attack"] == "pgd"],
                           "success against DyNN targets (S2D pairs, pooled over pairs and ε): FGSM minus PGD")

    for fam in ("cifar10", "cifar100"):
        S.append(_Statement(f"S-d2s-gt-s2d-{fam}", "Text §3.2",
                            f"{_PAPER_NAMES[fam]}: on average D2S transfer succeeds more often than S2D",
                            "D2S > S2D", fam, "rq1", d2s_minus_s2d, unit=" pp"))
        S.append(_Statement(f"S-fgsm-gt-pgd-{fam}", "Text §3.2",
                            f"{_PAPER_NAMES[fam]}: against DyNN targets FGSM transfers better than PGD",
                            "FGSM > PGD", fam, "rq1", fgsm_minus_pgd, unit=" pp"))

    def versus_cifar10(name: str, direction: str):
        """Matched RQ1 cells (pair, attack, ε) of this dataset against the same seed's CIFAR-10
        run, each direction (D2S, S2D) on its own; each cell a Newcombe interval."""
        def m(t, runs, datasets, label):
            c10 = paper_dataset_for("cifar10", datasets)
            other = dict((lb, tb) for lb, tb, _ in runs.get(c10, "rq1"))
            if label not in other:
                raise KeyError(f"no {c10} rq1 run with seed {label}")
            a, b = t["summary"], other[label]["summary"]
            keys = ["direction", "pair", "attack", "eps_255"]
            cells = _matched(a, b, keys, "n_success", "n_correct", "success_rate", direction)
            per_dir = {}
            for c in cells:
                per_dir.setdefault(c["key"][0], []).append(c["outcome"])
            verdict = (verdicts.combine([o for os in per_dir.values() for o in os]) if cells
                       else "not testable: no matched (pair, attack, ε) cell")
            mean = float(np.mean([c["difference"] for c in cells])) if cells else math.nan
            ev = (f"matched cells only (same pair, attack, ε), {name} minus {c10}, 95 % Newcombe intervals: "
                  + "; ".join(f"{d}: {verdicts.combine(os)} ({os.count('supports')} of {len(os)} cells)"
                              for d, os in per_dir.items())
                  + " (" + "; ".join(f"{' '.join(str(x) for x in c['key'])}: {_num(c['difference'], 1, ' pp')} "
                                     f"{_ci(c['lo'], c['hi'], 1)}" for c in cells) + ")")
            n = int(a["n"].max()) if "n" in a.columns and len(a) else 0
            return _M(mean, n_images=n, verdict=verdict, evidence=ev)
        return m

    S.append(_Statement("S-c100-gt-c10", "Text §3.2", "Transfer attacks succeed more often on CIFAR-100 than on "
                        "CIFAR-10 (matched cells, each direction on its own)", "CIFAR-100 > CIFAR-10", "cifar100",
                        "rq1", versus_cifar10("CIFAR-100", ">"), unit=" pp", needs=("cifar10",)))

    for fam in ("cifar10", "cifar100"):
        for sur in ("vgg16", "mobilenet", "resnet56"):
            def early(t, sur=sur):
                eu = _eps_rows(t["exit_used"])
                sh = rq1.share_early_exits(eu[(eu["attack"] == "pgd") & (eu["surrogate_arch"] == sur)])
                if len(sh):
                    sh = sh.assign(k=(sh["share_exits_0_2"] * sh["n"] / 100).round())
                v, lo, hi, n = _share(sh, "share_exits_0_2", "k", "n")
                return _judged(v, lo, hi, n, verdicts.compare(lo, hi, 70.0, ">"),
                               f"PGD examples of the DyNN {sur} surrogate from exits 0-2{_eps_text(eu)}: "
                               f"{_num(v, 1, ' %')} {_ci(lo, hi, 1)} of {n}")
            S.append(_Statement(f"S-pgd-exits012-{fam}-{sur}", "Text §3.2 / Fig. 7",
                                f"{_PAPER_NAMES[fam]}, DyNN {_ARCH[sur]} surrogate (D2S): over 70 % of PGD "
                                "examples come from exits 0-2", "> 70%", fam, "rq1", early, paper_number=70))

    def raised(setting, attack, arch, judge):
        def m(t):
            s = _eps_rows(t["summary"])
            s = s[(s["setting"] == setting) & (s["attack"] == attack) & (s["target_arch"] == arch)
                  & (s["target_kind"] != "cnn")]
            v, lo, hi, n = _share(s, "share_raised_gt1", "n_raised_gt1", "n")
            return _judged(v, lo, hi, n, judge(lo, hi),
                           f"{setting} {attack.upper()} {arch}{_eps_text(s)}: exit raised by more than one for "
                           f"{_num(v, 1, ' %')} {_ci(lo, hi, 1)} of {n} inputs")
        return m

    for arch in ("mobilenet", "vgg16"):
        S.append(_Statement(f"S-wb-fgsm-raised-cifar10-{arch}", "Text §4.2 / Fig. 3",
                            f"CIFAR-10 white-box, {_ARCH[arch]}: 25-37 % of FGSM examples move the exit up by "
                            "more than one", "25–37%", "cifar10", "rq2",
                            raised("white-box", "fgsm", arch, lambda lo, hi: verdicts.within(lo, hi, 25, 37))))
    for arch in ("vgg16", "mobilenet", "resnet56"):
        S.append(_Statement(f"S-wb-fgsm-raised-cifar100-{arch}", "Text §4.2 / Fig. 10",
                            f"CIFAR-100 white-box, {_ARCH[arch]}: over 45 % of FGSM examples move the exit up by "
                            "more than one", "> 45%", "cifar100", "rq2",
                            raised("white-box", "fgsm", arch, lambda lo, hi: verdicts.compare(lo, hi, 45, ">")),
                            paper_number=45))
    for arch in ("resnet56", "vgg16"):
        S.append(_Statement(f"S-bb-pgd-raised-cifar10-{arch}", "Text §4.2 / Fig. 4",
                            f"CIFAR-10 black-box, {_ARCH[arch]} target: over 40 % of PGD examples move the exit "
                            "up by more than one", "> 40%", "cifar10", "rq2",
                            raised("black-box", "pgd", arch, lambda lo, hi: verdicts.compare(lo, hi, 40, ">")),
                            paper_number=40))

    def exit0(setting, attack, arch, col, bound):
        def m(t):
            s = _eps_rows(t["summary"])
            s = s[(s["setting"] == setting) & (s["attack"] == attack) & (s["target_arch"] == arch)
                  & (s["target_kind"] != "cnn")].copy()
            if len(s) and "n_changed_exit0" not in s.columns:
                s["n_changed_exit0"] = (s["share_changed_exit0"].fillna(0) * s["n_flipped"] / 100).round()
            if len(s) and col == "share_not_changed_exit0":
                s["k"] = s["n_flipped"] - s["n_changed_exit0"]
            else:
                s["k"] = s["n_changed_exit0"] if len(s) else []
            v, lo, hi, n = _share(s, col, "k", "n_flipped")
            what = "changed at exit 0" if col == "share_changed_exit0" else "NOT changed at exit 0"
            return _judged(v, lo, hi, n, verdicts.compare(lo, hi, bound, ">"),
                           f"{setting} {attack.upper()} {arch}{_eps_text(s)}: {_num(v, 1, ' %')} {_ci(lo, hi, 1)} "
                           f"of {n} flipped inputs {what}")
        return m

    for fam in ("cifar10", "cifar100"):
        for arch in ("vgg16", "mobilenet", "resnet56"):
            for attack in ("fgsm", "pgd"):
                S.append(_Statement(f"S-wb-exit0-{fam}-{arch}-{attack}", "Text §5.2 / Fig. 5" if fam == "cifar10"
                                    else "Text §5.2 / Fig. 8",
                                    f"{_PAPER_NAMES[fam]} white-box, {_ARCH[arch]}, {attack.upper()}: over 77 % of "
                                    "flipped inputs already change at the first exit", "> 77%", fam, "rq3",
                                    exit0("white-box", attack, arch, "share_changed_exit0", 77), paper_number=77))
    for attack in ("fgsm", "pgd"):
        S.append(_Statement(f"S-bb-vgg-not-exit0-cifar10-{attack}", "Text §5.2 / Fig. 6",
                            f"CIFAR-10 black-box, VGG target, {attack.upper()}: over 45 % of flipped inputs leave the "
                            "first exit's answer unchanged", "> 45%", "cifar10", "rq3",
                            exit0("black-box", attack, "vgg16", "share_not_changed_exit0", 45), paper_number=45))

    def psnr_value(source):
        def m(t):
            eq = t["psnr_equivalence"]
            st = appendix.psnr_statement(eq, psnr_tol)
            if not st["nearest"]:
                raise KeyError("no FGSM/PGD PSNR rows")
            col = "psnr_sdnn" if source == "SDNN" else "psnr_dynn"
            near = "; ".join(f"{a}: {(s if source == 'SDNN' else d):.2f} dB at ε={e:g}/255"
                             for a, (e, s, d) in st["nearest"].items())
            v = float(eq.loc[eq["nearest_paper"] & eq["attack"].isin(["fgsm", "pgd"]), col].mean())
            per = "; ".join(f"{r.attack} {r.eps_255:g}/255 {getattr(r, col):.2f} dB" for r in eq.itertuples())
            why = ("the paper states no ε for its PSNR, so its number cannot be matched to one budget; ε nearest "
                   f"{appendix.PAPER_PSNR[source]:.2f} dB: {near}")
            return _M(v, n_images=st["n_images"], verdict=f"not testable: {why}",
                      evidence=f"{source}-source mean PSNR per attack and ε: {per}. {why}")
        return m

    S.append(_Statement("S-psnr-sdnn", "Appendix F", "Mean PSNR of adversarial images made on SDNN surrogates "
                        "(this build: FGSM and PGD averaged, each at the ε whose PSNR is nearest the paper's)",
                        "23.20 dB", "cifar10", "appendix", psnr_value("SDNN"), digits=2, unit=" dB",
                        paper_number=23.20))
    S.append(_Statement("S-psnr-dynn", "Appendix F", "Mean PSNR of adversarial images made on DyNN surrogates "
                        "(this build: FGSM and PGD averaged, each at the ε whose PSNR is nearest the paper's)",
                        "23.19 dB", "cifar10", "appendix", psnr_value("DyNN"), digits=2, unit=" dB",
                        paper_number=23.19))

    def psnr_same(t):
        st = appendix.psnr_statement(t["psnr_equivalence"], psnr_tol)
        eq = t["psnr_equivalence"]
        eq = eq[eq["attack"].isin(["fgsm", "pgd"])]
        worst = float(eq["difference"].abs().max()) if len(eq) else math.nan
        return _M(worst, n_images=st["n_images"], verdict=st["verdict"], evidence=st["evidence"])

    S.append(_Statement("S-psnr-same", "Appendix F", "Adversarial images made on SDNN and on DyNN surrogates have "
                        f"the same PSNR (within ±{psnr_tol:g} dB), at every ε (this build: the largest |SDNN − DyNN| "
                        f"difference over attacks and ε)", "23.20 vs 23.19 dB", "cifar10",
                        "appendix", psnr_same, digits=3, unit=" dB"))

    def tiny_d2s(t):
        return d2s_minus_s2d(t)

    S.append(_Statement("S-tiny-d2s-gt-s2d", "Appendix G / Fig. 16", "Tiny ImageNet: D2S still transfers better "
                        "than S2D", "D2S > S2D", "tinyimagenet", "rq1", tiny_d2s, unit=" pp"))
    S.append(_Statement("S-tiny-lower", "Appendix G / Fig. 16", "Tiny ImageNet transfer rates are slightly lower "
                        "than CIFAR-10's (matched cells, each direction on its own)", "lower", "tinyimagenet", "rq1",
                        versus_cifar10("Tiny ImageNet", "<"), unit=" pp", needs=("cifar10",)))
    return S


# ================================================================ quotes beside the pages' tables

_QUOTES: dict[tuple[str, str, str, str, str], str] = {
    # (question, paper dataset, setting, attack, target arch or "*") -> what the text says (§4.2, §5.2)
    ("rq2", "cifar10", "white-box", "fgsm", "mobilenet"): "25–37 %",
    ("rq2", "cifar10", "white-box", "fgsm", "vgg16"): "25–37 %",
    ("rq2", "cifar100", "white-box", "fgsm", "*"): "> 45 %",
    ("rq2", "cifar10", "black-box", "pgd", "resnet56"): "> 40 %",
    ("rq2", "cifar10", "black-box", "pgd", "vgg16"): "> 40 %",
    ("rq2", "cifar10", "black-box", "fgsm", "*"): "about 35 %",
    ("rq2", "cifar100", "black-box", "*", "*"): "> 40 %",
    ("rq3", "cifar10", "white-box", "*", "*"): "> 77 %",
    ("rq3", "cifar100", "white-box", "*", "*"): "> 77 %",
    ("rq3", "cifar10", "white-box", "fgsm", "mobilenet"): "> 77 %; > 20 % later",
    ("rq3", "cifar10", "white-box", "fgsm", "resnet56"): "> 77 %; > 20 % later",
    ("rq3", "cifar10", "black-box", "*", "vgg16"): "> 45 % not at 0",
    ("rq3", "cifar100", "black-box", "*", "*"): "< 30 % not at 0",
}


def paper_quote(question: str, dataset: str, setting: str, attack: str, arch: str) -> str:
    """What the paper's text says about one (setting, attack, target) of RQ2 (share of inputs whose
    exit rises by more than one) or RQ3 (share first changed at exit 0); "" when it says nothing.
    ``dataset`` is a run dataset; it is mapped to the paper's (``cifar10-jpeg`` and ``synthetic``
    stand in for CIFAR-10, see :data:`STAND_INS`)."""
    fam = next((f for f, names in STAND_INS.items() if dataset in names), None)
    if fam is None:
        return ""
    for key in ((question, fam, setting, attack, arch), (question, fam, setting, attack, "*"),
                (question, fam, setting, "*", arch), (question, fam, setting, "*", "*")):
        if key in _QUOTES:
            return _QUOTES[key]
    return ""


# ================================================================ the ledger

def claims_ledger(results_dir: str | Path | Sequence[str | Path], profile: str, datasets: Sequence[str],
                  *, pct_tol: float = 10.0, t2_tol: float = 0.5, psnr_tol: float = 0.5) -> pd.DataFrame:
    """Every checkable claim of the paper with the reproduced value and a verdict (module docstring).

    Args:
        results_dir: one results folder, or several (one per seed; see :func:`results_dirs`).
        profile: the profile whose results are read (``<results>/<profile>/...``).
        datasets: the datasets that ran (e.g. ``["cifar10-jpeg", "tinyimagenet"]``).
        pct_tol, t2_tol, psnr_tol: tolerances of the table-cell verdicts (percentage points, T2
            exits, dB; :func:`dynn_lib.verdicts.agreement`) and the PSNR equivalence margin.
    Returns:
        One row per claim, columns :data:`COLUMNS` then ``paper_number``, ``reproduced_mean``,
        ``reproduced_std`` (over seeds), ``reproduced_lo``, ``reproduced_hi`` (the run's 95 %
        interval over images; NaN with several seeds, whose intervals are in the text) and
        ``seeds``. Nothing is computed except from the stored tables.
    """
    for name, tol in (("pct_tol", pct_tol), ("t2_tol", t2_tol), ("psnr_tol", psnr_tol)):
        if not isinstance(tol, (int, float)) or isinstance(tol, bool) or not tol >= 0:
            raise ValueError(f"{name} must be a number >= 0, got {tol!r}")
    dirs = [Path(results_dir)] if isinstance(results_dir, (str, Path)) else [Path(d) for d in results_dir]
    datasets = [d for d in dict.fromkeys(datasets) if d]
    for d in datasets:
        data.get_info(d)
    runs = _Runs(dirs, profile)
    main = [d for d in datasets if d not in _NOT_FOR_FINDINGS]
    rows = _finding_rows(runs, main, [d for d in datasets if d in _NOT_FOR_FINDINGS])
    rows += _table_rows(runs, datasets, pct_tol, t2_tol)
    rows += [_statement_row(runs, datasets, st) for st in _statements(psnr_tol)]
    df = pd.DataFrame(rows)
    return df[list(COLUMNS) + ["paper_number", "reproduced_mean", "reproduced_std", "reproduced_lo", "reproduced_hi",
                               "seeds"]]


def _family(verdict: str) -> str:
    return verdicts.family(verdict)


def summary_counts(ledger: pd.DataFrame) -> pd.DataFrame:
    """Rows per verdict (verdict families: "not testable: ..." counts as "not testable"), per kind
    of claim (finding, table cell, text statement)."""
    kind = ledger["claim_id"].str.slice(0, 1).map({"F": "finding", "T": "table cell", "S": "text statement"})
    fam = ledger["verdict"].map(_family)
    out = pd.crosstab(fam, kind, margins=True, margins_name="total")
    order = [v for v in VERDICTS if v in out.index] + ["total"]
    return out.loc[order].rename_axis(index="verdict", columns=None)


_COLOURS = {"holds": "#d4edda", "partly": "#fff3cd", "does not hold": "#f8d7da", "inconclusive": "#ffe8cc",
            "not testable": "#e2e3e5"}
"""Background colour of each verdict family in :func:`style_ledger`."""


def style_ledger(ledger: pd.DataFrame, columns: Sequence[str] = COLUMNS):
    """A pandas Styler of the ledger with the verdict cell coloured by verdict family; a long evidence
    cell lists its comparisons one per line (:func:`dynn_lib.display.evidence_html`)."""
    from .display import evidence_html

    df = ledger[list(columns)]

    def colour(v):
        return f"background-color: {_COLOURS.get(_family(str(v)), '')}"

    styler = df.style.hide(axis="index").set_table_attributes('class="dataframe dynn-ledger"')
    if "evidence" in df.columns:
        styler = styler.format(evidence_html, subset=["evidence"])  # escapes the text itself
    return (styler
            .map(colour, subset=["verdict"])
            .set_properties(**{"vertical-align": "top", "text-align": "left"})
            .set_properties(subset=[c for c in ("evidence", "claim") if c in df.columns], **{"font-size": "0.85em"}))


# ================================================================ helpers of the book's pages

def page_overrides(question: str, overrides: dict[str, Any] | None) -> tuple[dict, dict]:
    """(profile fields, experiment-config fields) of ``overrides`` for ``question``.

    ``overrides`` has the meaning of ``dynn reproduce -p NAME VALUE``: any profile field
    (``n_train``, ``ea_iters``...) and any field of the question's experiment config
    (``steps``, ``alphas``...). As in :mod:`dynn_lib.reproduce`, names another question uses
    are ignored here (``alphas`` on the RQ1 page; ``archs``, RQ4's, on the model-zoo page too,
    which shows every architecture because RQ1-RQ3 use all three, as ``dynn reproduce``
    publishes it); names no question knows are an error.
    """
    from .experiments.runner import _config_class, split_overrides
    from .experiments.rq4 import RQ4Config
    from .experiments.common import ExperimentConfig
    from .profiles import Profile

    overrides = dict(overrides or {})
    if question not in QUESTIONS:
        raise ValueError(f"unknown question {question!r}; accepted: {', '.join(QUESTIONS)}")
    known = ({f.name for f in fields(Profile)} | {f.name for f in fields(ExperimentConfig)}
             | {f.name for f in fields(RQ4Config)} | {"archs"}) - {"name"}
    bad = sorted(set(overrides) - known)
    if bad:
        raise ValueError(f"unknown override(s) {bad}; accepted: {sorted(known)}")
    cls = _config_class(question)
    accepted = ({f.name for f in fields(Profile)} - {"name"}) | ({f.name for f in fields(cls)} if cls else set())
    prof, conf = split_overrides(question, {k: _untuple(v) for k, v in overrides.items() if k in accepted})
    # Profile fields are tuples (milestones); papermill injects lists (and turns tuples into strings)
    return {k: tuple(v) if isinstance(v, list) else v for k, v in prof.items()}, conf


def _untuple(value: Any) -> Any:
    """Undo papermill's injection of a tuple as its string form ``"(35, 60)"``."""
    import ast

    if isinstance(value, str) and value.startswith("(") and value.endswith(")"):
        try:
            parsed = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            return value
        return list(parsed) if isinstance(parsed, tuple) else value
    return value


def provenance_table(results_dir: str | Path | Sequence[str | Path], profile: str,
                     datasets: Sequence[str]) -> pd.DataFrame:
    """One row per published (results folder, dataset, question): seeds, device, commit, wall time,
    creation time and the profile fields its config changed (:func:`dynn_lib.profiles.describe_changes`;
    "none" when it ran the profile as defined), read from the ``record.json`` files (what the
    claims page shows)."""
    dirs = [Path(results_dir)] if isinstance(results_dir, (str, Path)) else [Path(d) for d in results_dir]
    rows = []
    for d in dirs:
        for ds in datasets:
            for q in QUESTIONS:
                if not (results_path(d, profile, ds, q) / "record.json").is_file():
                    continue
                rec = load_record(d, profile, ds, q)
                rows.append({"folder": str(d), "dataset": ds, "question": q, "seeds": _seed_label(rec),
                             "generated data": bool(rec.get("generated_data")),
                             "device": rec.get("device_name") or rec.get("device"),
                             "git commit": str(rec.get("git_commit", ""))[:12],
                             "wall time s": float(rec.get("wall_time_s", float("nan"))),
                             "computed": rec.get("created", ""),
                             "profile changes": profiles.describe_changes(
                                 (rec.get("config") or {}).get("profile")) or "none"})
    return pd.DataFrame(rows, columns=["folder", "dataset", "question", "seeds", "generated data", "device",
                                       "git commit", "wall time s", "computed", "profile changes"])


class _HTML:
    def __init__(self, markup: str, text: str):
        self.markup, self.text = markup, text

    def _repr_html_(self) -> str:
        return self.markup

    def __repr__(self) -> str:
        return self.text


def _model_clash(results_dir: str | Path | None, profile: str, dataset: str, question: str | None) -> str:
    """The data note's warning on models that stand for different weights in two questions' results
    (involving ``question``, or any question when None); "" when none or no ``results_dir``."""
    if results_dir is None:
        return ""
    c = model_conflicts(results_dir, profile, dataset)
    if question is not None:
        c = c[c["model"].isin(c.loc[c["question"] == question, "model"])]
    if c.empty:
        return ""
    parts = []
    for model, rows in c.groupby("model", sort=True):
        by_w = rows.groupby("weights", sort=False)["question"].agg(", ".join)
        parts.append(f"<b>{html.escape(model)}</b>: " + "; ".join(
            f"weights {html.escape(w)} in {html.escape(qs)}" for w, qs in by_w.items()))
    return ("These results rest on different trainings of the same model (a results folder merged from two "
            "runs, e.g. two GPU slots that each trained it anew): " + " — ".join(parts) + ". Pages that "
            "read them describe different networks; publish every question again from one store "
            "(<code>dynn reproduce</code>, or one <code>gpu_run.sh</code> run).")


def data_note(record: dict, *, started: float | None = None, extra: Sequence[str] = (),
              details: bool = True, results_dir: str | Path | None = None) -> _HTML:
    """The data-honesty box of a page, computed from a published result's ``record.json``.

    States the dataset (with its label), whether it is GENERATED, the profile (``smoke`` numbers
    are meaningless) with every field that differs from that profile's definition (e.g. the
    epochs a GPU run's schedule probe chose, or a reader's ``-p n_eval 1000``), the device, the
    git commit, the wall time, whether the result was computed by this execution (``started``:
    ``time.time()`` before ``publish``) or loaded, and a warning when it was computed by other
    library code (:func:`dynn_lib.versions.is_current`).
    ``details=False`` keeps the dataset, profile and device lines only (plus ``extra``), for a
    page that summarises several results. ``results_dir`` (the folder ``record`` was read from):
    a warning names every model whose weights differ between this result and another question's
    of the same profile and dataset (:func:`dynn_lib.experiments.runner.model_conflicts`; with
    ``details=False``, every such model of the folder).
    """
    cfg = record.get("config", {})
    ds = cfg.get("dataset", "?")
    prof = (cfg.get("profile") or {}).get("name", "?")
    label = record.get("dataset_label") or data.get_info(ds).label
    generated = bool(record.get("generated_data"))
    created = record.get("created", "?")
    fresh = False
    if started is not None and created != "?":
        try:
            import calendar
            fresh = calendar.timegm(time.strptime(created, "%Y-%m-%dT%H:%M:%SZ")) >= int(started) - 1
        except ValueError:
            fresh = False
    warnings_ = []
    if generated:
        warnings_.append(f"The dataset <b>{html.escape(ds)}</b> is GENERATED data, not a real image dataset: "
                         "every number on this page is meaningless and says nothing about the paper.")
    if prof == "smoke":
        warnings_.append("Profile <b>smoke</b>: tiny training and attack budgets so that the page runs on a CPU in "
                         "minutes; the numbers carry no meaning, only the code paths are real.")
    if ds == "cifar10-jpeg":
        warnings_.append("CIFAR-10 here is a JPEG re-encoded copy (same labels, slightly different pixels), not the "
                         "official release.")
    current = versions.is_current(record)
    if current is False:
        warnings_.append(f"This result predates the library code of this build (code version "
                         f"{html.escape(str(record.get('code_version')))}, now {versions.code_version('results')}): "
                         "it was computed by other code; run <code>dynn reproduce</code> again to recompute it.")
    elif current is None:
        warnings_.append("This result's record names no code version (it was computed before versions were "
                         "recorded): it may predate the current code.")
    clash = _model_clash(results_dir, prof, ds, cfg.get("question") if details else None)
    if clash:
        warnings_.append(clash)
    changes = profiles.describe_changes(cfg.get("profile"))
    items = [("dataset", f"{ds} — {label}"), ("profile", f"{prof}, changed: {changes}" if changes else prof),
             ("seed", str(cfg.get("seed", "?"))),
             ("device", f"{record.get('device', '?')} ({record.get('device_name', '?')})"),
             ("git commit", str(record.get("git_commit", "?"))),
             ("wall time", f"{float(record.get('wall_time_s', float('nan'))):.1f} s"),
             ("result", ("computed by this execution" if fresh else f"loaded from the results folder (computed "
                                                                    f"{created})")),
             *[(k, v) for k, v in (e.split(": ", 1) for e in extra)]]
    if not details:
        items = [it for it in items if it[0] in ("dataset", "profile", "device")] + items[7:]
    level = "warning" if (generated or prof == "smoke" or not current or clash) else "note"
    rows = "".join(f"<li><b>{html.escape(k)}</b>: {html.escape(v)}</li>" for k, v in items)
    warn = "".join(f"<p>{w}</p>" for w in warnings_)
    markup = (f'<div class="admonition {level} dynn-data-note"><p class="admonition-title">What these numbers '
              f'come from</p>{warn}<ul>{rows}</ul></div>')
    text = "\n".join([*(html.unescape(re.sub(r"</?(?:b|code)>", "", w)) for w in warnings_),
                      *(f"{k}: {v}" for k, v in items)])
    return _HTML(markup, text)
