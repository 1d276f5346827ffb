"""Interactive explorers of the stored results, for a live Jupyter kernel.

Each explorer is two parts:

* a **plain callback** (pure, testable: tables and parameters in, a DataFrame out), and
* a thin **widget builder** returning an :class:`ipywidgets.VBox` whose first child is an HTML
  note saying that the controls need a running kernel, then the controls, then an
  :class:`ipywidgets.Output` plot area (always the last child). Moving a control calls the
  callback through an ``observe`` handler and redraws the plot area.

Nothing is re-attacked: every explorer re-reads stored per-image results. The τ explorer
recomputes exits from the stored per-exit confidences and predictions with
:func:`dynn_lib.experiments.common.deployed`.

Each box also keeps, for inspection and tests, ``box.last_result`` (the callback's latest
DataFrame), ``box.calls`` (how many times the handler ran) and ``box.update()`` (re-run it).

==========================  ===================================  ==========================
builder                     callback                             figure
==========================  ===================================  ==========================
:func:`tau_explorer`        :func:`exit_shift_at_tau`            :func:`plots.exit_shift`
:func:`sweep_selector`      :func:`select_sweep`                 transfer bars / ε sweep
:func:`alpha_selector`      :func:`early_attack_at_alpha`        :func:`plots.early_attack_bars`
==========================  ===================================  ==========================

The plot area's content is written straight into the Output widget's ``outputs`` (a PNG and
an HTML table), so it is saved with the notebook's widget state and shows in the static book
as it was when the notebook ran, even though the controls do not respond there.
"""
from __future__ import annotations

import base64
import html
import io
import math
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd

from . import plots
from .experiments.rq1 import SHOWN_COLUMNS
from .widgets_static import NOTE_CLASS

__all__ = ["WIDGET_NOTE", "ALL", "exit_shift_at_tau", "select_sweep", "early_attack_at_alpha", "first_change_at",
           "tau_explorer", "sweep_selector", "alpha_selector", "first_change_explorer"]

ALL = "all"
"""The value of a dropdown's "all" entry. Not ``None``: ipywidgets treats a ``None`` value as *no
selection* (index ``None``), and the static page then shows a blank control."""


def _none_if_all(value: Any) -> Any:
    return None if (isinstance(value, str) and value == ALL) else value

WIDGET_NOTE = ("Interactive: needs a running Python kernel (JupyterLab, Voilà or Binder); "
               "in the static book the controls are shown but do not respond.")
"""The note heading every explorer (styled by the ``dynn-widget-note`` CSS class)."""

TAU_RANGE = (0.5, 0.999)
"""Range of the τ slider (the calibration grid's span, protocol section 5)."""


# ---------------------------------------------------------------- callbacks (pure)

def _eps_rows(df: pd.DataFrame, eps: float | None) -> pd.DataFrame:
    if eps is None or "eps" not in df.columns:
        return df
    return df[np.isclose(df["eps"].astype(float), float(eps), rtol=0, atol=1e-9)]


def _eq(df: pd.DataFrame, col: str, val: Any) -> pd.DataFrame:
    return df if val is None or col not in df.columns else df[df[col] == val]


def _dynn_selection(per_image: pd.DataFrame, dataset, setting, pair, attack, eps) -> pd.DataFrame:
    """Rows of one (dataset, setting, pair, attack, ε) selection (None keeps all), DyNN targets only."""
    sub = per_image
    for col, val in (("dataset", dataset), ("setting", setting), ("pair", pair), ("attack", attack)):
        sub = _eq(sub, col, val)
    sub = _eps_rows(sub, eps)
    if "target_kind" in sub.columns:
        sub = sub[sub["target_kind"] != "cnn"]
    return sub


