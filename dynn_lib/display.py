"""How the book's pages show results: tables, verdict boxes, the profile tag, CSV downloads.

A page computes with the library and *shows* with this module, so every page formats the same
quantity the same way. The claims it implements:

* **Tables** (:func:`table`): one precision per quantity, chosen from the column's name
  (:data:`COLUMN_FORMATS`: ε as an integer in 1/255, τ with 2 decimals, times in ms,
  percentages with 1 decimal, counts as integers, PSNR in dB with 2 decimals); units in the
  headers (:data:`LABELS`); never ``-0.0``; an empty cell is a dash explained under the table;
  a rate ``X`` with ``X_lo``/``X_hi`` columns is shown as ``X [lo, hi]`` (the 95 % interval;
  on the page the bracket sits on a second line, smaller, so wide tables stay readable);
  columns constant over the table (dataset, device, profile, budget, number of images) move to
  the caption; a pair
  ``A → B`` may break after its arrow; the table scrolls inside its column when it is still
  too wide; a link under it downloads exactly the rows shown as CSV
  (raw values, full precision, original column names, intervals as their own columns).
* **Verdicts** (:func:`verdict_box`, :func:`findings`): a finding is a styled admonition
  coloured by its verdict (:data:`VERDICT_STYLES`), with the claim, the deciding numbers (a long
  list of comparisons one per line, :func:`evidence_html`; the claims ledger shows them so too)
  and the number of images it rests on, never a printed dict.
* **The profile travels with every number** (:func:`profile_tag`): a result of any profile
  other than ``paper``/``fast``, or of generated data (``synthetic``), carries a tag such as
  ``[smoke]`` on every verdict; the site-wide banner is added by ``book/_ext/dynn_site.py``
  from the same rule (:func:`is_indicative`).
* **Paths** (:func:`rel_path`) are printed relative to the results folder, never as absolute
  local paths.

Everything returns display objects with an HTML and a plain-text form (``_repr_html_`` and
``__repr__``), so a page shows them with ``display(...)`` or as a cell's last expression, and
the text form stays readable in a terminal or a log.
"""
from __future__ import annotations

import base64
import html
import math
import re
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from . import metrics, verdicts as _v

__all__ = ["LABELS", "COLUMN_FORMATS", "VERDICT_STYLES", "REAL_PROFILES", "GENERATED_DATASETS", "EMPTY",
           "HTMLBlock", "table", "with_intervals", "ledger_table", "evidence_html", "EVIDENCE_BREAK_CHARS", "site_summary_markdown", "UNCOMPARED", "format_value", "formatter_for", "csv_link", "normalise_verdict",
           "verdict_box", "findings", "profile_tag", "is_indicative", "rel_path", "class_names",
           "CIFAR10_CLASSES", "CIFAR100_CLASSES", "shared_timing_note"]

REAL_PROFILES = ("paper", "fast")
"""Profiles whose numbers mean something; any other profile (``smoke``) is tagged."""

GENERATED_DATASETS = ("synthetic",)
"""Datasets made of generated images; results on them are tagged whatever the profile."""

EMPTY = "—"
"""What an empty (undefined, not reported) cell shows; :func:`table` explains it under the table."""

LABELS: dict[str, str] = {
    "eps_255": "ε (/255)", "eps": "ε (/255)", "tau": "τ", "alpha": "α",
    "n": "images", "n_images": "images", "n_correct": "target-correct images", "n_flipped": "final flipped",
    "n_seeds": "seeds run", "seeds": "seeds",
    "success_rate": "success % (target-correct)", "success_rate_all": "success % (all images)",
    "clean_accuracy": "target clean acc. %", "seconds_per_example": "ms / example",
    "macs_per_example": "MMACs / example", "mean_psnr": "PSNR (dB)",
    "share_raised_gt1": "% raised by > 1", "share_raised": "% raised", "share_lowered": "% lowered",
    "mean_delta_exit": "mean Δexit", "total_macs_change": "total MACs change %",
    "mean_conf_drop": "mean drop of internal confidence", "conf_drop_vs_delta_exit": "Spearman(drop, Δexit)",
    "mean_delta_macs": "mean ΔMACs (M)", "mean_rel_macs_change": "mean relative ΔMACs %",
    "flip_rate": "flip rate %", "share_changed_exit0": "% changed at exit 0",
    "share_not_changed_exit0": "% NOT changed at exit 0", "mean_first_changed_exit": "mean first changed exit",
    "first_exit_cost": "exit 0 cost (% of MACs)", "share_exits_0_2": "% from exits 0-2",
    "surrogate_arch": "surrogate architecture", "target_arch": "target architecture",
    "mean_internal_changed": "internal exits moved (mean)", "mean_l2": "mean L2", "mean_l2_success": "mean L2 (successes)",
    "paper_success_rate": "paper %", "delta_exit": "Δexit", "count": "inputs", "fraction": "probability",
    "first_changed_exit": "first changed exit", "arch": "architecture",
}
"""Column name -> header (with its unit) used by every table of the book and the widgets."""


