"""The claims ledger: every checkable statement of the paper next to what a reproduction measured,
read only from published results (:func:`dynn_lib.experiments.runner.load_results`).

Rows (:func:`claims_ledger`):

* ``F1`` ... ``F10``: the ten findings, paraphrased, with the verdict and evidence of the
  library's test of each (``rq1.finding_1`` ... ``rq4.finding_10``). Findings 5 and 8 compare a
  dataset with larger models (CIFAR-100) with one with smaller models (CIFAR-10); with only one
  of them present their verdict is ``"not testable: only <dataset> ran"``.
* ``T1-...``, ``T2-...``, ``T3-...``: one row per cell of the paper's Tables 1, 2 and 3
  (protocol section 10), paper value beside the reproduced one.
* ``S-...``: the percentages and comparisons quoted in the paper's text (protocol section 10,
  "Statements from the text") that the published tables can measure.

Which dataset answers for which paper dataset (``dataset_used``): the paper's CIFAR-10 cells are
compared with ``cifar10``, else ``cifar10-jpeg`` (CIFAR-10 re-encoded as JPEG), else
``synthetic`` (generated data; the comparison then only exercises the code, and the dataset
column says so); CIFAR-100 cells only with ``cifar100``; Tiny ImageNet statements only with
``tinyimagenet``. Findings 1-10 are tested on every requested dataset except Tiny ImageNet
(which the paper only uses for RQ1, and which has its own text rows).

Seeds: the results folder layout (``<results>/<profile>/<dataset>/<question>/``) holds one run.
To aggregate seeds, publish each seed into its own results folder and pass them all
(:func:`results_dirs` finds ``<root>`` and ``<root>/seed-*``). The seeds of a run are read from
its ``record.json``: the workspace seed, plus the attack seed when it is neither 0 (the default)
nor equal to the workspace seed; runs with the same seeds are counted once.
Numeric cells report ``mean ± std (n=k)`` over runs (sample standard deviation; ``n=1`` has
std 0). A finding's verdict over several runs is the common verdict when every run agrees,
otherwise ``"mixed"`` (the per-run verdicts are listed in the evidence).

Verdict rules for numeric cells (tolerances are parameters of :func:`claims_ledger`):

* ``"matches"``: success and T1 percentages within ``pct_tol`` (default 10) percentage points of
  the paper (about two binomial standard errors at 50 % on the paper's 100 images); T2 (a mean
  count of exits) within ``t2_tol`` (default 0.5); best α exactly equal in every run; PSNR
  within ``psnr_tol`` dB (default 0.5). A text statement that is a bound ("over 70 %") or a
  range ("25-37 %") matches when the reproduced mean satisfies it (no tolerance); a comparison
  ("D2S > S2D") matches when the reproduced numbers order the same way.
* ``"differs"``: otherwise.
* ``"not comparable"``: the paper's dataset for that cell did not run (e.g. no ``cifar100``),
  or the reproduced value is undefined (NaN: e.g. no input flipped).
* ``"not run"``: the question's results are absent from every results folder.

The module also holds three helpers the book's pages share: :func:`page_overrides` (the
``overrides`` parameter of every page, same meaning as ``dynn reproduce -p NAME VALUE``),
:func:`data_note` (the data-honesty box computed from a result's record) and
:func:`finding_report` (the closing "Finding" cell of a page).
"""
from __future__ import annotations

import html
import math
import time
from dataclasses import fields
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import pandas as pd

from . import data
from .experiments import rq1, rq2, rq3, rq4
from .experiments.common import larger_smaller
from .experiments.runner import QUESTIONS, load_record, load_results, results_path

__all__ = ["COLUMNS", "VERDICTS", "FINDINGS", "STAND_INS", "claims_ledger", "results_dirs", "summary_counts",
           "style_ledger", "page_overrides", "data_note", "finding_report", "paper_dataset_for",
           "published_datasets", "paper_quote", "provenance_table"]

COLUMNS = ("claim_id", "source", "claim", "paper_value", "reproduced_value", "n_seeds", "dataset_used", "verdict",
           "evidence")
"""The ledger's columns, in order (numeric helper columns follow: ``paper_number``,
``reproduced_mean``, ``reproduced_std``, ``seeds``)."""