def exit_shift_at_tau(per_image: pd.DataFrame, tau: float | None, pair: str | None = None,
                      attack: str | None = None, eps: float | None = None, *,
                      dataset: str | None = None, setting: str | None = None) -> pd.DataFrame:
    """Distribution of the change of exit, exit(adv) − exit(benign), recomputed at threshold ``tau``.

    Rows of ``per_image`` (the RQ1-RQ3 per-image table) are filtered by ``dataset``,
    ``setting``, ``pair``, ``attack`` and ``eps`` (``None`` = keep all); only DyNN targets
    (``target_kind != "cnn"``) are kept. Exits and MACs are recomputed from the stored per-exit
    ``conf_*``/``pred_*`` lists by :func:`dynn_lib.experiments.common.deployed` at one global
    ``tau`` (``None`` = each row's stored τ), and the changes by
    :func:`dynn_lib.experiments.rq2.add_deltas`; no attack is re-run.

    Returns:
        One row per observed change ``delta_exit`` (int, sorted) with ``count``, ``fraction``
        (sums to 1) and ``mean_delta_macs`` (mean MACs change of those inputs). ``attrs``
        holds the summary: ``tau``, ``n``, ``mean_delta_exit``, ``mean_delta_macs``,
        ``share_raised_gt1`` (% of inputs whose exit rose by more than one),
        ``mean_exit_clean``, ``mean_exit_adv``. An empty selection gives an empty table with
        ``n = 0`` and NaN summaries.
    """
    if tau is not None and not 0.0 <= float(tau) <= 1.0:
        raise ValueError(f"tau must lie in [0, 1] (a max-softmax confidence), got {tau}")
    sub = _dynn_selection(per_image, dataset, setting, pair, attack, eps)
    cols = ["delta_exit", "count", "fraction", "mean_delta_macs"]
    nan = float("nan")
    if sub.empty:
        out = pd.DataFrame({c: pd.Series(dtype=float) for c in cols})
        out.attrs.update(tau=None if tau is None else float(tau), n=0, mean_delta_exit=nan, mean_delta_macs=nan,
                         share_raised_gt1=nan, mean_exit_clean=nan, mean_exit_adv=nan)
        return out
    from .experiments.rq2 import add_deltas  # lazy: keeps `import dynn_lib.widgets` light

    d = add_deltas(sub, None if tau is None else float(tau))
    delta = d["delta_exit"].astype(int)
    dmacs = d["delta_macs"].astype(float)
    frame = pd.DataFrame({"delta_exit": delta.to_numpy(), "delta_macs": dmacs.to_numpy()})
    g = frame.groupby("delta_exit")
    out = pd.DataFrame({"count": g.size(), "mean_delta_macs": g["delta_macs"].mean()}).reset_index()
    out["fraction"] = out["count"] / len(frame)
    out = out[cols].sort_values("delta_exit").reset_index(drop=True)
    out.attrs.update(tau=None if tau is None else float(tau), n=int(len(frame)),
                     mean_delta_exit=float(delta.mean()), mean_delta_macs=float(dmacs.mean()),
                     share_raised_gt1=float(100.0 * (delta > 1).mean()),
                     mean_exit_clean=float(d["exit_clean"].mean()), mean_exit_adv=float(d["exit_adv"].mean()))
    return out


def _model_rows(df: pd.DataFrame, model: str | None) -> pd.DataFrame:
    """Rows of ``model``: an exact pair, or an architecture on either side of a pair."""
    if model is None:
        return df
    exact = df[df["pair"] == model]
    if not exact.empty:
        return exact
    sides = df["pair"].astype(str).str.replace("->", "→").str.split("→")
    return df[sides.map(lambda s: model in [x.strip() for x in s])]