def _pct(v: float) -> str:
    return f"{v:.1f}"


def _int(v: float) -> str:
    return f"{int(round(v)):,}"


def _eps255(v: float) -> str:
    return f"{int(round(v))}" if abs(v - round(v)) < 1e-6 else f"{v:.3g}"


def _fixed(d: int) -> Callable[[float], str]:
    return lambda v: f"{v:.{d}f}"


def _sig3(v: float) -> str:
    """3 significant digits, never in exponent notation (9.58e-05 -> 0.0000958)."""
    if v == 0:
        return "0"
    if abs(v) >= 1e4:
        return f"{v:,.0f}"
    text = f"{v:.3g}"
    if "e" in text:
        text = f"{v:.{2 - math.floor(math.log10(abs(v)))}f}"
    return text


COLUMN_FORMATS: list[tuple[str, Callable[[float], str]]] = [
    (r"^(eps_255|ε.*/255.*)$", _eps255),
    (r"^(tau|τ)$", _fixed(2)),
    (r"^(alpha|α|best_alpha|paper_best_alpha)$", lambda v: f"{v:g}"),
    (r"^(n|n_.*|images|count|seeds|exits|epochs|n_train|.*params.*|.*images)$", _int),
    (r"(seconds_per_example|ms_per_example|ms / example)", _fixed(2)),
    (r"(psnr|PSNR)", _fixed(2)),
    (r"(^mean_delta_exit$|Δexit|spearman|Spearman|conf_drop|^mean_(exit|exit_clean|exit_adv|first_changed_exit)$"
     r"|^mean_internal_changed$)", _fixed(2)),  # mean exit numbers and exit counts: 2 decimals
    (r"^(total_macs_change|mean_rel_macs_change|mean_delta_macs)$", _fixed(2)),  # MACs changes (%, M): 2 decimals
    (r"^(paper_)?t2$", _fixed(2)),  # T2: a mean number of exits
    (r"(rate|share|_pct|%|accuracy|success|t1$|fraction_pct|agreement|changed_exit0|^first_exit_cost$"
     r"|^(paper_)?(early_attack|fgsm|pgd)$)", _pct),
    (r"(fraction|probability)", _fixed(3)),
]
"""(regular expression on the column name, formatter) pairs, first match wins; else 3 significant digits."""

_MS_COLUMNS = ("seconds_per_example",)
"""Columns stored in seconds and shown in milliseconds."""

_MILLION_COLUMNS = ("mean_delta_macs",)
"""Columns stored as MAC counts and shown in millions (their :data:`LABELS` say "(M)")."""


def formatter_for(column: str) -> Callable[[float], str]:
    """The number formatter :func:`table` uses for ``column`` (see :data:`COLUMN_FORMATS`)."""
    for pattern, fmt in COLUMN_FORMATS:
        if re.search(pattern, str(column)):
            return fmt
    return _sig3


def format_value(value: Any, column: str = "") -> str:
    """One cell as text: numbers by :func:`formatter_for`, lists element-wise, NaN/None as :data:`EMPTY`,
    and never ``-0`` (a value that rounds to zero loses its sign)."""
    if value is None:
        return EMPTY
    if isinstance(value, (list, tuple, np.ndarray)):
        return "[" + ", ".join(format_value(v, column) for v in value) + "]"
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (int, float, np.integer, np.floating)):
        v = float(value)
        if math.isnan(v):
            return EMPTY
        if math.isinf(v):
            return "∞" if v > 0 else "−∞"
        text = formatter_for(column)(v)
        if re.fullmatch(r"-0(\.0*)?", text):
            text = text[1:]
        return text
    if isinstance(value, str):
        return value if value.strip() else EMPTY
    try:
        if pd.isna(value):
            return EMPTY
    except (TypeError, ValueError):
        pass
    return str(value)


