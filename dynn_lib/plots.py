"""Figures of the book: one function per paper figure, each ``tidy DataFrame -> Figure``.

Every function returns a :class:`matplotlib.figure.Figure` built **without pyplot**
(``Figure(...)``), so nothing is registered with pyplot's figure manager: no figure leaks, no
``plt.show()`` or ``plt.close()`` is needed, and a notebook shows a figure only when the cell
displays it (``fig`` as the last expression, ``display(fig)`` or ``fig.savefig(...)``).

Conventions shared by all figures:

* Colours come from the colour-blind-safe Okabe-Ito palette; an attack keeps its colour in
  every figure (FGSM orange, PGD blue, MI-FGSM green) and so does an architecture.
* Exit numbers are 0-based (:mod:`dynn_lib.early_exit`); rates are percentages in [0, 100].
* Exit numbers are integers, so their distributions are drawn as **discrete histograms of
  probabilities** (bar heights sum to 1 per attack), never as a kernel density: a KDE would
  put mass between exits and below exit 0 that no input can have. The paper calls its plots
  "density plots"; the bars show the same distribution without the smoothing artefact.
* When a table holds several ε and the caller does not choose one, a figure uses the ε
  closest to the protocol default 8/255 and names it in the title.

Figures (paper numbers in brackets):

* :func:`transfer_success` [2, 12, 16], :func:`exit_used_density` [7],
  :func:`exit_change_density` [3, 4, 10, 11], :func:`first_changed_exit_density` [5, 6, 8, 9],
  :func:`early_attack_alpha` [Table 2], :func:`image_grid` [13-15],
* :func:`eps_sweep` (headline metrics vs ε), :func:`exit_accuracy` (model zoo),
  :func:`paper_vs_reproduced` (side-by-side bars), and the widget figures
  :func:`exit_shift` and :func:`early_attack_bars`.
"""
from __future__ import annotations

import math
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from .experiments.rq4 import PAPER_TABLE2, dataset_family  # noqa: F401  (the paper's Table 2, kept in rq4)

__all__ = [
    "PALETTE", "ATTACK_COLORS", "ARCH_COLORS", "PAPER_TABLE2", "DEFAULT_EPS",
    "transfer_success", "exit_used_density", "exit_change_density", "first_changed_exit_density",
    "early_attack_alpha", "eps_sweep", "image_grid", "exit_accuracy", "paper_vs_reproduced",
    "exit_shift", "early_attack_bars",
    "pretty_attack", "pretty_arch", "pretty_pair", "pretty_dataset", "eps_label",
]

# ---------------------------------------------------------------- palette and labels

PALETTE: tuple[str, ...] = ("#E69F00", "#0072B2", "#009E73", "#CC79A7", "#56B4E9", "#D55E00",
                            "#F0E442", "#000000")
"""Okabe-Ito colours (colour-blind safe), in the order used for unnamed categories."""

ATTACK_COLORS: dict[str, str] = {"fgsm": "#E69F00", "pgd": "#0072B2", "mifgsm": "#009E73",
                                 "early_attack": "#CC79A7"}
ARCH_COLORS: dict[str, str] = {"vgg16": "#0072B2", "resnet56": "#D55E00", "mobilenet": "#009E73"}
_ATTACK_ORDER = ("fgsm", "pgd", "mifgsm", "early_attack")
_ATTACK_NAMES = {"fgsm": "FGSM", "pgd": "PGD", "mifgsm": "MI-FGSM", "early_attack": "Early Attack"}
_ARCH_ORDER = ("vgg16", "resnet56", "mobilenet")
_ARCH_NAMES = {"vgg16": "VGG-16", "resnet56": "ResNet-56", "mobilenet": "MobileNet"}
_DATASET_NAMES = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100", "cifar10-jpeg": "CIFAR-10 (JPEG)",
                  "tinyimagenet": "Tiny ImageNet", "synthetic": "synthetic"}
_DIRECTION_NAMES = {"S2D": "S2D (SDNN → DyNN)", "D2S": "D2S (DyNN → SDNN)", "white-box": "white-box"}
_KIND_NAMES = {"cnn": "CNN (SDNN)", "sdn": "DyNN (SDN training)", "ic_only": "DyNN (IC-only)"}

DEFAULT_EPS = 8 / 255
"""The ε a figure picks when a table holds several and none is requested (protocol section 6)."""

COLUMN_WIDTH_IN = 7.4
"""Width (inches) of every figure: the book's text column is about 780 px and the notebooks draw at
100 px per inch, so a figure is shown at its own size, never scaled down."""

BOOK_RC: dict[str, Any] = {
    "font.size": 12, "axes.titlesize": 12, "axes.labelsize": 12, "xtick.labelsize": 12,
    "ytick.labelsize": 12, "legend.fontsize": 12, "figure.titlesize": 13, "figure.labelsize": 12,
    "figure.dpi": 100, "savefig.dpi": 100,
}
"""Matplotlib settings every figure is drawn with: at 100 px per inch, 12 pt is 16.7 px, at least
the body text of the book (16 px)."""

MIN_FONT_PT = 11.5
"""Smallest font size (points) a figure may use (16 px at 100 dpi); the tests hold every figure to it."""


def _book_style(fn):
    """Draw ``fn``'s figure under :data:`BOOK_RC` (the style is fixed at creation time)."""
    import functools

    import matplotlib

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with matplotlib.rc_context(BOOK_RC):
            return fn(*args, **kwargs)

    return wrapper



def pretty_attack(a: str) -> str:
    return _ATTACK_NAMES.get(str(a), str(a))


def pretty_arch(a: str) -> str:
    return _ARCH_NAMES.get(str(a), str(a))


def pretty_dataset(d: str) -> str:
    return _DATASET_NAMES.get(str(d), str(d))


def pretty_pair(p: str) -> str:
    """``"resnet56→vgg16"`` -> ``"ResNet-56 → VGG-16"``; a single arch -> its display name."""
    s = str(p)
    for sep in ("→", "->"):
        if sep in s:
            a, b = s.split(sep, 1)
            return f"{pretty_arch(a.strip())} → {pretty_arch(b.strip())}"
    return pretty_arch(s)


def eps_label(eps: float) -> str:
    """ε in [0,1] pixels as ``"8/255"`` (or ``"7.5/255"``)."""
    e = float(eps) * 255
    return f"{int(round(e))}/255" if abs(e - round(e)) < 1e-6 else f"{e:.3g}/255"


def _ordered(values: Iterable[Any], order: Sequence[Any] = ()) -> list:
    """Unique values, those in ``order`` first (in that order), the rest sorted."""
    vals = list(dict.fromkeys(v for v in values if not (isinstance(v, float) and math.isnan(v))))
    first = [o for o in order if o in vals]
    rest = sorted((v for v in vals if v not in order), key=str)
    return first + rest


_S2D_PAIRS = ("resnet56→vgg16", "mobilenet→mobilenet", "mobilenet→resnet56")
"""The protocol's S2D pairs (section 7); D2S pairs are their reverses and are drawn in the same
order, so that panel i of S2D and panel i of D2S show the same two architectures."""