def select_sweep(summary: pd.DataFrame, eps: float | None = None, attack: str | None = None,
                 model: str | None = None, *, dataset: str | None = None) -> pd.DataFrame:
    """Rows of the stored RQ1 sweep (the summary table) at one ε / attack / model.

    ``None`` keeps every value. ``model`` is a pair (``"resnet56→vgg16"``) or an architecture
    (``"vgg16"``: every pair with it as surrogate or target). ``eps`` is matched with
    tolerance. Rows come back sorted by dataset, direction, pair, attack, ε.
    """
    sub = _eq(summary, "dataset", dataset)
    sub = _eq(sub, "attack", attack)
    sub = _eps_rows(sub, eps)
    sub = _model_rows(sub, model)
    keys = [c for c in ("dataset", "direction", "pair", "attack", "eps") if c in sub.columns]
    return sub.sort_values(keys).reset_index(drop=True)


def first_change_at(per_image: pd.DataFrame, setting: str | None = None, pair: str | None = None,
                    attack: str | None = None, eps: float | None = None, *,
                    dataset: str | None = None) -> pd.DataFrame:
    """RQ3's quantity for one selection: where the label first changes, among inputs whose final label flips.

    Rows of the RQ3 per-image table (``final_flipped``, ``first_changed_exit``) are filtered by
    ``dataset``, ``setting``, ``pair``, ``attack`` and ``eps`` (``None`` keeps all); DyNN targets
    only. Returns one row per first changed exit ``first_changed_exit`` (int, sorted) with
    ``count`` and ``fraction`` (of the flipped inputs; sums to 1). ``attrs``: ``n`` (images
    selected), ``n_flipped``, ``share_changed_exit0`` (%, NaN when nothing flipped).
    """
    need = ["final_flipped", "first_changed_exit"]
    missing = [c for c in need if c not in per_image.columns]
    if missing:
        raise ValueError(f"first_change_at needs columns {missing}; got {list(per_image.columns)}")
    sub = _dynn_selection(per_image, dataset, setting, pair, attack, eps)
    flipped = sub[sub["final_flipped"].astype(bool) & (sub["first_changed_exit"] >= 0)]
    k = flipped["first_changed_exit"].astype(int)
    out = (k.value_counts().rename_axis("first_changed_exit").reset_index(name="count")
           .sort_values("first_changed_exit").reset_index(drop=True))
    out["fraction"] = out["count"] / max(1, len(flipped))
    out.attrs.update(n=int(len(sub)), n_flipped=int(len(flipped)),
                     share_changed_exit0=float(100.0 * (k == 0).mean()) if len(flipped) else float("nan"))
    return out


def early_attack_at_alpha(per_image: pd.DataFrame, alpha: float) -> pd.DataFrame:
    """Early Attack results at one α, per (dataset, arch), from RQ4 per-image rows.

    Returns one row per (dataset, arch) with ``alpha``, ``n`` (images), ``success_rate`` (% of
    all ``n`` images where the final label is kept and every internal exit is flipped; with its
    count ``n_success`` and 95 % Wilson bounds ``success_rate_lo``/``_hi``),
    ``mean_internal_changed`` (mean number of internal exits whose label differs from p, over
    all images), ``mean_l2`` (mean L2 distortion over all images), ``mean_l2_success`` (over
    successful images; NaN when none) and ``paper_success_rate`` (paper Table 2 at this α;
    NaN where it has none).
    """
    need = ["dataset", "arch", "alpha", "success", "internal_changed", "l2"]
    missing = [c for c in need if c not in per_image.columns]
    if missing:
        raise ValueError(f"early_attack_at_alpha needs columns {missing}; got {list(per_image.columns)}")
    sub = per_image[per_image["method"] == "early_attack"] if "method" in per_image.columns else per_image
    sub = sub[np.isclose(sub["alpha"].astype(float), float(alpha), rtol=1e-9, atol=0)]
    rows = []
    for (ds, arch), g in sub.groupby(["dataset", "arch"], sort=False):
        ok = g["success"].astype(bool)
        ref = plots.PAPER_TABLE2.get((plots.dataset_family(ds), arch), {})
        paper = next((v for k, v in ref.items() if math.isclose(k, float(alpha), rel_tol=1e-9)), float("nan"))
        rows.append({"dataset": ds, "arch": arch, "alpha": float(alpha), "n": int(len(g)),
                     "success_rate": float(100.0 * ok.mean()), "n_success": int(ok.sum()),
                     "mean_internal_changed": float(g["internal_changed"].mean()),
                     "mean_l2": float(g["l2"].mean()),
                     "mean_l2_success": float(g.loc[ok, "l2"].mean()) if ok.any() else float("nan"),
                     "paper_success_rate": float(paper)})
    cols = ["dataset", "arch", "alpha", "n", "n_success", "success_rate", "mean_internal_changed", "mean_l2",
            "mean_l2_success", "paper_success_rate"]
    out = pd.DataFrame(rows, columns=cols)
    from .metrics import wilson_columns

    wilson_columns(out, "success_rate", out["n_success"], out["n"])  # inserted right after success_rate
    order = {a: i for i, a in enumerate(("vgg16", "resnet56", "mobilenet"))}
    return out.sort_values(["dataset", "arch"], key=lambda s: s.map(order) if s.name == "arch" else s
                           ).reset_index(drop=True)