class HTMLBlock:
    """A display object: HTML for the book, plain text for terminals and logs."""

    def __init__(self, markup: str, text: str, data: Any = None):
        self.markup, self.text, self.data = markup, text, data

    def _repr_html_(self) -> str:
        return self.markup

    def __repr__(self) -> str:
        return self.text

    __str__ = __repr__


# ---------------------------------------------------------------------------------- tables

def csv_link(df: pd.DataFrame, filename: str, text: str | None = None) -> str:
    """An ``<a download>`` link whose target is ``df`` as CSV (a ``data:`` URI: the static site
    needs no file next to the page, and the download is exactly the rows shown)."""
    if not re.fullmatch(r"[A-Za-z0-9._-]+\.csv", filename):
        raise ValueError(f"csv filename must be letters, digits, '.', '_' or '-' ending in .csv, got {filename!r}")
    payload = base64.b64encode(df.to_csv(index=False).encode("utf-8")).decode("ascii")
    label = text or f"Download this table as CSV ({filename})"
    return (f'<a class="dynn-csv" download="{filename}" href="data:text/csv;charset=utf-8;base64,{payload}">'
            f"{html.escape(label)}</a>")


def _slug(text: str) -> str:
    s = re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower()
    return (s[:60] or "table")


_PRETTY = {"attack": "pretty_attack", "arch": "pretty_arch", "surrogate_arch": "pretty_arch",
           "target_arch": "pretty_arch", "pair": "pretty_pair", "dataset": "pretty_dataset", "kind": "_KIND_NAMES",
           "surrogate_kind": "_KIND_NAMES", "target_kind": "_KIND_NAMES"}


def _prettify(df: pd.DataFrame) -> pd.DataFrame:
    from . import plots

    out = df.copy()
    for col, fn in _PRETTY.items():
        if col in out.columns and out[col].map(lambda v: isinstance(v, str)).all():
            f = getattr(plots, fn)
            out[col] = out[col].map((lambda v, f=f: f.get(v, v)) if isinstance(f, dict) else f)
    return out


_PAIR = re.compile(r"^(\S.*?) → (\S.*)$")


def _td(value: Any, numeric: bool, markup: str | None = None) -> str:
    """One body cell of :func:`table`. Numbers are right-aligned and never wrap; an interval
    (``markup`` from the interval columns) puts its bracket on a second line; a pair
    ``"ResNet-56 → VGG-16"`` may break after the arrow only; other text up to 24 characters
    never wraps."""
    text = str(value)
    pair = None if numeric or markup is not None else _PAIR.match(text)
    if pair:
        return (f'<td class="txt pair"><span>{html.escape(pair.group(1))} →</span> '
                f'<span>{html.escape(pair.group(2))}</span></td>')
    cls = "num" if numeric else "txt short" if len(text) <= 24 else "txt"
    return f'<td class="{cls}">{markup if markup is not None else html.escape(text)}</td>'