VERDICTS = ("holds", "does not hold", "mixed", "matches", "differs", "not testable", "not comparable", "not run")
"""Verdict families (a finding's "not testable" verdict carries its reason after a colon)."""

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
    """The ``dataset_used`` entry: the dataset's name, marked when it is generated data."""
    if dataset is None:
        return "—"
    return dataset + (" (GENERATED: meaningless)" if data.get_info(dataset).generated else "")


# ================================================================ formatting and aggregation

def _finite(values: Iterable[float]) -> list[float]:
    return [float(v) for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))
            and np.isfinite(float(v))]


def _agg(values: Sequence[float]) -> tuple[float, float, int]:
    """(mean, sample std (0 for one value), n) over finite values; (nan, nan, 0) when none."""
    v = _finite(values)
    if not v:
        return math.nan, math.nan, 0
    return float(np.mean(v)), float(np.std(v, ddof=1)) if len(v) > 1 else 0.0, len(v)


def _show(mean: float, std: float, n: int, digits: int = 1, unit: str = "") -> str:
    if n == 0 or math.isnan(mean):
        return "n/a"
    if n == 1:
        return f"{mean:.{digits}f}{unit} (n=1)"
    return f"{mean:.{digits}f} ± {std:.{digits}f}{unit} (n={n})"


def _row(claim_id: str, source: str, claim: str, paper_value: str, reproduced_value: str, n_seeds: int,
         dataset_used: str, verdict: str, evidence: str, paper_number: float = math.nan,
         reproduced_mean: float = math.nan, reproduced_std: float = math.nan, seeds: str = "") -> dict:
    return {"claim_id": claim_id, "source": source, "claim": claim, "paper_value": paper_value,
            "reproduced_value": reproduced_value, "n_seeds": int(n_seeds), "dataset_used": dataset_used,
            "verdict": verdict, "evidence": evidence, "paper_number": float(paper_number),
            "reproduced_mean": float(reproduced_mean), "reproduced_std": float(reproduced_std), "seeds": seeds}


def _numeric_verdict(mean: float, paper: float, tol: float) -> str:
    if math.isnan(mean) or math.isnan(paper):
        return "not comparable"
    return "matches" if abs(mean - paper) <= tol + 1e-9 else "differs"


def _combine(verdicts: Sequence[str]) -> str:
    v = list(dict.fromkeys(verdicts))
    if not v:
        return "not run"
    return v[0] if len(v) == 1 else "mixed"


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
    def f9(ts):
        return rq4.finding_9(_concat(ts, "table1"))

    def f10(ts):
        return rq4.finding_10(_concat(ts, "table3"))

    return {
        1: lambda ts: rq1.finding_1(_concat(ts, "summary")),
        2: lambda ts: rq1.finding_2(_concat(ts, "generation_time"), _concat(ts, "summary")),
        3: lambda ts: rq2.finding_3(_concat(ts, "summary")),
        4: lambda ts: rq2.finding_4(_concat(ts, "summary")),
        5: lambda ts: rq2.finding_5([t["summary"] for t in ts]),
        6: lambda ts: rq3.finding_6(_concat(ts, "summary")),
        7: lambda ts: rq3.finding_7(_concat(ts, "summary")),
        8: lambda ts: rq3.finding_8([t["summary"] for t in ts]),
        9: f9,
        10: f10,
    }


def _finding_rows(runs: _Runs, main: Sequence[str]) -> list[dict]:
    rows = []
    funcs = _finding_functions()
    for n, (question, section, text) in FINDINGS.items():
        seeds = _by_seed(runs, main, question)
        used = [ds for ds in main if runs.has(ds, question)]
        ds_text = "; ".join(_label(d) for d in used) or "—"
        if not seeds:
            rows.append(_row(f"F{n}", f"Finding {n} ({section})", text, "stated", "—", 0, ds_text, "not run",
                             f"no published {question} results for {', '.join(main) or 'any dataset'}"))
            continue
        if n in (5, 8) and larger_smaller(used) is None:
            only = ", ".join(used)
            rows.append(_row(f"F{n}", f"Finding {n} ({section})", text, "stated", "—", len(seeds), ds_text,
                             f"not testable: only {only} ran",
                             "needs a dataset with larger models (CIFAR-100) next to one with smaller models "
                             f"(CIFAR-10); only {only} ran", seeds=", ".join(seeds)))
            continue
        verdicts, evidence = [], []
        for label, tables in seeds.items():
            try:
                res = funcs[n](tables)
                v, ev = res["verdict"], res["evidence"]
            except (ValueError, KeyError) as e:  # e.g. Finding 9 without ResNet-56 in the run
                v, ev = "not testable here", f"not testable here: {e}"
            verdicts.append("not testable" if v.startswith("not testable") else v)
            evidence.append(ev if len(seeds) == 1 else f"[seed {label}: {v}] {ev}")
        verdict = _combine(verdicts)
        if verdict == "not testable":
            verdict = "not testable: " + evidence[0].split(":", 1)[-1].strip()[:120]
        rows.append(_row(f"F{n}", f"Finding {n} ({section})", text, "stated", verdict if len(seeds) == 1 else
                         f"{', '.join(verdicts)}", len(seeds), ds_text, verdict, " ".join(evidence),
                         seeds=", ".join(seeds)))
    return rows