# ---------------------------------------------------------------- widget plumbing

def _widgets():
    import ipywidgets

    return ipywidgets


def _note():
    w = _widgets()
    return w.HTML(f'<div class="{NOTE_CLASS}" role="note">{html.escape(WIDGET_NOTE)}</div>')


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _render(out, fig, table: pd.DataFrame | None = None, message: str | None = None,
            labels: dict[str, str] | None = None) -> None:
    """Replace the Output's content with the figure (PNG) and an optional table (HTML; ``labels``:
    headers over :data:`dynn_lib.display.LABELS`).

    The ``outputs`` trait is set directly: this works with or without a front-end capturing
    messages, and the content is saved in the notebook's widget state.
    """
    items = []
    if message:
        items.append({"output_type": "display_data", "metadata": {},
                      "data": {"text/plain": message, "text/html": f"<p>{html.escape(message)}</p>"}})
    if fig is not None:
        items.append({"output_type": "display_data", "metadata": {},
                      "data": {"image/png": _png(fig), "text/plain": f"<Figure {fig.get_figwidth():.1f}x"
                                                                      f"{fig.get_figheight():.1f} in>"}})
    if table is not None:
        from .display import table as show_table  # the pages' column names, units and precision

        # what the selection fixes for every row (its dataset, ε, α, number of images) is said once above it
        shown = show_table(table, csv=False, to_caption=("dataset", "eps_255", "eps", "alpha", "n", "n_images"),
                           labels=labels)
        items.append({"output_type": "display_data", "metadata": {},
                      "data": {"text/plain": shown.text, "text/html": shown.markup}})
    out.outputs = tuple(items)


SWEEP_COLUMNS = tuple(c for c in SHOWN_COLUMNS if c != "dataset")
"""Columns the sweep selector's table shows: those of the RQ1 page's Table RQ1.1
(:data:`dynn_lib.experiments.rq1.SHOWN_COLUMNS`, with their intervals) less ``dataset``, which the
selector's own dataset menu fixes."""


def _box(controls: Sequence[Any], compute: Callable[[], tuple[pd.DataFrame, Any]],
         columns: Sequence[str] | None = None, labels: dict[str, str] | None = None):
    """VBox [note, *controls, Output] whose handler runs ``compute`` on every control change.

    The plot area shows the result table with ``columns`` only (and their ``_lo``/``_hi``
    intervals; default: all), formatted like the page's tables (``labels``: headers of this
    explorer's own columns); ``box.last_result`` keeps every column."""
    w = _widgets()
    out = w.Output(layout=w.Layout(min_height="200px"))
    box = w.VBox([_note(), *controls, out])
    box.last_result = None
    box.last_error = None
    box.calls = 0

    def update(change=None):
        box.calls += 1
        try:
            result, fig = compute()
        except Exception as e:  # shown in the plot area, kept for inspection; not swallowed silently
            box.last_error = e
            _render(out, None, message=f"{type(e).__name__}: {e}")
            return
        box.last_error = None
        box.last_result = result
        shown = result
        if columns is not None and result is not None:
            from .display import with_intervals

            shown = with_intervals(result, columns)
        _render(out, fig, shown, labels=labels)

    for c in controls:
        c.observe(update, names="value")
    box.update = update
    update()
    return box