def table(df: pd.DataFrame, caption: str = "", *, labels: Mapping[str, str] | None = None,
          formats: Mapping[str, Callable[[float], str]] | None = None,
          to_caption: Sequence[str] = ("dataset", "device", "profile", "eps_255", "eps", "n", "n_images"), empty: str | None = None,
          csv: str | bool = True, intervals: bool = True, ms: Sequence[str] = _MS_COLUMNS,
          index: bool = False, pretty: bool = True, interval_note: str | None = None) -> HTMLBlock:
    """A result table as it appears in the book (see the module docstring for the rules).

    Args:
        df: the rows and columns to show, with the library's column names (raw values).
        caption: the caption ("Table RQ1.1. ..."); constant columns are appended to it.
        labels: header per column name, over :data:`LABELS` (a column absent from both keeps
            its name).
        formats: formatter per column name, over :func:`formatter_for`.
        to_caption: columns moved to the caption when they hold one value (default: dataset,
            device, profile, the budget ε, and the number of images, ``n`` or ``n_images``, which
            the caption then states once for every row).
        empty: what an empty cell means on this table, written under it (default: "not
            defined for that row or not reported"); ``""`` writes nothing.
        csv: file name of the CSV download (default: from the caption); ``False``: no link.
        intervals: show ``X_lo``/``X_hi`` as ``X [lo, hi]`` in the column of ``X``.
        ms: columns stored in seconds, shown in milliseconds. (Also scaled, whatever the
            arguments: ``mean_delta_macs``, stored in MACs, shown in millions; ``eps``, a
            fraction of the pixel range, shown in 1/255 as ``eps_255`` is.)
        index: keep the DataFrame's index as leading columns.
        pretty: show attacks, architectures, pairs and datasets by their display names
            (``resnet56→vgg16`` -> ``ResNet-56 → VGG-16``); the CSV keeps the raw names.
        interval_note: what the intervals are, written under the table when it shows any (default:
            Wilson for a proportion, a seeded bootstrap over images for a difference or a mean).
    Returns:
        an :class:`HTMLBlock`; ``.data`` is the DataFrame of display strings (library column names).
    """
    raw = df.reset_index() if index else df.copy()
    if pretty:
        raw = _prettify(raw)
    labels = {**LABELS, **(labels or {})}
    formats = dict(formats or {})
    notes = []

    def formatter(col: str) -> Callable[[Any], str]:
        """How one value of ``col`` is shown, in a cell or in the caption: ``formats`` first, else
        :func:`format_value`; seconds in ms, MACs in millions, ε (a fraction) in 1/255."""
        scale, fmt_col = 1.0, col
        if col in ms:
            scale, fmt_col = 1e3, "ms / example"
        elif col in _MILLION_COLUMNS:
            scale = 1e-6
        elif col == "eps":  # a fraction of the pixel range, headed "ε (/255)" as eps_255 is
            scale, fmt_col = 255.0, "eps_255"
        fmt = formats.get(col)

        def cell(v):
            if fmt is not None and isinstance(v, (int, float, np.integer, np.floating)) and not (
                    isinstance(v, float) and math.isnan(v)):
                return fmt(float(v) * scale)
            if scale != 1.0 and isinstance(v, (int, float, np.integer, np.floating)):
                v = float(v) * scale
            return format_value(v, fmt_col)

        return cell

    # constant columns -> caption
    moved = []
    for col in to_caption:
        if col in raw.columns and len(raw) and raw[col].astype(str).nunique() == 1 and raw.shape[1] > 1:
            moved.append(f"{labels.get(col, col)}: {formatter(col)(raw[col].iloc[0])}")
            raw = raw.drop(columns=[col])
    shown = pd.DataFrame(index=raw.index)
    headers = {}
    cell_html: dict[str, list[str]] = {}  # interval columns: the bracket on its own line
    bounds = {c[:-3] for c in raw.columns if c.endswith("_lo") and f"{c[:-3]}_hi" in raw.columns}
    for col in raw.columns:
        if intervals and (col.endswith("_lo") or col.endswith("_hi")) and col[:-3] in bounds and col[:-3] in raw.columns:
            continue
        values = raw[col]
        name = labels.get(col, col)
        cell = formatter(col)
        text = values.map(cell)
        if intervals and col in bounds:
            lo, hi = raw[f"{col}_lo"].map(cell), raw[f"{col}_hi"].map(cell)
            pieces = [(t, None) if t == EMPTY or (a == EMPTY and b == EMPTY) else (t, f"[{a}, {b}]")
                      for t, a, b in zip(text, lo, hi)]
            text = [t if ci is None else f"{t} {ci}" for t, ci in pieces]
            cell_html[col] = [html.escape(t) + ("" if ci is None else f'<span class="dynn-ci"> {html.escape(ci)}</span>')
                              for t, ci in pieces]
            name = f"{name} [95 % CI]"
        shown[col] = list(text)
        headers[col] = name
    has_empty = bool((shown == EMPTY).to_numpy().any()) if len(shown.columns) else False
    head = "".join(f'<th scope="col">{html.escape(h)}</th>' for h in headers.values())
    numeric = {c: pd.api.types.is_numeric_dtype(raw[c]) for c in shown.columns}
    body = "".join(
        "<tr>" + "".join(_td(v, numeric[c], cell_html[c][i] if c in cell_html else None)
                         for c, v in row.items()) + "</tr>"
        for i, (_, row) in enumerate(shown.iterrows()))
    cap_text = caption + ((" " if caption else "") + "Constant over this table: " + "; ".join(moved) + "."
                          if moved else "")
    cap = f'<p class="dynn-table-caption">{html.escape(cap_text)}</p>' if cap_text else ""
    if has_empty and empty != "":
        notes.append(f"{EMPTY} : {empty or 'not defined for that row (nothing to average over) or not reported'}.")
    if intervals and bounds & set(shown.columns):
        notes.append("[lo, hi]: 95 % interval, same units as the value ("
                     + (interval_note or "Wilson for a proportion; a seeded bootstrap over images for a difference "
                                         f"or a mean, left out below {metrics.MIN_BOOTSTRAP_IMAGES} images") + ").")
    link = ""
    if csv:
        if isinstance(csv, str):
            name = csv
        else:  # "Table RQ1.1. Per-pair ..." -> table-rq1-1.csv
            m = re.match(r"\s*(Table\s+[A-Za-z0-9]+(?:\.[0-9]+)*)", caption)
            name = f"{_slug(m.group(1) if m else caption)}.csv"
        link = csv_link(df.reset_index() if index else df, name)
    foot = "".join(f"<span>{html.escape(n)}</span> " for n in notes)
    markup = (f'{cap}<div class="dynn-table-wrap"><table class="dataframe dynn-table"><thead><tr>{head}</tr></thead>'
              f'<tbody>{body}</tbody></table></div>'
              + (f'<p class="dynn-table-foot">{foot}{link}</p>' if foot or link else ""))
    plain = shown.rename(columns=headers)
    text = ((cap_text + "\n") if cap_text else "") + (plain.to_string(index=False) if len(plain.columns) else "")
    if notes:
        text += "\n" + "\n".join(notes)
    return HTMLBlock(markup, text, shown)