# ================================================================ Tables 1-3

def _table_values(runs: _Runs, ds: str, name: str, select: Callable[[pd.DataFrame], float]
                  ) -> tuple[list[float], list[str]]:
    vals, seeds = [], []
    for label, tables, _ in runs.get(ds, "rq4"):
        if name in tables:
            vals.append(select(tables[name]))
            seeds.append(label)
    return vals, seeds


def _cell(runs: _Runs, datasets: Sequence[str], family: str, claim_id: str, source: str, claim: str,
          paper: float, name: str, select: Callable[[pd.DataFrame], float], tol: float, digits: int = 1,
          unit: str = "", exact: bool = False, paper_text: str | None = None) -> dict:
    ds = paper_dataset_for(family, datasets)
    ptxt = paper_text if paper_text is not None else f"{paper:g}{unit}"
    if ds is None:
        return _row(claim_id, source, claim, ptxt, "—", 0, "—", "not comparable",
                    f"the paper's dataset ({_PAPER_NAMES[family]}) did not run in this build", paper)
    if not runs.has(ds, "rq4"):
        return _row(claim_id, source, claim, ptxt, "—", 0, _label(ds), "not run",
                    f"no published rq4 results for {ds}", paper)
    vals, seeds = _table_values(runs, ds, name, select)
    present = [(v, lb) for v, lb in zip(vals, seeds) if v is not None]
    if not present:
        return _row(claim_id, source, claim, ptxt, "—", 0, _label(ds), "not run",
                    f"the published {name} of {ds} has no row for this model or pair", paper)
    vals, seeds = [v for v, _ in present], [lb for _, lb in present]
    mean, std, n = _agg(vals)
    if exact:
        fin = _finite(vals)
        shown = ", ".join(f"{v:g}" for v in fin) or "n/a"
        verdict = ("not comparable" if not fin else
                   "matches" if all(math.isclose(v, paper) for v in fin) else "differs")
        return _row(claim_id, source, claim, ptxt, f"{shown} (n={len(fin)})", len(seeds), _label(ds), verdict,
                    f"best α per run: {shown}; paper: {paper:g}", paper, mean, std, ", ".join(seeds))
    verdict = _numeric_verdict(mean, paper, tol)
    ev = (f"|reproduced − paper| = {abs(mean - paper):.{digits}f}{unit}; tolerance {tol:g}{unit}"
          if not math.isnan(mean) else "reproduced value undefined (no images or no examples)")
    if len(vals) > 1:
        ev += "; per run: " + ", ".join(f"{v:.{digits}f}" for v in vals)
    return _row(claim_id, source, claim, ptxt, _show(mean, std, n, digits, unit), len(seeds), _label(ds), verdict,
                ev, paper, mean, std, ", ".join(seeds))


def _rows_where(df: pd.DataFrame, **eq) -> pd.DataFrame:
    for k, v in eq.items():
        df = df[df[k] == v]
    return df


def _first(df: pd.DataFrame, col: str) -> float | None:
    """The cell of the first selected row; None when no row is selected (the model did not run)."""
    if not len(df) or col not in df.columns:
        return None
    v = df[col].iloc[0]
    return math.nan if v is None else float(v)