def _option(label: str, value: Any) -> tuple[str, Any]:
    return (label, value)


def _first_with_rows(df: pd.DataFrame, keys: Sequence[Any], eps: float | None,
                     select: Callable[[pd.DataFrame, Any], pd.DataFrame]) -> Any:
    """The first of ``keys`` whose rows (at ``eps``) are not empty, else the first key: an explorer
    opens on a setting that has data."""
    at = _eps_rows(df, eps)
    for key in keys:
        if not select(at, key).empty:
            return key
    return keys[0]


# ---------------------------------------------------------------- builders


def _first_model_attack(df: pd.DataFrame, model_opts, attacks, default_eps):
    """The first (model option value, attack) with rows at ``default_eps`` (model values are
    ``(dataset, setting, pair)``): where an explorer opens."""
    return _first_with_rows(
        df, [(v, a) for _, v in model_opts for a in attacks], default_eps,
        lambda d, key: _eq(_eq(_eq(_eq(d, "dataset", key[0][0]), "setting", key[0][1]), "pair", key[0][2]),
                           "attack", key[1]))


def _setting_dropdowns(df: pd.DataFrame, model_opts, attacks, eps_values, default_eps, style, layout):
    """(model, attack, ε) dropdowns of an explorer, opened on the first setting with rows."""
    w = _widgets()
    start, start_attack = _first_model_attack(df, model_opts, attacks, default_eps)
    model_dd = w.Dropdown(options=model_opts, value=start, description="model", style=style, layout=layout)
    attack_dd = w.Dropdown(options=[(plots.pretty_attack(a), a) for a in attacks], value=start_attack,
                           description="attack", style=style, layout=layout)
    eps_dd = w.Dropdown(options=[(plots.eps_label(e), e) for e in eps_values] or [(ALL, ALL)],
                        value=default_eps if default_eps is not None else ALL, description="ε", style=style,
                        layout=layout)
    return model_dd, attack_dd, eps_dd

def tau_explorer(per_image: pd.DataFrame, *, tau: float | None = None):
    """τ slider + model/pair, attack and ε dropdowns over the RQ2 per-image table.

    Children: ``[note, FloatSlider τ, Dropdown pair, Dropdown attack, Dropdown ε, Output]``.
    The pair dropdown's value is ``(dataset, setting, pair)``; only DyNN targets are offered.
    The handler calls :func:`exit_shift_at_tau` and draws :func:`plots.exit_shift`.

    Args:
        tau: the slider's start (default: the median stored τ of the DyNN rows, clipped to
            the slider range, else 0.9).
    """
    w = _widgets()
    dy = per_image[per_image["target_kind"] != "cnn"] if "target_kind" in per_image.columns else per_image
    if dy.empty:
        raise ValueError("tau_explorer: no DyNN-target rows (target_kind != 'cnn') in the table")
    if tau is None:
        stored = dy["tau"].astype(float).dropna() if "tau" in dy.columns else pd.Series(dtype=float)
        tau = float(np.clip(stored.median(), *TAU_RANGE)) if len(stored) else 0.9
    keys = dy[[c for c in ("dataset", "setting", "pair") if c in dy.columns]].drop_duplicates()
    pair_opts = []
    for row in keys.itertuples(index=False):
        ds = getattr(row, "dataset", None)
        st = getattr(row, "setting", None)
        pr = getattr(row, "pair")
        label = " · ".join(x for x in (plots.pretty_dataset(ds) if ds is not None else None, st,
                                       plots.pretty_pair(pr)) if x)
        pair_opts.append(_option(label, (ds, st, pr)))
    pair_opts.sort(key=lambda o: o[0])
    attacks = plots._ordered(dy["attack"], ("fgsm", "pgd", "mifgsm"))
    eps_values = sorted(set(float(e) for e in dy["eps"])) if "eps" in dy.columns else []
    default_eps = min(eps_values, key=lambda e: abs(e - plots.DEFAULT_EPS)) if eps_values else None

    style = {"description_width": "70px"}
    layout = w.Layout(width="420px")
    slider = w.FloatSlider(value=tau, min=TAU_RANGE[0], max=TAU_RANGE[1], step=0.001, readout_format=".3f",
                           description="τ", continuous_update=False, style=style, layout=layout)
    pair_dd, attack_dd, eps_dd = _setting_dropdowns(dy, pair_opts, attacks, eps_values, default_eps, style, layout)

    def compute():
        ds, st, pr = pair_dd.value
        res = exit_shift_at_tau(per_image, slider.value, pr, attack_dd.value, _none_if_all(eps_dd.value),
                                dataset=ds, setting=st)
        title = (f"{plots.pretty_pair(pr)}, {plots.pretty_attack(attack_dd.value)}"
                 + (f", ε = {plots.eps_label(eps_dd.value)}" if _none_if_all(eps_dd.value) is not None else "")
                 + f", τ = {slider.value:.3f}")
        return res, plots.exit_shift(res, title=title)

    return _box([slider, pair_dd, attack_dd, eps_dd], compute)