def shared_timing_note(df: pd.DataFrame, what: str = "attack tables") -> str:
    """A caption sentence when times behind a displayed table were measured while other jobs of
    the run could use the same device (``df``'s ``seconds_shared`` column, one row per attack
    table or model, named ``what``); ``""`` otherwise."""
    if "seconds_shared" not in df or not df["seconds_shared"].any():
        return ""
    n = int(df["seconds_shared"].sum())
    return (f" The wall times of {n} of the {len(df)} {what} behind this table were measured while other jobs of "
            "the run could use the same device (several workers, or a Ray run sharing GPUs or nodes), so they say "
            "little about the computation itself.")


def with_intervals(df: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """``df[columns]``, each column followed by its ``_lo``/``_hi`` interval columns where the table has
    them; columns absent from ``df`` are skipped (tables gain columns as the library grows)."""
    keep = [c for base in columns for c in (base, f"{base}_lo", f"{base}_hi") if c in df.columns]
    return df[list(dict.fromkeys(keep))]


# ---------------------------------------------------------------------------------- verdicts

VERDICT_STYLES: dict[str, tuple[str, str]] = {
    "holds": ("holds", "#1e7d34"),
    "partly": ("partly", "#b8860b"),
    "does not hold": ("fails", "#b02a37"),
    "inconclusive": ("inconclusive", "#495a8c"),
    "not testable": ("untestable", "#6c757d"),
}
"""Verdict (:data:`dynn_lib.verdicts.VERDICTS`) -> (CSS modifier of the box, colour of its edge)."""


def normalise_verdict(verdict: str) -> tuple[str, str]:
    """(family, full text) of a verdict: the family is the vocabulary word the text starts with
    (``"not testable: needs CIFAR-100"`` -> ``"not testable"``, :func:`dynn_lib.verdicts.family`);
    ValueError for a word outside the vocabulary, so an old or misspelt verdict cannot reach a page."""
    text = str(verdict).strip()
    return _v.family(text), text


def is_indicative(profile: str | None, dataset: str | Sequence[str] | None = None,
                  generated: bool = False) -> bool:
    """True when results of this profile / dataset must not pass for real ones: a profile other than
    :data:`REAL_PROFILES`, or generated data (:data:`GENERATED_DATASETS`, or ``generated``)."""
    datasets = [dataset] if isinstance(dataset, str) or dataset is None else list(dataset)
    return (generated or (profile is not None and str(profile) not in REAL_PROFILES)
            or any(d in GENERATED_DATASETS for d in datasets if d))


def profile_tag(profile: str | None, dataset: str | Sequence[str] | None = None, generated: bool = False) -> str:
    """``"[smoke]"``, ``"[smoke · generated data]"``, ``"[generated data]"`` or ``""`` (real results)."""
    datasets = [dataset] if isinstance(dataset, str) or dataset is None else list(dataset)
    parts = []
    if profile is not None and str(profile) not in REAL_PROFILES:
        parts.append(str(profile))
    if generated or any(d in GENERATED_DATASETS for d in datasets if d):
        parts.append("generated data")
    return f"[{' · '.join(parts)}]" if parts else ""


def _claim_text(result: Mapping[str, Any]) -> str:
    claim = result.get("claim")
    if claim:
        return str(claim)
    n = result.get("finding")
    try:
        from .claims import FINDINGS
        return FINDINGS.get(int(n), (None, None, ""))[2] if n is not None else ""
    except (ImportError, ValueError, TypeError):
        return ""


EVIDENCE_BREAK_CHARS = 300
"""Evidence longer than this, listing at least three comparisons, is shown one comparison per line."""


def evidence_html(text: Any) -> str:
    """An evidence sentence as HTML (escaped): when it is long (over :data:`EVIDENCE_BREAK_CHARS`
    characters) and lists at least three comparisons separated by ``"; "`` outside brackets and
    parentheses, each separator is followed by a line break, so the comparisons read one per line;
    the words are unchanged (the text and the CSV keep one line)."""
    text = str(text)
    cuts, depth = [], 0
    for i, ch in enumerate(text):
        if ch in "([":
            depth += 1
        elif ch in ")]":
            depth = max(depth - 1, 0)
        elif ch == ";" and depth == 0 and text[i + 1:i + 2] == " ":
            cuts.append(i + 1)
    if len(text) <= EVIDENCE_BREAK_CHARS or len(cuts) < 2:
        return html.escape(text)
    parts = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)])]
    return "<br>".join(html.escape(p.lstrip() if k else p) for k, p in enumerate(parts))