def _order_pairs(values: Iterable[Any]) -> list:
    """Pairs in protocol order (S2D order; a D2S pair at its reverse's place), then architectures,
    then anything else sorted."""
    def key(p):
        s = str(p).replace("->", "→")
        if "→" in s:
            a, b = (x.strip() for x in s.split("→", 1))
            for i, q in enumerate(_S2D_PAIRS):
                if q in (f"{a}→{b}", f"{b}→{a}"):
                    return (0, i, 0 if f"{a}→{b}" == q else 1, s)
            return (2, 0, 0, s)
        if s in _ARCH_ORDER:
            return (1, _ARCH_ORDER.index(s), 0, s)
        return (2, 0, 0, s)
    return sorted(_ordered(values), key=key)


def _sort_keys(keys: Iterable[tuple[Any, Any]]) -> list[tuple[Any, Any]]:
    """(dataset, pair) panel keys: datasets in name order, pairs in protocol order."""
    keys = list(keys)
    order = {p: i for i, p in enumerate(_order_pairs(k[1] for k in keys))}
    return sorted(keys, key=lambda k: (str(k[0]), order.get(k[1], len(order))))


def _legend(fig: Figure, handles: list, fontsize: float | None = None) -> None:
    """A legend under the panels, with as many columns as fit the figure's width (labels measured
    at about 0.1 inch per character)."""
    if not handles:
        return
    longest = max(len(str(h.get_label())) for h in handles)
    per_row = max(1, int(fig.get_figwidth() / (0.6 + 0.1 * longest)))
    fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), per_row), frameon=False,
               **({"fontsize": fontsize} if fontsize else {}))


def _colors(keys: Sequence[str], named: Mapping[str, str]) -> dict[str, str]:
    """A colour per key: the named colour where there is one, else the next free palette colour."""
    used = {named[k] for k in keys if k in named}
    free = [c for c in PALETTE if c not in used]
    out = {}
    for k in keys:
        if k in named:
            out[k] = named[k]
        else:
            out[k] = free.pop(0) if free else "#777777"
    return out


def _require(df: pd.DataFrame, cols: Iterable[str], what: str) -> None:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise ValueError(f"{what} needs columns {missing}; got {list(df.columns)}")


def _filter(df: pd.DataFrame, **eq: Any) -> pd.DataFrame:
    """Rows where each given column equals its value (``None`` = keep all)."""
    for col, val in eq.items():
        if val is None or col not in df.columns:
            continue
        if isinstance(val, (list, tuple, set)):
            df = df[df[col].isin(list(val))]
        else:
            df = df[df[col] == val]
    return df


def _pick_eps(df: pd.DataFrame, eps: float | None) -> tuple[pd.DataFrame, float | None]:
    """Rows at ``eps`` (matched with tolerance); ``None`` = the stored ε closest to 8/255."""
    if "eps" not in df.columns or df.empty:
        return df, eps
    values = np.unique(df["eps"].astype(float).to_numpy())
    if eps is None:
        eps = float(values[np.argmin(np.abs(values - DEFAULT_EPS))])
    sel = np.isclose(df["eps"].astype(float), float(eps), rtol=0, atol=1e-9)
    if not sel.any():
        raise ValueError(f"no rows at eps={eps:.6g} ({eps_label(eps)}); stored: "
                         f"{', '.join(eps_label(v) for v in values)}")
    return df[sel], float(eps)


def _new_figure(nrows: int, ncols: int, width: float = 4.2, height: float = 3.2,
                sharey: bool | str = False, sharex: bool | str = False) -> tuple[Figure, np.ndarray]:
    """A constrained-layout grid at most :data:`COLUMN_WIDTH_IN` wide (panels narrowed to fit)."""
    fig = Figure(figsize=(min(COLUMN_WIDTH_IN, max(5.0, width * ncols)), height * nrows + 1.0), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False, sharey=sharey, sharex=sharex)
    for ax in axes.flat:
        ax.grid(axis="y", color="#dddddd", linewidth=0.7)
        ax.set_axisbelow(True)
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
    return fig, axes


def _panel_note(ax: Axes, text: str) -> None:
    """A short multi-line note in the panel's upper right corner (numbers the title has no room for)."""
    ax.text(0.97, 0.97, text, transform=ax.transAxes, ha="right", va="top", linespacing=1.15,
            bbox=dict(boxstyle="round,pad=0.25", facecolor="white", edgecolor="#cccccc", alpha=0.9))


def _probability_axis(ax: Axes, lines: int) -> None:
    """A probability axis (ticks 0-1) with headroom above 1 for a :func:`_panel_note` of ``lines``
    lines, so that the note never hides a bar."""
    ax.set_ylim(0, 1.1 + 0.11 * lines)
    ax.set_yticks([0, 0.25, 0.5, 0.75, 1.0])


def _no_data(ax: Axes, text: str = "no data for this selection") -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="#555555")
    ax.set_xticks([])
    ax.set_yticks([])


def _grouped_bars(ax: Axes, categories: Sequence[Any], groups: Sequence[Any],
                  values: Mapping[tuple[Any, Any], float], colors: Mapping[Any, str],
                  labels: Mapping[Any, str] | None = None, annotate: str | None = None,
                  width: float = 0.8,
                  errors: Mapping[tuple[Any, Any], tuple[float, float]] | None = None) -> dict[tuple[Any, Any], float]:
    """Bars at x = category index, one per group side by side. Returns the bar centres.

    ``errors`` maps (category, group) to the (lo, hi) ends of an interval, drawn as a black
    error bar; bars without one get none. ``annotate`` writes the values on the bars when no
    interval is drawn and there are at most 8 bars per panel (more would overlap at the book's
    font size).
    """
    labels = labels or {}
    errors = errors or {}
    k = max(1, len(groups))
    w = width / k
    centres = {}
    for j, g in enumerate(groups):
        xs, hs, err = [], [], []
        for i, c in enumerate(categories):
            v = values.get((c, g), float("nan"))
            x = i - width / 2 + w * (j + 0.5)
            centres[(c, g)] = x
            if v is None or (isinstance(v, float) and math.isnan(v)):
                continue
            xs.append(x)
            hs.append(float(v))
            lo, hi = errors.get((c, g), (float("nan"), float("nan")))
            err.append((x, float(v), lo, hi))
        bars = ax.bar(xs, hs, width=w * 0.95, color=colors.get(g, "#777777"), label=labels.get(g, str(g)),
                      edgecolor="white", linewidth=0.5)
        drawn = [(x, v, lo, hi) for x, v, lo, hi in err if np.isfinite(lo) and np.isfinite(hi)]
        if drawn:
            ax.errorbar([d[0] for d in drawn], [d[1] for d in drawn],
                        yerr=[[max(0.0, d[1] - d[2]) for d in drawn], [max(0.0, d[3] - d[1]) for d in drawn]],
                        fmt="none", ecolor="black", elinewidth=1.0, capsize=3, zorder=3)
        if annotate and len(hs) and not errors and k * len(categories) <= 8:
            ax.bar_label(bars, fmt=annotate, padding=1)
    return centres