def _table_rows(runs: _Runs, datasets: Sequence[str], pct_tol: float, t2_tol: float) -> list[dict]:
    rows = []
    t1_cols = (("early_attack", "Early Attack success at its best α (%)", "%"),
               ("best_alpha", "best α", ""), ("pgd", "PGD baseline success (%)", "%"),
               ("fgsm", "FGSM baseline success (%)", "%"))
    for (fam, arch), paper in rq4.PAPER_TABLE1.items():
        for col, what, unit in t1_cols:
            sel = (lambda t, a=arch, c=col: _first(_rows_where(t, arch=a), c))
            rows.append(_cell(runs, datasets, fam, f"T1-{fam}-{arch}-{col}",
                              f"Table 1, {_PAPER_NAMES[fam]} {_ARCH[arch]}",
                              f"{what}, {_PAPER_NAMES[fam]} {_ARCH[arch]}", paper[col], "table1", sel, pct_tol,
                              unit=unit, exact=col == "best_alpha"))
    for (fam, arch), per_alpha in rq4.PAPER_TABLE2.items():
        for alpha, paper in per_alpha.items():
            col = rq4.alpha_column(alpha)
            sel = (lambda t, a=arch, c=col: _first(_rows_where(t, arch=a), c))
            rows.append(_cell(runs, datasets, fam, f"T2-{fam}-{arch}-a{alpha:g}",
                              f"Table 2, {_PAPER_NAMES[fam]} {_ARCH[arch]} α={alpha:g}",
                              f"Early Attack success (%) with α = {alpha:g}, {_PAPER_NAMES[fam]} {_ARCH[arch]}",
                              paper, "table2", sel, pct_tol, unit="%"))
    for (fam, sur), targets in rq4.PAPER_TABLE3.items():
        for tgt, vals in targets.items():
            for key, tol, digits, unit, what in (("t1", pct_tol, 1, "%", "T1: share of examples keeping the "
                                                   "target's final answer (%)"),
                                                  ("t2", t2_tol, 2, "", "T2: mean number of the target's internal "
                                                   "exits moved off its answer")):
                sel = (lambda t, s=sur, g=tgt, k=key: _first(_rows_where(t, surrogate_arch=s, target_arch=g), k))
                rows.append(_cell(runs, datasets, fam, f"T3-{fam}-{sur}-{tgt}-{key}",
                                  f"Table 3, {_PAPER_NAMES[fam]} {key.upper()} {_T3_ARCH[sur]}→{_T3_ARCH[tgt]}",
                                  f"{what}, {_PAPER_NAMES[fam]} {_ARCH[sur]} → {_ARCH[tgt]}", vals[key], "table3",
                                  sel, tol, digits=digits, unit=unit))
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
    """One quoted statement: where it comes from, what it says, how to measure and judge it."""

    def __init__(self, sid: str, source: str, claim: str, paper_value: str, family: str, question: str,
                 measure: Callable[[dict[str, pd.DataFrame]], tuple[float, str]], judge: Callable[[float], bool],
                 digits: int = 1, unit: str = "%", paper_number: float = math.nan,
                 needs: Sequence[str] = ()):
        self.sid, self.source, self.claim, self.paper_value = sid, source, claim, paper_value
        self.family, self.question, self.measure, self.judge = family, question, measure, judge
        self.digits, self.unit, self.paper_number, self.needs = digits, unit, paper_number, tuple(needs)


def _statement_row(runs: _Runs, datasets: Sequence[str], st: _Statement) -> dict:
    ds = paper_dataset_for(st.family, datasets)
    if ds is None:
        return _row(st.sid, st.source, st.claim, st.paper_value, "—", 0, "—", "not comparable",
                    f"the paper's dataset ({_PAPER_NAMES[st.family]}) did not run in this build", st.paper_number)
    missing = [n for n in st.needs if paper_dataset_for(n, datasets) is None]
    if missing:
        return _row(st.sid, st.source, st.claim, st.paper_value, "—", 0, _label(ds), "not comparable",
                    f"needs {', '.join(_PAPER_NAMES[m] for m in missing)} results too; not run in this build",
                    st.paper_number)
    runs_ds = runs.get(ds, st.question)
    if not runs_ds:
        return _row(st.sid, st.source, st.claim, st.paper_value, "—", 0, _label(ds), "not run",
                    f"no published {st.question} results for {ds}", st.paper_number)
    vals, evs, seeds = [], [], []
    for label, tables, _ in runs_ds:
        try:
            v, ev = st.measure(tables, runs, datasets, label) if st.needs else st.measure(tables)
        except (KeyError, ValueError, IndexError) as e:
            v, ev = math.nan, f"not measurable: {e}"
        vals.append(v)
        evs.append(ev if len(runs_ds) == 1 else f"[seed {label}] {ev}")
        seeds.append(label)
    mean, std, n = _agg(vals)
    verdict = "not comparable" if math.isnan(mean) else ("matches" if st.judge(mean) else "differs")
    return _row(st.sid, st.source, st.claim, st.paper_value, _show(mean, std, n, st.digits, st.unit), len(seeds),
                _label(ds), verdict, " ".join(evs), st.paper_number, mean, std, ", ".join(seeds))