def verdict_box(result: Mapping[str, Any], *, profile: str | None = None, dataset: str | Sequence[str] | None = None,
                generated: bool = False) -> HTMLBlock:
    """One finding as an admonition coloured by its verdict.

    Args:
        result: a finding dict: ``verdict`` and ``evidence`` (required), ``finding`` (its number),
            ``claim`` (else the ledger's wording of finding N), ``label`` (replaces "Finding N"),
            ``n_images`` (the sample size it rests on; "not stated" when absent), ``seeds``.
        profile, dataset, generated: the run's; a tag (:func:`profile_tag`) follows the verdict
            when the numbers are not real ones.
    """
    if "verdict" not in result or "evidence" not in result:
        raise ValueError(f"a finding result needs 'verdict' and 'evidence'; got keys {sorted(result)}")
    family, text = normalise_verdict(result["verdict"])
    css, colour = VERDICT_STYLES.get(family, ("other", "#6c757d"))
    n = result.get("finding")
    head = result.get("label") or (f"Finding {n}" if n is not None else "Finding")
    tag = profile_tag(profile, dataset, generated)
    n_img = result.get("n_images")
    sample = (f"{int(n_img):,} images" if isinstance(n_img, (int, np.integer, float)) and not
              (isinstance(n_img, float) and math.isnan(n_img)) else "not stated")
    seeds = result.get("seeds") or result.get("n_seeds")
    claim = _claim_text(result)
    with_sample = "n_images" in result or "finding" in result  # a check of code, not of data, has none
    title = (f'{html.escape(head)}: <span class="dynn-verdict-word">{html.escape(text)}</span>'
             + (f' <span class="dynn-tag">{html.escape(tag)}</span>' if tag else ""))
    markup = (f'<div class="admonition dynn-verdict dynn-verdict-{css}" style="border-color: {colour}" '
              f'data-verdict="{html.escape(family)}">'
              f'<p class="admonition-title">{title}</p>'
              + (f'<p class="dynn-claim">{html.escape(claim)}</p>' if claim else "")
              + f'<p class="dynn-evidence"><b>Deciding numbers.</b> {evidence_html(result["evidence"])}</p>'
              + (f'<p class="dynn-sample"><b>Rests on</b> {html.escape(sample)}'
                 + (f"; <b>seeds</b> {html.escape(str(seeds))}" if seeds else "") + "</p>" if with_sample else "")
              + "</div>")
    plain = "\n".join([f"{head}: {text}" + (f" {tag}" if tag else ""), *([f"  claim: {claim}"] if claim else []),
                       f"  deciding numbers: {result['evidence']}", *([f"  rests on: {sample}"] if with_sample else [])])
    return HTMLBlock(markup, plain, dict(result))


def findings(results: Iterable[Mapping[str, Any]], *, profile: str | None = None,
             dataset: str | Sequence[str] | None = None, generated: bool = False) -> HTMLBlock:
    """Several :func:`verdict_box` es, one after the other (the closing section of a page)."""
    boxes = [verdict_box(r, profile=profile, dataset=dataset, generated=generated) for r in results]
    return HTMLBlock("".join(b.markup for b in boxes), "\n\n".join(b.text for b in boxes), [b.data for b in boxes])


# ---------------------------------------------------------------------------------- the claims ledger

UNCOMPARED = ("not testable",)
"""Verdict families of ledger rows that this build's data cannot test (another dataset, nothing run or measurable)."""