def sweep_selector(summary: pd.DataFrame):
    """ε / attack / model selectors over the stored RQ1 sweep (the summary table).

    Children: ``[note, Dropdown ε, Dropdown attack, Dropdown model, Dropdown dataset, Output]``
    (ε, attack and model offer "all", the value :data:`ALL`, so that the static page shows the
    saved selection; the callback receives ``None`` for it). The handler calls :func:`select_sweep` and
    draws :func:`plots.transfer_success` when one ε is chosen, :func:`plots.eps_sweep` (success
    rate against ε) when all are.
    """
    w = _widgets()
    style = {"description_width": "70px"}
    layout = w.Layout(width="420px")
    eps_values = sorted(set(float(e) for e in summary["eps"]))
    default_eps = min(eps_values, key=lambda e: abs(e - plots.DEFAULT_EPS)) if eps_values else None
    attacks = plots._ordered(summary["attack"], ("fgsm", "pgd", "mifgsm"))
    pairs = plots._ordered(summary["pair"])
    datasets = plots._ordered(summary["dataset"]) if "dataset" in summary.columns else []
    eps_dd = w.Dropdown(options=[(ALL, ALL)] + [(plots.eps_label(e), e) for e in eps_values],
                        value=default_eps if default_eps is not None else ALL, description="ε", style=style,
                        layout=layout)
    attack_dd = w.Dropdown(options=[(ALL, ALL)] + [(plots.pretty_attack(a), a) for a in attacks], value=ALL,
                           description="attack", style=style, layout=layout)
    model_dd = w.Dropdown(options=[(ALL, ALL)] + [(plots.pretty_pair(p), p) for p in pairs], value=ALL,
                          description="model", style=style, layout=layout)
    ds_dd = w.Dropdown(options=[(plots.pretty_dataset(d), d) for d in datasets] or [(ALL, ALL)],
                       value=datasets[0] if datasets else ALL, description="dataset", style=style,
                       layout=layout, disabled=len(datasets) <= 1)

    def compute():
        eps = _none_if_all(eps_dd.value)
        sel = select_sweep(summary, eps, _none_if_all(attack_dd.value), _none_if_all(model_dd.value),
                           dataset=_none_if_all(ds_dd.value))
        if sel.empty:
            fig = None
        elif eps is not None:
            fig = plots.transfer_success(sel, eps=eps)
        else:
            fig = plots.eps_sweep(sel, "success_rate")
        return sel, fig

    return _box([eps_dd, attack_dd, model_dd, ds_dd], compute, columns=SWEEP_COLUMNS)