def _mean_where(df: pd.DataFrame, col: str, **eq) -> float:
    sub = _rows_where(df, **eq)
    return float(sub[col].mean()) if len(sub) else math.nan


def _statements(psnr_tol: float) -> list[_Statement]:
    S: list[_Statement] = []

    def d2s_minus_s2d(t):
        s = t["summary"]
        d, s_ = _mean_where(s, "success_rate", direction="D2S"), _mean_where(s, "success_rate", direction="S2D")
        return d - s_, f"mean success over target-correct images: D2S {d:.1f} %, S2D {s_:.1f} % (all attacks, ε)"

    def fgsm_minus_pgd(t):
        s = t["summary"]
        s = s[s["direction"] == "S2D"]
        f, p = _mean_where(s, "success_rate", attack="fgsm"), _mean_where(s, "success_rate", attack="pgd")
        return f - p, f"mean success against DyNN targets (S2D pairs): FGSM {f:.1f} %, PGD {p:.1f} %"

    for fam in ("cifar10", "cifar100"):
        S.append(_Statement(f"S-d2s-gt-s2d-{fam}", "Text §3.2",
                            f"{_PAPER_NAMES[fam]}: on average D2S transfer succeeds more often than S2D",
                            "D2S > S2D", fam, "rq1", d2s_minus_s2d, lambda v: v > 0, unit=" pp"))
        S.append(_Statement(f"S-fgsm-gt-pgd-{fam}", "Text §3.2",
                            f"{_PAPER_NAMES[fam]}: against DyNN targets FGSM transfers better than PGD",
                            "FGSM > PGD", fam, "rq1", fgsm_minus_pgd, lambda v: v > 0, unit=" pp"))

    def minus_cifar10(name: str):
        """Mean RQ1 success on this dataset minus the same seed's mean on the CIFAR-10 run."""
        def diff(t, runs, datasets, label):
            c10 = paper_dataset_for("cifar10", datasets)
            other = dict((lb, tb) for lb, tb, _ in runs.get(c10, "rq1"))
            if label not in other:
                raise KeyError(f"no {c10} rq1 run with seed {label}")
            a = float(t["summary"]["success_rate"].mean())
            b = float(other[label]["summary"]["success_rate"].mean())
            return a - b, f"mean success: {name} {a:.1f} %, {c10} {b:.1f} %"
        return diff

    c100_minus_c10 = minus_cifar10("CIFAR-100")

    S.append(_Statement("S-c100-gt-c10", "Text §3.2", "Transfer attacks succeed more often on CIFAR-100 than on "
                        "CIFAR-10", "CIFAR-100 > CIFAR-10", "cifar100", "rq1", c100_minus_c10, lambda v: v > 0,
                        unit=" pp", needs=("cifar10",)))

    for fam in ("cifar10", "cifar100"):
        for sur in ("vgg16", "mobilenet", "resnet56"):
            def early(t, sur=sur):
                eu = _eps_rows(t["exit_used"])
                sh = rq1.share_early_exits(eu[(eu["attack"] == "pgd") & (eu["surrogate_arch"] == sur)])
                v = float(sh["share_exits_0_2"].mean()) if len(sh) else math.nan
                return v, f"PGD examples of the DyNN {sur} surrogate from exits 0-2{_eps_text(eu)}: {v:.1f} %"
            S.append(_Statement(f"S-pgd-exits012-{fam}-{sur}", "Text §3.2 / Fig. 7",
                                f"{_PAPER_NAMES[fam]}, DyNN {_ARCH[sur]} surrogate (D2S): over 70 % of PGD "
                                "examples come from exits 0-2", "> 70%", fam, "rq1", early, lambda v: v > 70,
                                paper_number=70))

    def raised(setting, attack, arch):
        def m(t):
            s = _eps_rows(t["summary"])
            s = s[(s["setting"] == setting) & (s["attack"] == attack) & (s["target_arch"] == arch)
                  & (s["target_kind"] != "cnn")]
            v = float(s["share_raised_gt1"].mean()) if len(s) else math.nan
            return v, f"{setting} {attack.upper()} {arch}{_eps_text(s)}: exit raised by more than one for {v:.1f} %"
        return m

    for arch in ("mobilenet", "vgg16"):
        S.append(_Statement(f"S-wb-fgsm-raised-cifar10-{arch}", "Text §4.2 / Fig. 3",
                            f"CIFAR-10 white-box, {_ARCH[arch]}: 25-37 % of FGSM examples move the exit up by "
                            "more than one", "25–37%", "cifar10", "rq2", raised("white-box", "fgsm", arch),
                            lambda v: 25 <= v <= 37))
    for arch in ("vgg16", "mobilenet", "resnet56"):
        S.append(_Statement(f"S-wb-fgsm-raised-cifar100-{arch}", "Text §4.2 / Fig. 10",
                            f"CIFAR-100 white-box, {_ARCH[arch]}: over 45 % of FGSM examples move the exit up by "
                            "more than one", "> 45%", "cifar100", "rq2", raised("white-box", "fgsm", arch),
                            lambda v: v > 45, paper_number=45))
    for arch in ("resnet56", "vgg16"):
        S.append(_Statement(f"S-bb-pgd-raised-cifar10-{arch}", "Text §4.2 / Fig. 4",
                            f"CIFAR-10 black-box, {_ARCH[arch]} target: over 40 % of PGD examples move the exit "
                            "up by more than one", "> 40%", "cifar10", "rq2", raised("black-box", "pgd", arch),
                            lambda v: v > 40, paper_number=40))

    def exit0(setting, attack, arch, col):
        def m(t):
            s = _eps_rows(t["summary"])
            s = s[(s["setting"] == setting) & (s["attack"] == attack) & (s["target_arch"] == arch)
                  & (s["target_kind"] != "cnn")]
            v = float(s[col].mean()) if len(s) else math.nan
            n = int(s["n_flipped"].sum()) if len(s) else 0
            what = "changed at exit 0" if col == "share_changed_exit0" else "NOT changed at exit 0"
            return v, f"{setting} {attack.upper()} {arch}{_eps_text(s)}: {v:.1f} % of {n} flipped inputs {what}"
        return m

    for fam in ("cifar10", "cifar100"):
        for arch in ("vgg16", "mobilenet", "resnet56"):
            for attack in ("fgsm", "pgd"):
                S.append(_Statement(f"S-wb-exit0-{fam}-{arch}-{attack}", "Text §5.2 / Fig. 5" if fam == "cifar10"
                                    else "Text §5.2 / Fig. 8",
                                    f"{_PAPER_NAMES[fam]} white-box, {_ARCH[arch]}, {attack.upper()}: over 77 % of "
                                    "flipped inputs already change at the first exit", "> 77%", fam, "rq3",
                                    exit0("white-box", attack, arch, "share_changed_exit0"), lambda v: v > 77,
                                    paper_number=77))
    for attack in ("fgsm", "pgd"):
        S.append(_Statement(f"S-bb-vgg-not-exit0-cifar10-{attack}", "Text §5.2 / Fig. 6",
                            f"CIFAR-10 black-box, VGG target, {attack.upper()}: over 45 % of flipped inputs leave the "
                            "first exit's answer unchanged", "> 45%", "cifar10", "rq3",
                            exit0("black-box", attack, "vgg16", "share_not_changed_exit0"), lambda v: v > 45,
                            paper_number=45))

    def psnr(source):
        def m(t):
            p = _eps_rows(t["psnr"])
            p = p[p["attack"].isin(["fgsm", "pgd"])]
            v = float(p.loc[p["source"] == source, "mean_psnr"].mean())
            per = "; ".join(f"{r.attack} {r.eps_255:g}/255 {r.mean_psnr:.2f} dB"
                            for r in t["psnr"][t["psnr"]["source"] == source].itertuples())
            return v, f"{source}-source mean PSNR over FGSM and PGD{_eps_text(p)}: {v:.2f} dB (all rows: {per})"
        return m

    S.append(_Statement("S-psnr-sdnn", "Appendix F", "Mean PSNR of adversarial images made on SDNN surrogates",
                        "23.20 dB", "cifar10", "appendix", psnr("SDNN"), lambda v: abs(v - 23.20) <= psnr_tol,
                        digits=2, unit=" dB", paper_number=23.20))
    S.append(_Statement("S-psnr-dynn", "Appendix F", "Mean PSNR of adversarial images made on DyNN surrogates",
                        "23.19 dB", "cifar10", "appendix", psnr("DyNN"), lambda v: abs(v - 23.19) <= psnr_tol,
                        digits=2, unit=" dB", paper_number=23.19))

    def psnr_order(t):
        p = _eps_rows(t["psnr"])
        p = p[p["attack"].isin(["fgsm", "pgd"])]
        a = float(p.loc[p["source"] == "SDNN", "mean_psnr"].mean())
        b = float(p.loc[p["source"] == "DyNN", "mean_psnr"].mean())
        return a - b, f"SDNN {a:.3f} dB vs DyNN {b:.3f} dB{_eps_text(p)}"

    S.append(_Statement("S-psnr-order", "Appendix F", "Images made on SDNN surrogates are (slightly) less distorted "
                        "than those made on DyNN surrogates", "SDNN ≥ DyNN (23.20 vs 23.19 dB)", "cifar10", "appendix",
                        psnr_order, lambda v: v >= 0, digits=3, unit=" dB"))

    def tiny_d2s(t):
        f = rq1.finding_1(t["summary"])
        return f["mean_d2s"] - f["mean_s2d"], f["evidence"]

    S.append(_Statement("S-tiny-d2s-gt-s2d", "Appendix G / Fig. 16", "Tiny ImageNet: D2S still transfers better "
                        "than S2D", "D2S > S2D", "tinyimagenet", "rq1", tiny_d2s, lambda v: v > 0, unit=" pp"))

    tiny_lower = minus_cifar10("Tiny ImageNet")

    S.append(_Statement("S-tiny-lower", "Appendix G / Fig. 16", "Tiny ImageNet transfer rates are slightly lower "
                        "than CIFAR's", "lower", "tinyimagenet", "rq1", tiny_lower, lambda v: v < 0, unit=" pp",
                        needs=("cifar10",)))
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
        pct_tol, t2_tol, psnr_tol: tolerances of the numeric verdicts.
    Returns:
        One row per claim, columns :data:`COLUMNS` then ``paper_number``, ``reproduced_mean``,
        ``reproduced_std``, ``seeds``. Nothing is computed except from the stored tables.
    """
    dirs = [Path(results_dir)] if isinstance(results_dir, (str, Path)) else [Path(d) for d in results_dir]
    datasets = [d for d in dict.fromkeys(datasets) if d]
    for d in datasets:
        data.get_info(d)
    runs = _Runs(dirs, profile)
    main = [d for d in datasets if d != "tinyimagenet"] or list(datasets)
    rows = _finding_rows(runs, main)
    rows += _table_rows(runs, datasets, pct_tol, t2_tol)
    rows += [_statement_row(runs, datasets, st) for st in _statements(psnr_tol)]
    df = pd.DataFrame(rows)
    return df[list(COLUMNS) + ["paper_number", "reproduced_mean", "reproduced_std", "seeds"]]


def _family(verdict: str) -> str:
    return next((v for v in VERDICTS if verdict.startswith(v)), verdict)


def summary_counts(ledger: pd.DataFrame) -> pd.DataFrame:
    """Rows per verdict (verdict families: "not testable: ..." counts as "not testable"), per kind
    of claim (finding, table cell, text statement)."""
    kind = ledger["claim_id"].str.slice(0, 1).map({"F": "finding", "T": "table cell", "S": "text statement"})
    fam = ledger["verdict"].map(_family)
    out = pd.crosstab(fam, kind, margins=True, margins_name="total")
    order = [v for v in VERDICTS if v in out.index] + ["total"]
    return out.loc[order].rename_axis(index="verdict", columns=None)


_COLOURS = {"holds": "#d4edda", "matches": "#d4edda", "does not hold": "#f8d7da", "differs": "#f8d7da",
            "mixed": "#fff3cd", "not testable": "#e2e3e5", "not comparable": "#e2e3e5", "not run": "#e2e3e5"}


def style_ledger(ledger: pd.DataFrame, columns: Sequence[str] = COLUMNS):
    """A pandas Styler of the ledger with the verdict cell coloured by verdict family."""
    df = ledger[list(columns)]

    def colour(v):
        return f"background-color: {_COLOURS.get(_family(str(v)), '')}"

    return (df.style.hide(axis="index").set_table_attributes('class="dataframe dynn-ledger"')
            .map(colour, subset=["verdict"])
            .set_properties(**{"vertical-align": "top", "text-align": "left"})
            .set_properties(subset=[c for c in ("evidence", "claim") if c in df.columns], **{"font-size": "0.85em"}))


# ================================================================ helpers of the book's pages

def page_overrides(question: str, overrides: dict[str, Any] | None) -> tuple[dict, dict]:
    """(profile fields, experiment-config fields) of ``overrides`` for ``question``.

    ``overrides`` has the meaning of ``dynn reproduce -p NAME VALUE``: any profile field
    (``n_train``, ``ea_iters``...) and any field of the question's experiment config
    (``steps``, ``alphas``...). As in :mod:`dynn_lib.reproduce`, names another question uses
    are ignored here (``alphas`` on the RQ1 page); names no question knows are an error.
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
    accepted = ({f.name for f in fields(Profile)} - {"name"}) | (
        {f.name for f in fields(cls)} if cls else ({"archs"} if question == "zoo" else set()))
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
    creation time, read from the ``record.json`` files (what the claims page shows)."""
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
                             "computed": rec.get("created", "")})
    return pd.DataFrame(rows, columns=["folder", "dataset", "question", "seeds", "generated data", "device",
                                       "git commit", "wall time s", "computed"])


class _HTML:
    def __init__(self, markup: str, text: str):
        self.markup, self.text = markup, text

    def _repr_html_(self) -> str:
        return self.markup

    def __repr__(self) -> str:
        return self.text


def data_note(record: dict, *, started: float | None = None, extra: Sequence[str] = (),
              details: bool = True) -> _HTML:
    """The data-honesty box of a page, computed from a published result's ``record.json``.

    States the dataset (with its label), whether it is GENERATED, the profile (``smoke`` numbers
    are meaningless), the device, the git commit, the wall time, and whether the result was
    computed by this execution (``started``: ``time.time()`` before ``publish``) or loaded.
    ``details=False`` keeps the dataset, profile and device lines only (plus ``extra``), for a
    page that summarises several results.
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
    items = [("dataset", f"{ds} — {label}"), ("profile", prof),
             ("seed", str(cfg.get("seed", "?"))),
             ("device", f"{record.get('device', '?')} ({record.get('device_name', '?')})"),
             ("git commit", str(record.get("git_commit", "?"))),
             ("wall time", f"{float(record.get('wall_time_s', float('nan'))):.1f} s"),
             ("result", ("computed by this execution" if fresh else f"loaded from the results folder (computed "
                                                                    f"{created})")),
             *[(k, v) for k, v in (e.split(": ", 1) for e in extra)]]
    if not details:
        items = [it for it in items if it[0] in ("dataset", "profile", "device")] + items[7:]
    level = "warning" if (generated or prof == "smoke") else "note"
    rows = "".join(f"<li><b>{html.escape(k)}</b>: {html.escape(v)}</li>" for k, v in items)
    warn = "".join(f"<p>{w}</p>" for w in warnings_)
    markup = (f'<div class="admonition {level} dynn-data-note"><p class="admonition-title">What these numbers '
              f'come from</p>{warn}<ul>{rows}</ul></div>')
    text = "\n".join([*(html.unescape(w.replace("<b>", "").replace("</b>", "")) for w in warnings_),
                      *(f"{k}: {v}" for k, v in items)])
    return _HTML(markup, text)


def finding_report(results: Sequence[dict], *, paper: str | None = None, width: int = 76) -> str:
    """The closing lines of a page: one block per finding, verdict and deciding numbers.

    ``results`` are the dicts of the ``finding_N`` functions (``verdict``, ``evidence`` and
    ``finding``/``claim`` where present; an optional ``label`` replaces the "Finding N" heading). Returns text (print it), wrapped at ``width``.
    """
    import textwrap

    def wrap(text: str, first: str, rest: str) -> list[str]:
        return textwrap.wrap(text, width=width, initial_indent=first, subsequent_indent=rest,
                             break_on_hyphens=False) or [first]

    lines = []
    for r in results:
        n = r.get("finding")
        head = r.get("label") or (f"Finding {n}" if n is not None else "Finding")
        claim = FINDINGS.get(n, (None, None, r.get("claim", "")))[2] if n is not None else r.get("claim", "")
        lines += wrap(claim, f"{head}: ", "  ")
        lines.append(f"  verdict for this run: {r['verdict'].upper()}")
        lines += wrap(r["evidence"], "  deciding numbers: ", "    ")
        lines.append("")
    if paper:
        lines += wrap(paper, "", "")
    return "\n".join(lines).rstrip() + "\n"