def _family(verdict: Any) -> str:
    return normalise_verdict(str(verdict))[0]


def ledger_table(rows: pd.DataFrame, columns: Sequence[str], caption: str, *, styler: Callable | None = None,
                 csv: str = "ledger.csv", tag: str = "") -> HTMLBlock:
    """Ledger rows as the claims page shows them: rows this build can decide in a table, the others
    (:data:`UNCOMPARED`: another dataset, nothing run) collapsed under it, and a CSV of all of them.

    ``styler(rows, columns)`` renders a part (default: ``dynn_lib.claims.style_ledger``, which colours
    the verdict cells). ``tag`` (:func:`profile_tag`) follows every shown verdict.
    """
    if styler is None:
        from .claims import style_ledger as styler
    cols = [c for c in columns if c in rows.columns]
    # a column constant over the table (the dataset used, the number of seeds) goes to the caption
    names = {"claim_id": "id", "n_seeds": "seeds run", "dataset_used": "dataset used", "paper_value": "paper",
             "reproduced_value": "this build"}  # "verdict", "evidence", "claim" keep their names (styled)
    const = [c for c in ("dataset_used", "n_seeds") if c in cols and len(rows) and rows[c].astype(str).nunique() == 1]
    if const:
        caption = caption.rstrip() + " " + "; ".join(f"{names[c]}: {rows[c].iloc[0]}" for c in const) + "."
        cols = [c for c in cols if c not in const]
    undecided = rows["verdict"].map(_family).isin(UNCOMPARED)
    shown, hidden = rows[~undecided], rows[undecided]


    def render(part: pd.DataFrame) -> str:
        renamed = part[cols].rename(columns=names)
        if tag and "verdict" in renamed.columns:
            renamed = renamed.assign(verdict=renamed["verdict"].astype(str) + f" {tag}")
        return f'<div class="dynn-table-wrap">{styler(renamed, [names.get(c, c) for c in cols]).to_html()}</div>'

    parts = [f'<p class="dynn-ledger-caption">{html.escape(caption)} {len(shown)} row(s) tested by this '
             f"build (an inconclusive one is tested, not decided); {len(hidden)} that its data cannot test are "
             f"collapsed below.</p>"]
    parts.append(render(shown) if len(shown) else "<p><i>No row of this table could be tested by this build.</i></p>")
    if len(hidden):
        parts.append(f"<details><summary>{len(hidden)} row(s) this build cannot test (another dataset, nothing "
                     f"published, or nothing to measure): show</summary>{render(hidden)}</details>")
    parts.append(f'<p class="dynn-table-foot">{csv_link(rows, csv)}</p>')
    text = f"{caption}\n{rows[cols].to_string(index=False)}"
    return HTMLBlock("".join(parts), text, rows)


QUESTION_PAGES = {"zoo": ("the model zoo", "model_zoo"), "rq1": ("RQ1", "rq1_transferability"),
                  "rq2": ("RQ2", "rq2_efficiency"), "rq3": ("RQ3", "rq3_exit_design"),
                  "rq4": ("RQ4", "rq4_early_attack"), "appendix": ("the appendix", "appendix")}
"""Question -> (its name in prose, its page under ``book/_generated``)."""