def alpha_selector(rq4_per_image: pd.DataFrame):
    """α selector over the RQ4 per-image table.

    Children: ``[note, Dropdown α, Output]``. The handler calls :func:`early_attack_at_alpha`
    and draws :func:`plots.early_attack_bars` (black ticks: paper Table 2 at that α).
    """
    w = _widgets()
    ea = rq4_per_image[rq4_per_image["method"] == "early_attack"] if "method" in rq4_per_image.columns \
        else rq4_per_image
    alphas = sorted(set(float(a) for a in ea["alpha"].dropna()))
    if not alphas:
        raise ValueError("alpha_selector: no Early Attack rows with an alpha")
    default = 1.0 if any(math.isclose(a, 1.0) for a in alphas) else alphas[0]
    dd = w.Dropdown(options=[(f"{a:g}", a) for a in alphas], value=default, description="α",
                    style={"description_width": "70px"}, layout=w.Layout(width="300px"))

    def compute():
        res = early_attack_at_alpha(rq4_per_image, dd.value)
        return res, plots.early_attack_bars(res, dd.value)

    return _box([dd], compute, labels={"success_rate": "Early Attack success % (all images)",
                                       "n_success": "successes"})


def first_change_explorer(per_image_rq3: pd.DataFrame):
    """Setting / model / attack / ε selectors over the RQ3 per-image table (RQ3's own quantity).

    Children: ``[note, Dropdown model, Dropdown attack, Dropdown ε, Output]``. The model
    dropdown's value is ``(dataset, setting, pair)`` (DyNN targets only). The handler calls
    :func:`first_change_at` and draws :func:`plots.first_changed_exit_density` for the
    selection; the explorer opens on the first selection with a flipped input.
    """
    w = _widgets()
    df = per_image_rq3[per_image_rq3["target_kind"] != "cnn"] if "target_kind" in per_image_rq3.columns \
        else per_image_rq3
    if df.empty:
        raise ValueError("first_change_explorer: no DyNN-target rows (target_kind != 'cnn') in the table")
    keys = df[[c for c in ("dataset", "setting", "pair") if c in df.columns]].drop_duplicates()
    opts = []
    for row in keys.itertuples(index=False):
        ds, st, pr = getattr(row, "dataset", None), getattr(row, "setting", None), getattr(row, "pair")
        label = " · ".join(x for x in (st, plots.pretty_pair(pr)) if x)
        opts.append(_option(label, (ds, st, pr)))
    opts.sort(key=lambda o: o[0])
    attacks = plots._ordered(df["attack"], ("fgsm", "pgd", "mifgsm"))
    eps_values = sorted(set(float(e) for e in df["eps"])) if "eps" in df.columns else []
    default_eps = min(eps_values, key=lambda e: abs(e - plots.DEFAULT_EPS)) if eps_values else None
    flipped = df[df["final_flipped"].astype(bool)]
    style = {"description_width": "70px"}
    layout = w.Layout(width="420px")
    model_dd, attack_dd, eps_dd = _setting_dropdowns(flipped, opts, attacks, eps_values, default_eps, style, layout)

    def compute():
        ds, st, pr = model_dd.value
        eps = _none_if_all(eps_dd.value)
        res = first_change_at(per_image_rq3, st, pr, attack_dd.value, eps, dataset=ds)
        sub = _eps_rows(_eq(_eq(_eq(per_image_rq3, "dataset", ds), "pair", pr), "attack", attack_dd.value), eps)
        sub = _eq(sub, "setting", st)
        fig = plots.first_changed_exit_density(sub, None, title=f"{st}: {plots.pretty_pair(pr)}, "
                                               f"{plots.pretty_attack(attack_dd.value)}"
                                               + (f", ε = {plots.eps_label(eps)}" if eps is not None else ""))
        return res, fig

    return _box([model_dd, attack_dd, eps_dd], compute)