def _intervals(df: pd.DataFrame, keys: Sequence[str], value: str) -> dict[tuple[Any, ...], tuple[float, float]]:
    """(lo, hi) of ``value`` per group of ``keys`` from the ``<value>_lo``/``<value>_hi`` columns, when
    the table has them and each group is one row (an interval cannot be averaged); else empty."""
    lo, hi = f"{value}_lo", f"{value}_hi"
    if lo not in df.columns or hi not in df.columns or df.empty:
        return {}
    g = df.groupby(list(keys))
    if int(g.size().max()) > 1:
        return {}
    return {k: (float(r[lo]), float(r[hi])) for k, r in g[[lo, hi]].first().iterrows()}


def _shared_xlabel(axes: np.ndarray, text: str) -> None:
    """One x label for a row of panels, on the middle panel of the bottom row (``fig.supxlabel``
    would collide with the legend under the panels)."""
    row = [ax for ax in axes[-1] if ax.get_visible()] or list(axes[-1])
    row[len(row) // 2].set_xlabel(text)


def _thin_ticks(ax: Axes, labels: Sequence[str], max_labels: int = 8) -> None:
    """A tick at every position, labelled at every n-th so that labels never overlap."""
    step = max(1, math.ceil(len(labels) / max_labels))
    ax.set_xticks(range(len(labels)), [t if i % step == 0 else "" for i, t in enumerate(labels)])


# ---------------------------------------------------------------- RQ1: transfer success (Figs. 2, 12, 16)

@_book_style
def transfer_success(summary: pd.DataFrame, *, dataset: str | Sequence[str] | None = None,
                     eps: float | None = None, attacks: Sequence[str] | None = None,
                     value: str = "success_rate", paper: pd.DataFrame | None = None,
                     title: str | None = None) -> Figure:
    """Transfer attack success rate per surrogate→target pair, S2D next to D2S (Figs. 2, 12, 16).

    Grouped bars: x = pair, one bar per attack (hue), one panel per direction (columns: S2D,
    D2S) and per dataset (rows). Y = ``value`` in % (default ``success_rate``: over images the
    target classifies correctly when benign; ``success_rate_all`` for all images).

    Args:
        summary: the RQ1 summary (``dataset, direction, pair, attack, eps, success_rate, ...``).
        dataset, attacks: optional filters. ``eps``: which ε (default: closest to 8/255).
        paper: optional reference with the same keys and a ``value`` column, drawn as black
            tick marks on the bars. The paper gives its figures without numbers, so the book
            passes none; the option exists for a user comparing with their own reference.
    """
    _require(summary, ["direction", "pair", "attack", value], "transfer_success")
    df = _filter(summary, dataset=dataset, attack=attacks)
    df, eps = _pick_eps(df, eps)
    datasets = _ordered(df["dataset"]) if "dataset" in df.columns else [None]
    datasets = datasets or [None]
    directions = _ordered(df["direction"], ("S2D", "D2S")) or ["S2D", "D2S"]
    attack_list = _ordered(df["attack"], _ATTACK_ORDER)
    colors = _colors(attack_list, ATTACK_COLORS)
    fig, axes = _new_figure(len(datasets), len(directions), width=4.6, height=3.4, sharey=True)
    for r, ds in enumerate(datasets):
        for c, direction in enumerate(directions):
            ax = axes[r, c]
            sub = df[df["direction"] == direction]
            if ds is not None:
                sub = sub[sub["dataset"] == ds]
            head = _DIRECTION_NAMES.get(direction, direction)
            ax.set_title(f"{pretty_dataset(ds)} · {head}" if ds is not None else head)
            if sub.empty:
                _no_data(ax)
                continue
            pairs = _order_pairs(sub["pair"])
            vals = sub.groupby(["pair", "attack"])[value].mean().to_dict()
            centres = _grouped_bars(ax, pairs, attack_list, vals, colors,
                                    {a: pretty_attack(a) for a in attack_list}, annotate="%.0f",
                                    errors=_intervals(sub, ["pair", "attack"], value))
            if paper is not None and not paper.empty:
                ref = _filter(paper, dataset=ds, direction=direction)
                for (p, a), v in ref.groupby(["pair", "attack"])[value].mean().items():
                    if (p, a) in centres and not math.isnan(v):
                        ax.plot([centres[(p, a)]], [v], marker="_", markersize=14, mew=2.5, color="black")
            ax.set_xticks(range(len(pairs)), [pretty_pair(p).replace(" → ", "\n→ ") for p in pairs])
            ax.set_ylim(0, 105)
            if c == 0:
                ax.set_ylabel("attack success rate (%)")
    for ax in axes[-1]:
        ax.set_xlabel("surrogate → target")
    handles = [Patch(color=colors[a], label=pretty_attack(a)) for a in attack_list]
    if paper is not None and not paper.empty:
        handles.append(Line2D([], [], marker="_", markersize=14, mew=2.5, color="black", ls="", label="reference"))
    if {f"{value}_lo", f"{value}_hi"} <= set(df.columns):
        handles.append(Line2D([], [], marker="|", markersize=12, color="black", ls="", label="95 % interval"))
    _legend(fig, handles)
    eps_txt = f" (ε = {eps_label(eps)})" if eps is not None else ""
    fig.suptitle(title or f"Black-box transfer attack success{eps_txt}")
    return fig


# ---------------------------------------------------------------- RQ1: exit used by the DyNN surrogate (Fig. 7)

@_book_style
def exit_used_density(exit_used: pd.DataFrame, *, dataset: str | Sequence[str] | None = None,
                      eps: float | None = None, attacks: Sequence[str] | None = None,
                      title: str | None = None) -> Figure:
    """Which exit of the DyNN surrogate produced each adversarial example (Fig. 7).

    Discrete histogram (probabilities; bars of one attack sum to 1 per panel) of the surrogate's
    exit used at the last attack step, one panel per (dataset, pair), one bar per attack. The
    paper drew kernel densities; exits are integers, so the bars show the distribution without
    mass between exits. The panel title gives the share from exits 0-2 for each attack (the
    paper's "over 70% of PGD examples come from exits 0-2"). Exit -1 (a loss over several
    exits, ``exit_loss="mean"``) is drawn as its own bar, "all (mean)".

    Args:
        exit_used: the RQ1 ``exit_used`` table (``dataset, pair, attack, eps, exit, fraction``).
    """
    _require(exit_used, ["pair", "attack", "exit", "fraction"], "exit_used_density")
    df = _filter(exit_used, dataset=dataset, attack=attacks)
    df, eps = _pick_eps(df, eps)
    keys = (df[["dataset", "pair"]].drop_duplicates().itertuples(index=False, name=None)
            if "dataset" in df.columns else [(None, p) for p in _ordered(df["pair"])])
    keys = _sort_keys(keys) or [(None, None)]
    ncols = min(3, len(keys))
    nrows = math.ceil(len(keys) / ncols)
    attack_list = _ordered(df["attack"], _ATTACK_ORDER)
    colors = _colors(attack_list, ATTACK_COLORS)
    fig, axes = _new_figure(nrows, ncols, sharey=True)
    for ax in axes.flat[len(keys):]:
        ax.set_visible(False)
    for ax, (ds, pair) in zip(axes.flat, keys):
        sub = _filter(df, dataset=ds, pair=pair)
        if sub.empty:
            _no_data(ax)
            continue
        exits = list(range(min(0, int(sub["exit"].min())), int(sub["exit"].max()) + 1))
        vals = sub.groupby(["exit", "attack"])["fraction"].sum().to_dict()
        _grouped_bars(ax, exits, attack_list, vals, colors)
        early = sub[sub["exit"].between(0, 2)].groupby("attack")["fraction"].sum()
        n_of = sub.groupby("attack")["n"].max() if "n" in sub.columns else {}
        note = [f"{pretty_attack(a)} {100 * early.get(a, 0):.0f}%" + (f" of {int(n_of[a]):,}" if a in n_of else "")
                for a in attack_list if a in set(sub["attack"])]
        name = pretty_pair(pair) + (f"\n{pretty_dataset(ds)}" if ds is not None else "")
        ax.set_title(name)
        _panel_note(ax, "\n".join(["exits 0-2:", *note]))
        _thin_ticks(ax, ["all\n(mean)" if e < 0 else str(e) for e in exits])
        _probability_axis(ax, 1 + len(note))
    axes[0, 0].set_ylabel("fraction of examples")
    _shared_xlabel(axes, "surrogate exit used (0-based)")
    _legend(fig, [Patch(color=colors[a], label=pretty_attack(a)) for a in attack_list])
    eps_txt = f" (ε = {eps_label(eps)})" if eps is not None else ""
    fig.suptitle(title or f"Exit of the DyNN surrogate that generated each example{eps_txt}")
    return fig


# ---------------------------------------------------------------- RQ2 / RQ3 distributions

def _dynn_targets(df: pd.DataFrame) -> pd.DataFrame:
    """Rows whose target is a DyNN (a CNN target has one exit and no exit to change)."""
    if "target_kind" in df.columns:
        return df[df["target_kind"] != "cnn"]
    return df


def _with_delta_exit(df: pd.DataFrame, tau: float | None) -> pd.DataFrame:
    """``df`` with ``delta_exit``/``delta_macs``; recomputed by :func:`dynn_lib.experiments.rq2.add_deltas`
    (through ``common.deployed``) when a τ is given or the columns are missing (no attack re-run:
    the stored per-exit outputs are re-read)."""
    if tau is None and "delta_exit" in df.columns:
        return df
    from .experiments.rq2 import add_deltas  # lazy: keeps the import of this module light

    return add_deltas(df, tau)


def _setting_filter(df: pd.DataFrame, setting: str | None) -> pd.DataFrame:
    if setting is None or df.empty:
        return df
    if "setting" in df.columns and setting in set(df["setting"]):
        return df[df["setting"] == setting]
    if "direction" in df.columns and setting in set(df["direction"]):
        return df[df["direction"] == setting]
    raise ValueError(f"no rows with setting {setting!r}; stored settings: "
                     f"{sorted(set(df.get('setting', pd.Series(dtype=str))))}")


def _discrete_panels(df: pd.DataFrame, column: str, *, xlabel: str, title: str, note,
                     x_min: int | None = None, x_max: int | None = None) -> Figure:
    """One panel per (dataset, pair), bars of P(column = k) per attack (probabilities)."""
    attack_list = _ordered(df["attack"], _ATTACK_ORDER) if not df.empty else []
    colors = _colors(attack_list, ATTACK_COLORS)
    keys = _sort_keys(df[["dataset", "pair"]].drop_duplicates().itertuples(index=False, name=None)
                      if "dataset" in df.columns else [(None, p) for p in _ordered(df["pair"])])
    keys = keys or [(None, None)]
    ncols = min(3, len(keys))
    nrows = math.ceil(len(keys) / ncols)
    fig, axes = _new_figure(nrows, ncols, sharey=True)
    for ax in axes.flat[len(keys):]:
        ax.set_visible(False)
    for ax, (ds, pair) in zip(axes.flat, keys):
        sub = _filter(df, dataset=ds, pair=pair)
        sub = sub[sub[column].notna()] if not sub.empty else sub
        name = (pretty_pair(pair) if pair is not None else "") + (f"\n{pretty_dataset(ds)}" if ds is not None else "")
        if sub.empty:
            ax.set_title(name)
            _no_data(ax)
            continue
        lo = int(sub[column].min()) if x_min is None else min(x_min, int(sub[column].min()))
        top = int(sub["_n_exits"].max()) - 1 if "_n_exits" in sub.columns else x_max  # every exit of the target
        hi = int(sub[column].max()) if top is None else max(top, int(sub[column].max()))
        ks = list(range(lo, hi + 1))
        vals = {}
        for a, g in sub.groupby("attack"):
            p = g[column].astype(int).value_counts(normalize=True)
            vals.update({(k, a): float(p.get(k, 0.0)) for k in ks})
        _grouped_bars(ax, ks, attack_list, vals, colors)
        _thin_ticks(ax, [str(k) for k in ks])
        text = note(sub, attack_list)
        _probability_axis(ax, text.count("\n") + 1)
        ax.set_title(name)
        _panel_note(ax, text)
    axes[0, 0].set_ylabel("probability")
    _shared_xlabel(axes, xlabel)
    _legend(fig, [Patch(color=colors[a], label=pretty_attack(a)) for a in attack_list])
    fig.suptitle(title)
    return fig


@_book_style
def exit_change_density(per_image_rq2: pd.DataFrame, setting: str | None = "white-box", *,
                        dataset: str | Sequence[str] | None = None, eps: float | None = None,
                        attacks: Sequence[str] | None = None, tau: float | None = None,
                        title: str | None = None) -> Figure:
    """Change of exit number, exit(adversarial) − exit(benign), in the DyNN (Figs. 3, 4, 10, 11).

    One panel per (dataset, model or pair), one bar colour per attack; bar height = probability
    of that change (bars of one attack sum to 1). Exits are integers: these are **discrete
    histograms with** ``stat="probability"``, not kernel densities, because a KDE on integers
    spreads mass over impossible fractional and out-of-range changes and makes a spike at 0
    look like a broad hump. Panel titles give the share of inputs whose exit rose by more than
    one (the paper's headline for these figures).

    Args:
        per_image_rq2: RQ2 per-image rows (``delta_exit``; or the per-exit ``conf_*``/``pred_*``
            lists, then :func:`dynn_lib.experiments.common.deployed` computes it).
        setting: ``"white-box"`` or ``"black-box"`` (or a direction such as ``"S2D"``);
            ``None`` keeps all rows. Only DyNN targets are drawn.
        tau: recompute exits at this global τ instead of each row's stored τ.
    """
    df = _dynn_targets(_setting_filter(per_image_rq2, setting))
    df = _filter(df, dataset=dataset, attack=attacks)
    df, eps = _pick_eps(df, eps)
    if not df.empty:
        df = _with_delta_exit(df, tau)
        _require(df, ["pair", "attack", "delta_exit"], "exit_change_density")

    def note(sub, attack_list):
        up = sub.assign(up=sub["delta_exit"] > 1).groupby("attack")["up"].agg(["mean", "size"])
        return "exit +2 or more:\n" + "\n".join(f"{pretty_attack(a)} {100 * up.loc[a, 'mean']:.0f}% of "
                                                 f"{int(up.loc[a, 'size']):,}"
                                                 for a in attack_list if a in up.index)

    eps_txt = f", ε = {eps_label(eps)}" if eps is not None else ""
    tau_txt = f", τ = {tau:g}" if tau is not None else ""
    default = f"Change of exit under attack ({setting or 'all settings'}{eps_txt}{tau_txt})"
    return _discrete_panels(df, "delta_exit", xlabel="change in exit number (adversarial − benign)",
                            title=title or default,
                            note=note, x_min=0, x_max=0)


@_book_style
def first_changed_exit_density(per_image_rq3: pd.DataFrame, setting: str | None = "white-box", *,
                               dataset: str | Sequence[str] | None = None, eps: float | None = None,
                               attacks: Sequence[str] | None = None, title: str | None = None) -> Figure:
    """First exit whose prediction changes, for attacks that flip the final label (Figs. 5, 6, 8, 9).

    Only inputs with ``final_flipped`` are counted. One panel per (dataset, model or pair), one
    bar colour per attack; bar height = probability that exit k (0-based) is the first exit
    whose prediction on the adversarial input differs from its prediction on the benign input.
    Discrete histogram (probabilities), not a KDE, for the reason given in
    :func:`exit_change_density`. Panel titles give the share first changed at exit 0 and the
    number of flipped inputs.

    Args:
        per_image_rq3: RQ3 per-image rows with ``final_flipped`` and ``first_changed_exit``.
        setting: ``"white-box"`` or ``"black-box"`` (``None`` keeps all); DyNN targets only.
    """
    _require(per_image_rq3, ["pair", "attack", "final_flipped", "first_changed_exit"], "first_changed_exit_density")
    df = _dynn_targets(_setting_filter(per_image_rq3, setting))
    df = _filter(df, dataset=dataset, attack=attacks)
    df, eps = _pick_eps(df, eps)
    df = df[df["final_flipped"].astype(bool) & (df["first_changed_exit"] >= 0)]
    if "num_exits" in df.columns:  # added by rq3.add_first_changed
        df = df.assign(_n_exits=df["num_exits"])
    elif "pred_clean" in df.columns and not df.empty:
        df = df.assign(_n_exits=df["pred_clean"].map(len))

    def note(sub, attack_list):
        first = sub.assign(f=sub["first_changed_exit"] == 0).groupby("attack")["f"].agg(["mean", "size"])
        parts = [f"{pretty_attack(a)} {100 * first.loc[a, 'mean']:.0f}% of {first.loc[a, 'size']}"
                 for a in attack_list if a in first.index]
        return "at exit 0:\n" + "\n".join(parts)

    eps_txt = f", ε = {eps_label(eps)}" if eps is not None else ""
    return _discrete_panels(df, "first_changed_exit", xlabel="first exit whose label changes (0-based)",
                            title=title or f"Where the label first changes ({setting or 'all settings'}{eps_txt})",
                            note=note, x_min=0)


# ---------------------------------------------------------------- RQ4: Early Attack vs α (Table 2)

def _success_column(df: pd.DataFrame, value: str | None) -> str:
    if value is not None:
        _require(df, [value], "early_attack_alpha")
        return value
    for c in ("success_rate", "success_pct", "success_%", "success"):
        if c in df.columns:
            return c
    raise ValueError(f"no success column (success_rate / success) in {list(df.columns)}")


def _table2_long(df: pd.DataFrame, value: str | None) -> tuple[pd.DataFrame, str]:
    """Accept the long Table 2 (one row per dataset, arch, alpha), the wide
    :func:`dynn_lib.experiments.rq4.table2` (columns ``alpha=<a>``) or RQ4 per-image rows."""
    wide = [c for c in df.columns if str(c).startswith("alpha=") and not str(c).endswith(("_lo", "_hi"))]
    if "alpha" not in df.columns and wide:
        long = df.melt(id_vars=["dataset", "arch"], value_vars=wide, var_name="alpha", value_name="success_rate")
        for end in ("lo", "hi"):  # the 95 % interval of each cell, when the table has it
            cols = {c: f"{c}_{end}" for c in wide if f"{c}_{end}" in df.columns}
            if len(cols) == len(wide):
                part = df.melt(id_vars=["dataset", "arch"], value_vars=list(cols.values()), var_name="alpha",
                               value_name=f"success_rate_{end}")
                long[f"success_rate_{end}"] = part[f"success_rate_{end}"].to_numpy()
        long["alpha"] = long["alpha"].str.slice(len("alpha=")).astype(float)
        return long, "success_rate"
    _require(df, ["dataset", "arch", "alpha"], "early_attack_alpha")
    col = _success_column(df, value)
    if "method" in df.columns:
        df = df[df["method"] == "early_attack"]
    if df[col].dtype == bool or "image" in df.columns:  # per-image booleans -> percentages
        df = (df.groupby(["dataset", "arch", "alpha"], as_index=False)[col]
              .agg(lambda s: 100.0 * s.astype(float).mean()))
    return df, col


@_book_style
def early_attack_alpha(table2_long: pd.DataFrame, *, value: str | None = None, paper: bool = True,
                       title: str | None = None) -> Figure:
    """Early Attack success rate (%) against α, log-scaled x, one panel per dataset (Table 2).

    One line per architecture (solid, reproduced); the paper's Table 2 value for the same
    (dataset, arch) is the dashed line of the same colour (``paper=False`` hides it).
    ``cifar10-jpeg`` is compared with the paper's CIFAR-10 row.

    Args:
        table2_long: ``dataset, arch, alpha`` and a success column in % (``success_rate``;
            auto-detected, or name it with ``value``). Also accepted: the wide
            :func:`dynn_lib.experiments.rq4.table2` (one ``alpha=<a>`` column per α) and RQ4
            per-image rows (boolean ``success``, ``method``), aggregated here.
    """
    df, col = _table2_long(table2_long, value)
    df = df[df["alpha"].notna()]
    datasets = _ordered(df["dataset"], ("cifar10", "cifar10-jpeg", "cifar100", "tinyimagenet")) or [None]
    fig, axes = _new_figure(1, len(datasets), width=4.4, height=3.4, sharey=True)
    archs_all = _ordered(df["arch"], _ARCH_ORDER)
    colors = _colors(archs_all, ARCH_COLORS)
    for ax, ds in zip(axes.flat, datasets):
        sub = df[df["dataset"] == ds] if ds is not None else df
        ax.set_title(pretty_dataset(ds) if ds is not None else "")
        if sub.empty:
            _no_data(ax)
            continue
        for arch in _ordered(sub["arch"], _ARCH_ORDER):
            one = sub[sub["arch"] == arch]
            g = one.groupby("alpha")[col].mean().sort_index()
            ax.plot(g.index, g.values, marker="o", color=colors[arch], label=pretty_arch(arch))
            band = _intervals(one, ["alpha"], col)
            if band:
                a_s = sorted(band)
                ax.fill_between(a_s, [band[a][0] for a in a_s], [band[a][1] for a in a_s], color=colors[arch],
                                alpha=0.15, linewidth=0)
            ref = PAPER_TABLE2.get((dataset_family(ds), arch))
            if paper and ref:
                a = sorted(ref)
                ax.plot(a, [ref[x] for x in a], ls="--", marker="x", color=colors[arch], alpha=0.8)
        ax.set_xscale("log")
        ax.set_xlabel("α (weight of the final-exit term L1)")
        ax.set_ylim(-3, 103)
        ax.grid(axis="x", color="#eeeeee", linewidth=0.7)
    axes[0, 0].set_ylabel("Early Attack success (%)")
    handles = [Line2D([], [], color=colors[a], marker="o", label=pretty_arch(a)) for a in archs_all]
    if paper:
        handles += [Line2D([], [], color="#555555", marker="o", label="reproduced"),
                    Line2D([], [], color="#555555", ls="--", marker="x", label="paper (Table 2)")]
    _legend(fig, handles)
    fig.suptitle(title or "Early Attack success against α")
    return fig


@_book_style
def early_attack_bars(result: pd.DataFrame, alpha: float | None = None, *, paper: bool = True,
                      title: str | None = None) -> Figure:
    """Bars of Early Attack success (%) per architecture at one α (the α-selector's figure).

    ``result`` is :func:`dynn_lib.widgets.early_attack_at_alpha`'s table (``dataset, arch,
    success_rate, mean_internal_changed, mean_l2, n``; ``success_rate_lo``/``_hi``, when present,
    are drawn as 95 % interval whiskers). Black ticks = paper Table 2 at that α.
    """
    datasets = _ordered(result["dataset"]) if not result.empty else []
    fig, axes = _new_figure(1, 1, width=5.5, height=3.6)
    ax = axes[0, 0]
    if result.empty:
        _no_data(ax)
    else:
        archs = _ordered(result["arch"], _ARCH_ORDER)
        colors = _colors(archs, ARCH_COLORS)
        vals = result.groupby(["dataset", "arch"])["success_rate"].mean().to_dict()
        centres = _grouped_bars(ax, datasets, archs, vals, colors, {a: pretty_arch(a) for a in archs},
                                annotate="%.0f", errors=_intervals(result, ["dataset", "arch"], "success_rate"))
        if paper and alpha is not None:
            for (ds, arch), x in centres.items():
                ref = PAPER_TABLE2.get((dataset_family(ds), arch), {})
                hit = [v for k, v in ref.items() if math.isclose(k, alpha, rel_tol=1e-9)]
                if hit:
                    ax.plot([x], hit, marker="_", markersize=14, mew=2.5, color="black")
        ax.set_xticks(range(len(datasets)), [pretty_dataset(d) for d in datasets])
        ax.set_ylim(0, 105)
        ax.set_ylabel("Early Attack success (%)")
        handles = [Patch(color=colors[a], label=pretty_arch(a)) for a in archs]
        if paper:
            handles.append(Line2D([], [], marker="_", markersize=14, mew=2.5, color="black", ls="",
                                  label="paper (Table 2)"))
        _legend(fig, handles)
    fig.suptitle(title or (f"Early Attack at α = {alpha:g}" if alpha is not None else "Early Attack"))
    return fig


# ---------------------------------------------------------------- ε sweep

_EPS_METRICS = ("success_rate", "share_raised_gt1", "mean_delta_exit", "share_changed_exit0", "flip_rate",
                "mean_psnr")
"""Headline metrics :func:`eps_sweep` draws by default (those present): RQ1 summary
(``success_rate``, ``mean_psnr``), RQ2 summary (``share_raised_gt1``, ``mean_delta_exit``),
RQ3 summary (``share_changed_exit0``, ``flip_rate``)."""
_METRIC_NAMES = {"success_rate": "success rate (%)", "success_rate_all": "success rate, all images (%)",
                 "psnr": "PSNR (dB)", "mean_psnr": "PSNR (dB)", "seconds_per_example": "seconds per example",
                 "delta_exit": "mean change of exit", "mean_delta_exit": "mean change of exit",
                 "delta_macs": "mean change of MACs", "mean_delta_macs": "mean change of MACs",
                 "share_raised_gt1": "exit raised by >1 (%)", "share_changed_exit0": "first change at exit 0 (%)",
                 "flip_rate": "final label flipped (%)", "clean_accuracy": "clean accuracy (%)",
                 "mean_rel_macs_change": "mean MACs change (%)"}


@_book_style
def eps_sweep(df: pd.DataFrame, metrics: str | Sequence[str] | None = None, *, hue: str = "pair",
              style: str = "attack", col: str | None = "direction", title: str | None = None) -> Figure:
    """Headline metrics against ε (x in units of 1/255), one row of panels per metric.

    Lines: colour = ``hue`` (default the pair), line style and marker = ``style`` (default the
    attack); one column of panels per value of ``col`` (default the direction, S2D / D2S), when
    that column exists. Duplicate rows (e.g. several datasets) are averaged; filter first to
    avoid that.

    Args:
        df: any long table with ``eps`` (or ``eps_255``) and the metric columns, e.g. the RQ1
            summary (``success_rate``), the RQ2/RQ3 summaries, or per-image rows (``delta_exit``).
        metrics: column(s) to plot; default: every headline metric of :data:`_EPS_METRICS`
            present (``success_rate``, ``mean_psnr``, ``share_raised_gt1``, ...).
    """
    if "eps_255" in df.columns:
        x = df["eps_255"].astype(float)
    else:
        _require(df, ["eps"], "eps_sweep")
        x = df["eps"].astype(float) * 255
    df = df.assign(_x=x.round(6))
    if metrics is None:
        metrics = [m for m in _EPS_METRICS if m in df.columns] or \
                  [m for m in ("delta_exit", "delta_macs") if m in df.columns]
    elif isinstance(metrics, str):
        metrics = [metrics]
    _require(df, metrics, "eps_sweep")
    if not metrics:
        raise ValueError(f"eps_sweep: no metric column found in {list(df.columns)}")
    cols = _ordered(df[col], ("S2D", "D2S", "white-box")) if col and col in df.columns else [None]
    hues = _ordered(df[hue]) if hue in df.columns else [None]
    styles = _ordered(df[style], _ATTACK_ORDER) if style in df.columns else [None]
    hue_colors = _colors(hues, {**ATTACK_COLORS, **ARCH_COLORS})
    dashes = ["-", "--", ":", "-."]
    markers = ["o", "s", "^", "D", "v"]
    fig, axes = _new_figure(len(metrics), len(cols), width=4.6, height=3.0, sharex=True)
    for r, m in enumerate(metrics):
        for c, cv in enumerate(cols):
            ax = axes[r, c]
            sub = df if cv is None else df[df[col] == cv]
            sub = sub[np.isfinite(sub[m].astype(float))]
            if sub.empty:
                _no_data(ax)
                continue
            for h in hues:
                for si, s in enumerate(styles):
                    g = sub
                    if h is not None:
                        g = g[g[hue] == h]
                    if s is not None:
                        g = g[g[style] == s]
                    if g.empty:
                        continue
                    line = g.groupby("_x")[m].mean().sort_index()
                    ax.plot(line.index, line.values, color=hue_colors.get(h, "#333333"),
                            ls=dashes[si % len(dashes)], marker=markers[si % len(markers)], markersize=5)
                    band = _intervals(g, ["_x"], m)  # 95 % interval, when each ε is one row
                    if band:
                        xs_b = sorted(band)
                        ax.fill_between([x[0] if isinstance(x, tuple) else x for x in xs_b],
                                        [band[x][0] for x in xs_b], [band[x][1] for x in xs_b],
                                        color=hue_colors.get(h, "#333333"), alpha=0.15, linewidth=0)
            ax.set_ylabel(_METRIC_NAMES.get(m, m))
            if r == 0 and cv is not None:
                ax.set_title(_DIRECTION_NAMES.get(cv, str(cv)))
            if r == len(metrics) - 1:
                ax.set_xlabel("ε (× 1/255)")
            xs = sorted(df["_x"].unique())
            ax.set_xticks(xs, [f"{v:g}" for v in xs])
            if m.startswith(("success", "share", "flip")):
                ax.set_ylim(0, 105)
    handles = [Line2D([], [], color=hue_colors[h], lw=2, label=pretty_pair(h) if hue == "pair" else str(h))
               for h in hues if h is not None]
    handles += [Line2D([], [], color="#555555", ls=dashes[i % 4], marker=markers[i % 5],
                       label=pretty_attack(s) if style == "attack" else str(s))
                for i, s in enumerate(styles) if s is not None]
    if handles:
        _legend(fig, handles)
    fig.suptitle(title or "Headline metrics against the perturbation budget ε")
    return fig


# ---------------------------------------------------------------- image grid (Figs. 13-15)

def _as_hwc(images) -> np.ndarray:
    """``[N, C, H, W]`` / ``[N, H, W, C]`` / ``[N, H, W]`` tensor or array -> float ``[N, H, W, C]`` in [0, 1]."""
    if hasattr(images, "detach"):
        images = images.detach().cpu().numpy()
    a = np.asarray(images)
    if a.dtype == np.uint8:
        a = a.astype(np.float64) / 255
    a = a.astype(np.float64)
    if a.ndim == 3:
        a = a[..., None]
    if a.ndim != 4:
        raise ValueError(f"images must have shape [N, C, H, W] or [N, H, W, C], got {a.shape}")
    if a.shape[1] in (1, 3) and a.shape[-1] not in (1, 3):
        a = a.transpose(0, 2, 3, 1)
    return np.clip(a, 0, 1)


@_book_style
def image_grid(orig, adv_sdnn, adv_dynn, titles: Sequence[str] | None = None, *,
               show_psnr: bool = True, max_images: int = 6, title: str | None = None) -> Figure:
    """Original images and their adversarial versions from an SDNN and a DyNN source (Figs. 13-15).

    Rows: original, adversarial generated on the SDNN, adversarial generated on the DyNN;
    one column per image (at most ``max_images``). Under each adversarial image, its PSNR
    against the original (:func:`dynn_lib.metrics.psnr`, dB) when ``show_psnr``.

    Args:
        orig, adv_sdnn, adv_dynn: images on [0,1] pixels (or uint8), ``[N, C, H, W]`` or
            ``[N, H, W, C]``, torch or numpy, same shape.
        titles: one column title per image (the class name: :func:`dynn_lib.display.class_names`).
        max_images: columns drawn (default 6: at the book's font size a longer class name would
            not fit above a narrower image).
    """
    rows = [_as_hwc(orig), _as_hwc(adv_sdnn), _as_hwc(adv_dynn)]
    if not (rows[0].shape == rows[1].shape == rows[2].shape):
        raise ValueError(f"image sets differ in shape: {[r.shape for r in rows]}")
    n = min(len(rows[0]), max_images)
    if n == 0:
        raise ValueError("image_grid needs at least one image")
    if titles is not None and len(titles) < n:
        raise ValueError(f"need {n} titles, got {len(titles)}")
    names = ["original", "adversarial\n(SDNN source)", "adversarial\n(DyNN source)"]
    fig = Figure(figsize=(min(COLUMN_WIDTH_IN, 1.15 * n + 1.2), 5.4), layout="constrained")
    axes = fig.subplots(3, n, squeeze=False)
    means = []
    for r in range(3):
        ps = []
        for j in range(n):
            ax = axes[r, j]
            img = rows[r][j]
            ax.imshow(img[..., 0] if img.shape[-1] == 1 else img, cmap="gray" if img.shape[-1] == 1 else None,
                      vmin=0, vmax=1, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0 and titles is not None:
                ax.set_title(str(titles[j]))
            if j == 0:
                ax.set_ylabel(names[r])
            if r > 0 and show_psnr:
                mse = float(np.mean((rows[r][j] - rows[0][j]) ** 2))
                p = float("inf") if mse == 0 else 10 * math.log10(1 / mse)
                ps.append(p)
                ax.set_xlabel(f"{p:.1f} dB")
        if r > 0 and show_psnr:
            finite = [p for p in ps if math.isfinite(p)]
            means.append(np.mean(finite) if finite else float("nan"))
    sub = (f"mean PSNR over the {n} images shown: SDNN source {means[0]:.2f} dB, DyNN source {means[1]:.2f} dB"
           if show_psnr else "")
    fig.suptitle(title or "Original and adversarial images")
    if sub:
        fig.supxlabel(sub)
    return fig


# ---------------------------------------------------------------- model zoo

@_book_style
def exit_accuracy(zoo_df: pd.DataFrame, *, dataset: str | Sequence[str] | None = None,
                  title: str | None = None) -> Figure:
    """Accuracy (%) of every exit of every model, one panel per dataset.

    Colour = architecture; line style = kind (solid: DyNN by SDN training, dashed: DyNN by
    IC-only training). A CNN has one exit: it is drawn as a star at the position of its DyNN's
    final exit (IC-only's final exit *is* the CNN, so the star sits on the dashed line's end).

    Args:
        zoo_df: :func:`dynn_lib.experiments.model_zoo.model_zoo` rows (``dataset, arch, kind,
            exit_accuracy``: a list of fractions in [0, 1], final exit last).
    """
    _require(zoo_df, ["arch", "kind", "exit_accuracy"], "exit_accuracy")
    df = _filter(zoo_df, dataset=dataset)
    datasets = _ordered(df["dataset"]) if "dataset" in df.columns else [None]
    datasets = datasets or [None]
    archs = _ordered(df["arch"], _ARCH_ORDER)
    colors = _colors(archs, ARCH_COLORS)
    styles = {"sdn": "-", "ic_only": "--"}
    fig, axes = _new_figure(1, len(datasets), width=4.8, height=3.6, sharey=False)
    for ax, ds in zip(axes.flat, datasets):
        sub = df if ds is None else df[df["dataset"] == ds]
        ax.set_title(pretty_dataset(ds) if ds is not None else "")
        if sub.empty:
            _no_data(ax)
            continue
        max_e = int(sub["exit_accuracy"].map(len).max())
        for _, row in sub.iterrows():
            acc = 100 * np.asarray(row["exit_accuracy"], dtype=float)
            c = colors.get(row["arch"], "#333333")
            if len(acc) > 1:
                ax.plot(range(len(acc)), acc, ls=styles.get(row["kind"], ":"), marker="o", markersize=4, color=c)
            else:
                same = sub[(sub["arch"] == row["arch"]) & (sub["exit_accuracy"].map(len) > 1)]
                x = int(same["exit_accuracy"].map(len).max()) - 1 if not same.empty else max_e - 1
                ax.plot([x], acc, marker="*", markersize=13, color=c, ls="", markeredgecolor="black",
                        markeredgewidth=0.6)
        ax.set_xticks(range(max_e))
        ax.set_xlabel("exit (0-based; last = final)")
        ax.set_ylabel("accuracy on the evaluation half (%)")
    handles = [Line2D([], [], color=colors[a], lw=2, label=pretty_arch(a)) for a in archs]
    kinds = _ordered(df["kind"], ("cnn", "sdn", "ic_only"))
    for k in kinds:
        if k == "cnn":
            handles.append(Line2D([], [], marker="*", markersize=11, color="#555555", ls="",
                                  markeredgecolor="black", label=_KIND_NAMES[k]))
        else:
            handles.append(Line2D([], [], color="#555555", ls=styles.get(k, ":"), marker="o", markersize=4,
                                  label=_KIND_NAMES.get(k, k)))
    _legend(fig, handles)
    fig.suptitle(title or "Accuracy at each exit")
    return fig


# ---------------------------------------------------------------- paper vs reproduced

@_book_style
def paper_vs_reproduced(df: pd.DataFrame, *, label: str = "label", paper: str = "paper",
                        reproduced: str = "reproduced", unit: str = "%", title: str | None = None,
                        n: str | None = None, lo: str | None = None, hi: str | None = None) -> Figure:
    """Side-by-side horizontal bars: the paper's number next to the reproduced one, per quantity.

    Args:
        df: one row per quantity: ``label`` (text), ``paper`` and ``reproduced`` (numbers;
            a missing paper value is marked "not reported").
        lo, hi: columns of the reproduced value's 95 % interval (default ``<reproduced>_lo`` /
            ``<reproduced>_hi``), drawn as whiskers where present and finite.
        unit: axis unit, shown in the x label.
        n: a column of sample sizes, appended to each label as "(n = N)".
    """
    _require(df, [label, paper, reproduced], "paper_vs_reproduced")
    rows = len(df)
    fig = Figure(figsize=(6.4, max(2.2, 0.45 * rows + 1.3)), layout="constrained")
    ax = fig.subplots()
    ax.grid(axis="x", color="#dddddd", linewidth=0.7)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    y = np.arange(rows)
    h = 0.38
    pv = pd.to_numeric(df[paper], errors="coerce").to_numpy(dtype=float)
    rv = pd.to_numeric(df[reproduced], errors="coerce").to_numpy(dtype=float)
    b1 = ax.barh(y - h / 2, np.nan_to_num(pv), height=h, color="#999999", label="paper")
    b2 = ax.barh(y + h / 2, np.nan_to_num(rv), height=h, color="#0072B2", label="reproduced")
    lo_c, hi_c = lo or f"{reproduced}_lo", hi or f"{reproduced}_hi"
    nan = np.full(rows, np.nan)
    lv, hv = (pd.to_numeric(df[c], errors="coerce").to_numpy(dtype=float) if c in df.columns else nan
              for c in (lo_c, hi_c))
    ok = np.isfinite(lv) & np.isfinite(hv) & np.isfinite(rv)
    if ok.any():
        ax.errorbar(rv[ok], y[ok] + h / 2, xerr=[np.maximum(rv[ok] - lv[ok], 0), np.maximum(hv[ok] - rv[ok], 0)],
                    fmt="none", ecolor="black", elinewidth=1.0, capsize=3, zorder=3, label="95 % interval")
    ax.bar_label(b1, labels=["not reported" if math.isnan(v) else f"{v:.3g}" for v in pv], padding=2)
    ax.bar_label(b2, labels=["—" if math.isnan(v) else f"{v:.3g}" for v in rv], padding=2)
    names = [str(v) for v in df[label]]
    if n is not None:
        names = [f"{t} (n = {int(k):,})" if pd.notna(k) else t for t, k in zip(names, df[n])]
    ax.set_yticks(y, names)
    ax.invert_yaxis()
    finite = np.concatenate([pv[np.isfinite(pv)], rv[np.isfinite(rv)], hv[np.isfinite(hv)]])
    ax.set_xlim(0, (finite.max() if finite.size else 1) * 1.18 or 1)
    ax.set_xlabel(f"value ({unit})" if unit else "value")
    ax.legend(frameon=False, loc="lower right")
    fig.suptitle(title or "Paper vs reproduced")  # over the whole figure: the labels make the axes narrow
    return fig


# ---------------------------------------------------------------- τ explorer figure

def _fmt_macs(v: float) -> str:
    """Signed MACs, in millions when large (model MACs are raw counts, e.g. 125.75e6)."""
    if v is None or math.isnan(v):
        return "nan"
    return f"{v / 1e6:+.2f} M" if abs(v) >= 1e5 else f"{v:+.3g}"


@_book_style
def exit_shift(dist: pd.DataFrame, *, title: str | None = None) -> Figure:
    """Bars of P(change of exit = k) from :func:`dynn_lib.widgets.exit_shift_at_tau`.

    The summary numbers (n, mean change of exit, mean change of MACs, share raised by more than
    one) come from ``dist.attrs`` and are printed in the panel.
    """
    fig, axes = _new_figure(1, 1, width=5.5, height=3.4)
    ax = axes[0, 0]
    a = dist.attrs
    if dist.empty:
        _no_data(ax)
    else:
        ax.bar(dist["delta_exit"], dist["fraction"], color="#0072B2", width=0.8)
        ax.set_xticks(list(dist["delta_exit"]))
        ax.set_ylim(0, 1.05)
        ax.set_xlabel("change in exit number (adversarial − benign)")
        ax.set_ylabel("probability")
        ax.text(0.98, 0.95,
                f"n = {a.get('n', len(dist))}\nmean Δexit = {a.get('mean_delta_exit', float('nan')):+.2f}\n"
                f"mean ΔMACs = {_fmt_macs(a.get('mean_delta_macs', float('nan')))}\n"
                f"exit +2 or more: {a.get('share_raised_gt1', float('nan')):.0f}%",
                transform=ax.transAxes, ha="right", va="top",
                bbox=dict(boxstyle="round", facecolor="white", edgecolor="#cccccc"))
    tau = a.get("tau")
    ax.set_title(title or ("Change of exit" + (f" at τ = {tau:.3g}" if tau is not None else " at the stored τ")),
                 )
    return fig