def site_summary_markdown(ledger: pd.DataFrame, profile: str, datasets: Sequence[str], *,
                          generated: bool = False, missing: Sequence[str] = (), changes: Sequence[str] = ()) -> str:
    """The landing page's "Results of this build" (Markdown): profile, data, what the counts count,
    and the verdict of each of the paper's findings, from the same ledger as the claims page.
    ``missing``: questions with no published result on the first dataset (a partial build), named
    with links to their pages. ``changes``: the profile fields the published results changed, one
    text per result (the claims page's ``profile changes`` column; "none" or "" for a result made
    with the profile as defined), stated after the profile's name."""
    bad = [q for q in missing if q not in QUESTION_PAGES]
    if bad:
        raise ValueError(f"unknown question(s) {bad} in missing; accepted: {', '.join(QUESTION_PAGES)}")
    tag = profile_tag(profile, datasets, generated)
    fam = ledger["verdict"].map(_family)
    decided = ledger[~fam.isin(UNCOMPARED)]
    counts = decided["verdict"].map(_family).value_counts()
    counts = {v: int(counts.get(v, 0)) for v in _v.VERDICTS}
    agree = counts["holds"]
    changed = sorted({c for c in changes if c and c != "none"})
    if len(changed) == 1:
        how = f" (changed: {changed[0]})"
    elif changed:
        how = (f" (with fields changed from its definition that differ between results: "
               f"{len(changed)} variants; each page's data note lists its own)")
    else:
        how = ""
    lines = [f"This site was built with profile **{profile}**{how} on **{', '.join(datasets) or '?'}**"
             + (f" {tag}: its numbers only show that the code runs and are not results." if tag else "."),
             "",
             f"The {{doc}}`claims ledger <_generated/claims>` lists {len(ledger)} statements of the paper (the ten "
             f"findings, the cells of its Tables 1-3 and percentages quoted in its text). This build's data "
             f"tests {len(decided)} of them: {agree} agree with the paper (holds), {counts['does not hold']} "
             f"disagree (does not hold), {counts['partly']} partly agree and {counts['inconclusive']} are "
             f"inconclusive (too few images or seeds to decide)."]
    if missing:
        names = ", ".join(f"{{doc}}`{QUESTION_PAGES[q][0]} <_generated/{QUESTION_PAGES[q][1]}>`" for q in missing)
        lines += ["", f"**A partial build:** the results folder holds no published result for {names} on "
                      f"{datasets[0] if datasets else '?'}; the statements that need them are 'not testable' here."]
    lines += ["", "| finding | the paper's statement | verdict of this build |", "|---|---|---|"]
    for r in ledger[ledger["claim_id"].astype(str).str.startswith("F")].itertuples():
        verdict = str(r.verdict).replace("|", "/")
        claim = str(getattr(r, "claim", "")).replace("|", "/")
        lines.append(f"| {r.claim_id} | {claim} | {verdict}{(' ' + tag) if tag else ''} |")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------- paths, classes

def rel_path(path: str | Path, base: str | Path) -> str:
    """``path`` relative to ``base`` (the results folder) when it lies inside it, else its last two
    components prefixed with ``…/`` so that no absolute local path is printed."""
    p, b = Path(path).resolve(), Path(base).resolve()
    try:
        rel = p.relative_to(b)
        return str(rel) if str(rel) != "." else "."
    except ValueError:
        tail = Path(*p.parts[-2:]) if len(p.parts) >= 2 else p
        return f"…/{tail}"


CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
CIFAR100_CLASSES = tuple(
    "apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy bridge bus butterfly camel can "
    "castle caterpillar cattle chair chimpanzee clock cloud cockroach couch crab crocodile cup dinosaur dolphin "
    "elephant flatfish forest fox girl hamster house kangaroo keyboard lamp lawn_mower leopard lion lizard lobster "
    "man maple_tree motorcycle mountain mouse mushroom oak_tree orange orchid otter palm_tree pear pickup_truck "
    "pine_tree plain plate poppy porcupine possum rabbit raccoon ray road rocket rose sea seal shark shrew skunk "
    "skyscraper snail snake spider squirrel streetcar sunflower sweet_pepper table tank telephone television "
    "tiger tractor train trout tulip turtle wardrobe whale willow_tree wolf woman worm".split())


def class_names(dataset: str, data_dir: str | Path | None = None) -> list[str]:
    """Class name per label of ``dataset`` (label order of :mod:`dynn_lib.data`).

    CIFAR-10 (and ``cifar10-jpeg``) and CIFAR-100 names are built in; Tiny ImageNet names are
    read from ``words.txt`` of ``<data_dir>/tiny-imagenet-200`` (sorted wnids, the library's
    label order), falling back to the wnids; ``synthetic`` and anything unknown get
    ``"class k"``.
    """
    import os

    if dataset in ("cifar10", "cifar10-jpeg"):
        return list(CIFAR10_CLASSES)
    if dataset == "cifar100":
        return [c.replace("_", " ") for c in CIFAR100_CLASSES]
    if dataset == "tinyimagenet":
        root = Path(data_dir or os.environ.get("DYNN_DATA_DIR", ".")) / "tiny-imagenet-200"
        wnids_file = root / "wnids.txt"
        if wnids_file.is_file():
            wnids = sorted({w.strip() for w in wnids_file.read_text().splitlines() if w.strip()})
            words = {}
            if (root / "words.txt").is_file():
                for line in (root / "words.txt").read_text(encoding="utf-8", errors="replace").splitlines():
                    k, _, v = line.partition("\t")
                    words[k] = v.split(",")[0].strip()
            return [words.get(w, w) for w in wnids]
    from .data import get_info

    try:
        k = get_info(dataset).num_classes
    except Exception:  # unknown dataset name: no count to go by
        k = 0
    return [f"class {i}" for i in range(k)]
