"""Figures (dynn_lib.plots) and interactive explorers (dynn_lib.widgets) on small hand-made tables."""
from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from dynn_lib import metrics, plots, widgets  # noqa: E402


def _deployed_available():
    """Skip when ``dynn_lib.experiments.common.deployed`` / ``rq2.add_deltas`` are missing."""
    try:
        from dynn_lib.experiments.common import deployed  # noqa: F401
        from dynn_lib.experiments.rq2 import add_deltas  # noqa: F401
    except ImportError as e:
        pytest.skip(f"dynn_lib.experiments.common.deployed not available: {e}")


# ---------------------------------------------------------------- hand-made tables

E8 = 8 / 255
E4 = 4 / 255


def rq1_summary() -> pd.DataFrame:
    rows = []
    for direction, pairs in (("S2D", ["resnet56→vgg16", "mobilenet→mobilenet", "mobilenet→resnet56"]),
                             ("D2S", ["vgg16→resnet56", "mobilenet→mobilenet", "resnet56→mobilenet"])):
        for i, pair in enumerate(pairs):
            for j, attack in enumerate(["fgsm", "pgd", "mifgsm"]):
                for eps in (E4, E8):
                    sr = 20 + 10 * i + 5 * j + (15 if direction == "D2S" else 0) + (10 if eps == E8 else 0)
                    rows.append(dict(dataset="cifar10", direction=direction, pair=pair, attack=attack, eps=eps,
                                     success_rate=float(sr), success_rate_all=float(sr + 3), n=200, n_correct=150,
                                     seconds_per_example=0.01 * (i + 1)))
    return pd.DataFrame(rows)


def rq1_exit_used() -> pd.DataFrame:
    rows = []
    for pair in ["vgg16→resnet56", "mobilenet→mobilenet", "resnet56→mobilenet"]:
        n_exits = 6 if pair.startswith("mobilenet") else 7
        for attack, w in (("fgsm", np.linspace(1, 2, n_exits)), ("pgd", np.linspace(3, 0.5, n_exits))):
            w = w / w.sum()
            for e in range(n_exits):
                rows.append(dict(dataset="cifar10", pair=pair, attack=attack, eps=E8, exit=e, fraction=float(w[e])))
    return pd.DataFrame(rows)


def _row(image, conf_clean, conf_adv, *, pair="vgg16", setting="white-box", attack="fgsm", eps=E8,
         target_kind="ic_only", tau=0.9, pred_clean=None, pred_adv=None, macs=None):
    E = len(conf_clean)
    pred_clean = pred_clean if pred_clean is not None else [3] * E
    pred_adv = pred_adv if pred_adv is not None else [3] * E
    macs = macs if macs is not None else [10.0 * (i + 1) for i in range(E)]
    direction = "white-box" if setting == "white-box" else "S2D"
    s_arch, _, t_arch = pair.partition("→")
    return dict(dataset="cifar10", setting=setting, direction=direction, pair=pair,
                surrogate_arch=s_arch, surrogate_kind="cnn", target_arch=t_arch or s_arch, target_kind=target_kind,
                attack=attack, eps=eps, eps_255=eps * 255, exit_loss="final", image=image, label=3,
                tau=tau if target_kind != "cnn" else float("nan"), surrogate_exit=0, gen_seconds=0.01,
                psnr=30.0, linf=eps, conf_clean=list(conf_clean), pred_clean=list(pred_clean),
                conf_adv=list(conf_adv), pred_adv=list(pred_adv), exit_macs=list(macs), seed=0)


def per_image_rq2() -> pd.DataFrame:
    """Three DyNN rows with known exits at τ = 0.75 (deltas 2, 1, 0) and one CNN row."""
    rows = [
        _row(0, [0.8, 0.9, 0.95], [0.6, 0.7, 0.9]),   # τ=.75: clean 0, adv 2 -> +2 (MACs +20)
        _row(1, [0.5, 0.85, 0.9], [0.4, 0.5, 0.6]),   # τ=.75: clean 1, adv 2 -> +1 (MACs +10)
        _row(2, [0.9, 0.9, 0.9], [0.95, 0.9, 0.9]),   # τ=.75: clean 0, adv 0 ->  0
        _row(3, [0.99], [0.4], pair="vgg16→resnet56", setting="black-box", target_kind="cnn"),
    ]
    return pd.DataFrame(rows)


def rq2_with_delta() -> pd.DataFrame:
    """Per-image RQ2-like rows with ``delta_exit`` already computed (no ``deployed`` needed)."""
    rng = np.random.default_rng(0)
    rows = []
    for pair in ("vgg16", "resnet56"):
        for attack in ("fgsm", "pgd"):
            for i in range(40):
                r = _row(i, [0.9] * 7, [0.9] * 7, pair=pair, attack=attack)
                r["delta_exit"] = int(rng.integers(-1, 4))
                r["delta_macs"] = 1e6 * r["delta_exit"]
                rows.append(r)
    return pd.DataFrame(rows)


def rq3_rows() -> pd.DataFrame:
    df = rq2_with_delta()
    rng = np.random.default_rng(1)
    df["final_flipped"] = rng.random(len(df)) < 0.7
    df["first_changed_exit"] = np.where(df["final_flipped"], rng.integers(0, 7, len(df)), -1)
    return df


def rq4_per_image() -> pd.DataFrame:
    rows = []
    for arch, rate in (("vgg16", {0.1: 0.0, 1.0: 0.5}), ("resnet56", {0.1: 0.25, 1.0: 1.0})):
        for alpha, p in rate.items():
            for i in range(4):
                ok = i < int(p * 4)
                rows.append(dict(dataset="cifar10", arch=arch, kind="sdn", method="early_attack", alpha=alpha,
                                 image=i, label=1, p=1, success=ok, iters_used=10, l2=1.0 + i, linf=0.1,
                                 psnr=30.0, final_pred_adv=1, pred_adv=[0, 2, 1], internal_changed=2 if ok else i % 2,
                                 seconds=0.1, seed=0))
        for method in ("pgd", "fgsm"):
            rows.append(dict(dataset="cifar10", arch=arch, kind="sdn", method=method, alpha=float("nan"), image=0,
                             label=1, p=1, success=False, iters_used=1, l2=0.5, linf=E8, psnr=35.0,
                             final_pred_adv=2, pred_adv=[0, 2, 2], internal_changed=2, seconds=0.01, seed=0))
    return pd.DataFrame(rows)


def table2_long() -> pd.DataFrame:
    rows = []
    for ds in ("cifar10", "cifar100"):
        for arch in ("vgg16", "resnet56", "mobilenet"):
            for k, a in enumerate((0.001, 0.01, 0.1, 1, 20, 40)):
                rate = float(10 * k + (5 if ds == "cifar100" else 0))
                rows.append(dict(dataset=ds, arch=arch, alpha=a, success_rate=rate))
    return pd.DataFrame(rows)


def zoo() -> pd.DataFrame:
    rows = []
    for arch, E in (("vgg16", 7), ("resnet56", 7), ("mobilenet", 6)):
        rows.append(dict(dataset="cifar10", arch=arch, kind="cnn", exits=1, exit_accuracy=[0.92]))
        rows.append(dict(dataset="cifar10", arch=arch, kind="sdn", exits=E,
                         exit_accuracy=list(np.linspace(0.5, 0.91, E))))
        rows.append(dict(dataset="cifar10", arch=arch, kind="ic_only", exits=E,
                         exit_accuracy=list(np.linspace(0.4, 0.92, E))))
    return pd.DataFrame(rows)


# ---------------------------------------------------------------- helpers

@pytest.fixture(autouse=True)
def no_pyplot_leak():
    before = set(plt.get_fignums())
    yield
    assert set(plt.get_fignums()) == before, "a plot function left a pyplot figure open"


def _panel_text(ax) -> str:
    """The panel's title and the notes written inside it."""
    return "\n".join([ax.get_title(), *(t.get_text() for t in ax.texts)])


def check_fig(fig, n_axes, tmp_path, name):
    assert isinstance(fig, Figure)
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert len(visible) == n_axes, [ax.get_title() for ax in visible]
    for ax in visible:
        assert ax.patches or ax.lines or ax.images or ax.collections, f"empty axes: {ax.get_title()!r}"
    assert fig._suptitle is not None or any(ax.get_title() for ax in visible)
    path = tmp_path / f"{name}.png"
    fig.savefig(path)
    assert path.stat().st_size > 1000
    return path


# ---------------------------------------------------------------- plots

def test_transfer_success(tmp_path):
    s = rq1_summary()
    fig = plots.transfer_success(s)
    check_fig(fig, 2, tmp_path, "transfer")
    assert "8/255" in fig._suptitle.get_text()  # default ε = closest to 8/255
    ax_s2d, ax_d2s = fig.axes[:2]
    assert "S2D" in ax_s2d.get_title() and "D2S" in ax_d2s.get_title()
    # protocol order; the D2S pair at position i is the reverse of the S2D pair at position i
    assert [t.get_text() for t in ax_s2d.get_xticklabels()][0] == "ResNet-56\n→ VGG-16"
    assert [t.get_text() for t in ax_d2s.get_xticklabels()][0] == "VGG-16\n→ ResNet-56"
    assert len(ax_s2d.patches) == 9  # 3 pairs × 3 attacks
    heights = sorted(p.get_height() for p in ax_s2d.patches)
    expected = sorted(s.query("direction == 'S2D' and eps == @E8")["success_rate"])
    assert heights == pytest.approx(expected)
    # eps filter and an optional reference drawn as tick marks
    ref = s[s["eps"] == E4].assign(success_rate=50.0)
    fig2 = plots.transfer_success(s, eps=E4, attacks=["fgsm", "pgd"], paper=ref)
    assert len(fig2.axes[0].patches) == 6 and len(fig2.axes[0].lines) == 6
    with pytest.raises(ValueError, match="no rows at eps"):
        plots.transfer_success(s, eps=16 / 255)


def test_transfer_success_two_datasets(tmp_path):
    s = pd.concat([rq1_summary(), rq1_summary().assign(dataset="cifar100")])
    check_fig(plots.transfer_success(s), 4, tmp_path, "transfer2")


def test_exit_used_density(tmp_path):
    fig = plots.exit_used_density(rq1_exit_used())
    check_fig(fig, 3, tmp_path, "exit_used")
    for ax in fig.axes:
        # per attack the bar heights sum to 1
        by_color = {}
        for p in ax.patches:
            by_color.setdefault(p.get_facecolor(), 0.0)
            by_color[p.get_facecolor()] += p.get_height()
        assert all(v == pytest.approx(1.0) for v in by_color.values())
        assert "exits 0-2" in _panel_text(ax)


def test_exit_used_mean_loss_bar(tmp_path):
    eu = rq1_exit_used()
    extra = eu[(eu["pair"] == "vgg16→resnet56") & (eu["exit"] == 0)].assign(exit=-1, fraction=0.0)
    fig = plots.exit_used_density(pd.concat([eu, extra]))
    ax = next(a for a in fig.axes if "VGG-16 → ResNet-56" in a.get_title())
    assert [t.get_text() for t in ax.get_xticklabels()][0] == "all\n(mean)"


def test_plots_on_library_tables(tmp_path):
    """The real RQ2 / RQ3 / RQ4 helpers feed the figures (the schema the book uses)."""
    _deployed_available()
    from dynn_lib.experiments import rq2, rq3, rq4

    raw = per_image_rq2()
    check_fig(plots.exit_change_density(rq2.add_deltas(raw), "white-box"), 1, tmp_path, "lib_rq2")
    flips = pd.DataFrame([_row(0, [0.9] * 3, [0.9] * 3, pred_adv=[5, 3, 5]),   # flipped, first change at exit 0
                          _row(1, [0.9] * 3, [0.9] * 3, pred_adv=[3, 5, 5]),   # flipped, first change at exit 1
                          _row(2, [0.9] * 3, [0.9] * 3, pred_adv=[5, 5, 3])])  # final label kept: not counted
    fig = plots.first_changed_exit_density(rq3.add_first_changed(flips), "white-box")
    check_fig(fig, 1, tmp_path, "lib_rq3")
    assert sorted(p.get_height() for p in fig.axes[0].patches) == pytest.approx([0.0, 0.5, 0.5])
    assert "FGSM 50% of 2" in _panel_text(fig.axes[0])
    summ = rq2.summarise(raw)
    check_fig(plots.eps_sweep(summ, col=None), 2, tmp_path, "lib_rq2_eps")  # share_raised_gt1, mean_delta_exit
    wide = rq4.table2(rq4_per_image())
    fig = plots.early_attack_alpha(wide)
    check_fig(fig, 1, tmp_path, "lib_table2")
    resnet = [ln for ln in fig.axes[0].lines
              if ln.get_color() == plots.ARCH_COLORS["resnet56"] and ln.get_linestyle() == "-"][0]
    assert list(resnet.get_xdata()) == [0.1, 1.0] and list(resnet.get_ydata()) == pytest.approx([25.0, 100.0])


def test_exit_change_density(tmp_path):
    df = rq2_with_delta()
    fig = plots.exit_change_density(df, "white-box")
    check_fig(fig, 2, tmp_path, "exit_change")
    ax = fig.axes[0]
    assert "exit +2 or more" in _panel_text(ax)
    # discrete bars: probabilities, x ticks are the integer changes present
    ticks = [t.get_text() for t in ax.get_xticklabels()]
    assert ticks == [str(k) for k in range(int(df["delta_exit"].min()), int(df["delta_exit"].max()) + 1)]
    sub = df[(df["pair"] == "resnet56") & (df["attack"] == "fgsm")]
    share = 100 * (sub["delta_exit"] > 1).mean()
    title = next(_panel_text(a) for a in fig.axes if "ResNet-56" in a.get_title())
    assert f"FGSM {share:.0f}%" in title
    with pytest.raises(ValueError, match="setting"):
        plots.exit_change_density(df, "black-box")


def test_first_changed_exit_density(tmp_path):
    df = rq3_rows()
    fig = plots.first_changed_exit_density(df, "white-box")
    check_fig(fig, 2, tmp_path, "first_changed")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == [str(k) for k in range(7)]  # all 7 exits shown
    assert "at exit 0" in _panel_text(ax)
    # a 6-exit target gets ticks 0..5 in its own panel
    mob = df[df["pair"] == "vgg16"].assign(pair="mobilenet")
    mob["pred_clean"] = [[3] * 6] * len(mob)
    mob["first_changed_exit"] = mob["first_changed_exit"].clip(upper=4)
    fig2 = plots.first_changed_exit_density(pd.concat([df, mob]), "white-box")
    check_fig(fig2, 3, tmp_path, "first_changed3")
    ticks = {a.get_title().split("\n")[0]: [t.get_text() for t in a.get_xticklabels()] for a in fig2.axes}
    assert ticks["MobileNet"] == [str(k) for k in range(6)] and ticks["VGG-16"] == [str(k) for k in range(7)]
    empty = plots.exit_change_density(df[df["attack"] == "none"], "white-box")
    assert isinstance(empty, Figure)


def test_early_attack_alpha(tmp_path):
    fig = plots.early_attack_alpha(table2_long())
    check_fig(fig, 2, tmp_path, "alpha")
    ax = fig.axes[0]
    assert ax.get_xscale() == "log"
    assert len(ax.lines) == 6  # 3 reproduced + 3 paper (dashed)
    dashed = [ln for ln in ax.lines if ln.get_linestyle() == "--"]
    assert len(dashed) == 3
    vgg_paper = [ln for ln in dashed if list(ln.get_ydata()) == [0, 0, 0, 35, 10, 4]]
    assert vgg_paper, "paper Table 2 CIFAR-10 VGG row drawn"
    fig2 = plots.early_attack_alpha(table2_long(), paper=False)
    assert len(fig2.axes[0].lines) == 3
    # per-image RQ4 rows are aggregated
    fig3 = plots.early_attack_alpha(rq4_per_image(), paper=False)
    check_fig(fig3, 1, tmp_path, "alpha_per_image")
    resnet = [ln for ln in fig3.axes[0].lines if ln.get_color() == plots.ARCH_COLORS["resnet56"]][0]
    assert list(resnet.get_ydata()) == pytest.approx([25.0, 100.0])


def test_eps_sweep(tmp_path):
    fig = plots.eps_sweep(rq1_summary(), "success_rate")
    check_fig(fig, 2, tmp_path, "eps_sweep")
    assert len(fig.axes[0].lines) == 9  # 3 pairs × 3 attacks
    fig2 = plots.eps_sweep(rq1_summary(), ["success_rate", "seconds_per_example"])
    check_fig(fig2, 4, tmp_path, "eps_sweep2")
    fig3 = plots.eps_sweep(rq2_with_delta(), ["delta_exit"], col=None)
    check_fig(fig3, 1, tmp_path, "eps_sweep3")


def test_image_grid(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.random((4, 3, 8, 8))
    a = np.clip(x + 0.03, 0, 1)
    b = np.clip(x - 0.03, 0, 1)
    fig = plots.image_grid(x, a, b, titles=["cat", "dog", "ship", "frog"])
    check_fig(fig, 12, tmp_path, "grid")
    assert fig.axes[0].get_title() == "cat"
    assert fig.axes[4].get_xlabel().endswith("dB")
    import torch

    fig2 = plots.image_grid(torch.tensor(x).permute(0, 2, 3, 1), torch.tensor(a).permute(0, 2, 3, 1),
                            torch.tensor(b).permute(0, 2, 3, 1))
    assert len(fig2.axes) == 12
    with pytest.raises(ValueError, match="differ in shape"):
        plots.image_grid(x, a[:2], b)


def test_exit_accuracy(tmp_path):
    fig = plots.exit_accuracy(zoo())
    check_fig(fig, 1, tmp_path, "zoo")
    ax = fig.axes[0]
    stars = [ln for ln in ax.lines if ln.get_marker() == "*"]
    assert len(stars) == 3
    mob = [ln for ln in stars if ln.get_color() == plots.ARCH_COLORS["mobilenet"]][0]
    assert list(mob.get_xdata()) == [5]  # at MobileNet's final exit (6 exits)


def test_paper_vs_reproduced(tmp_path):
    df = pd.DataFrame({"label": ["C10 VGG", "C10 ResNet", "ours only"], "paper": [35, 81, np.nan],
                       "reproduced": [30.0, 70.0, 12.0]})
    fig = plots.paper_vs_reproduced(df)
    check_fig(fig, 1, tmp_path, "pvr")
    assert len(fig.axes[0].patches) == 6
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert "not reported" in texts
    # intervals as whiskers (only where finite), sample sizes in the labels
    fig = plots.paper_vs_reproduced(df.assign(n=[100, 100, 40], r_lo=[20.0, np.nan, 5.0], r_hi=[40.0, np.nan, 99.0]),
                                    reproduced="reproduced", n="n", lo="r_lo", hi="r_hi")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["C10 VGG (n = 100)", "C10 ResNet (n = 100)",
                                                           "ours only (n = 40)"]
    whiskers = [c for c in ax.collections if c.get_segments()]
    assert len(whiskers) == 1 and len(whiskers[0].get_segments()) == 2
    assert ax.get_xlim()[1] >= 99.0


def test_exit_shift_and_bars(tmp_path):
    dist = pd.DataFrame({"delta_exit": [0, 1, 2], "count": [1, 1, 1], "fraction": [1 / 3] * 3,
                         "mean_delta_macs": [0, 10, 20]})
    dist.attrs.update(tau=0.75, n=3, mean_delta_exit=1.0, mean_delta_macs=10.0, share_raised_gt1=33.3)
    check_fig(plots.exit_shift(dist), 1, tmp_path, "shift")
    res = widgets.early_attack_at_alpha(rq4_per_image(), 1.0)
    check_fig(plots.early_attack_bars(res, 1.0), 1, tmp_path, "ea_bars")


def test_labels():
    assert plots.pretty_pair("resnet56→vgg16") == "ResNet-56 → VGG-16"
    assert plots.pretty_pair("mobilenet") == "MobileNet"
    assert plots.eps_label(8 / 255) == "8/255"
    assert plots.eps_label(7.5 / 255) == "7.5/255"


# ---------------------------------------------------------------- widget callbacks

def test_exit_shift_at_tau_numbers():
    _deployed_available()
    df = per_image_rq2()
    top = widgets.exit_shift_at_tau(df, 1.0, "vgg16", "fgsm", E8)
    # τ = 1.0: no internal exit fires (no confidence reaches 1), every input leaves at the final exit
    assert list(top["delta_exit"]) == [0] and top["fraction"].iloc[0] == 1.0
    assert top.attrs["n"] == 3  # the CNN row (no exit to change) is left out
    assert top.attrs["mean_delta_macs"] == 0.0 and top.attrs["mean_exit_clean"] == 2.0
    mid = widgets.exit_shift_at_tau(df, 0.75, "vgg16", "fgsm", E8)
    assert list(mid["delta_exit"]) == [0, 1, 2]
    assert list(mid["count"]) == [1, 1, 1]
    assert mid["fraction"].sum() == pytest.approx(1.0)
    assert list(mid["mean_delta_macs"]) == pytest.approx([0.0, 10.0, 20.0])
    assert mid.attrs["mean_delta_exit"] == pytest.approx(1.0)
    assert mid.attrs["mean_delta_macs"] == pytest.approx(10.0)
    assert mid.attrs["share_raised_gt1"] == pytest.approx(100 / 3)
    low = widgets.exit_shift_at_tau(df, 0.55, "vgg16", "fgsm", E8)  # clean exits 0,1,0; adv 0,2,0
    assert dict(zip(low["delta_exit"], low["count"])) == {0: 2, 1: 1}
    empty = widgets.exit_shift_at_tau(df, 0.75, "vgg16", "pgd", E8)
    assert empty.empty and empty.attrs["n"] == 0 and math.isnan(empty.attrs["mean_delta_exit"])
    with pytest.raises(ValueError, match="tau"):
        widgets.exit_shift_at_tau(df, 1.5, "vgg16", "fgsm", E8)


def test_exit_change_density_recomputed_at_tau(tmp_path):
    _deployed_available()
    fig = plots.exit_change_density(per_image_rq2(), "white-box", tau=0.75)
    check_fig(fig, 1, tmp_path, "exit_change_tau")
    assert "τ = 0.75" in fig._suptitle.get_text()
    assert sorted(p.get_height() for p in fig.axes[0].patches) == pytest.approx([1 / 3] * 3)


def test_select_sweep():
    s = rq1_summary()
    sel = widgets.select_sweep(s, E8, "pgd", "resnet56→vgg16")
    assert len(sel) == 1 and sel["success_rate"].iloc[0] == 20 + 0 + 5 + 10
    assert len(widgets.select_sweep(s)) == len(s)
    by_arch = widgets.select_sweep(s, E8, "fgsm", "vgg16")  # vgg16 as surrogate or target
    assert set(by_arch["pair"]) == {"resnet56→vgg16", "vgg16→resnet56"}
    assert len(widgets.select_sweep(s, E4 + 1e-12, None, None)) == len(s) // 2  # ε matched with tolerance


def test_early_attack_at_alpha():
    res = widgets.early_attack_at_alpha(rq4_per_image(), 1.0)
    assert list(res["arch"]) == ["vgg16", "resnet56"]
    r = res.set_index("arch")
    assert r.loc["vgg16", "success_rate"] == 50.0 and r.loc["resnet56", "success_rate"] == 100.0
    assert r.loc["vgg16", "n"] == 4  # baselines (pgd, fgsm) are not counted
    assert r.loc["vgg16", "mean_internal_changed"] == pytest.approx((2 + 2 + 0 + 1) / 4)
    assert r.loc["vgg16", "mean_l2"] == pytest.approx(2.5)
    assert r.loc["vgg16", "mean_l2_success"] == pytest.approx(1.5)
    assert r.loc["vgg16", "paper_success_rate"] == 35 and r.loc["resnet56", "paper_success_rate"] == 81
    # each rate carries its count and Wilson interval over all its images (2 of 4; 4 of 4)
    assert (r.loc["vgg16", "n_success"], r.loc["resnet56", "n_success"]) == (2, 4)
    assert (r.loc["vgg16", "success_rate_lo"], r.loc["vgg16", "success_rate_hi"]) == \
        pytest.approx(metrics.wilson_interval(2, 4))
    assert r.loc["resnet56", "success_rate_hi"] == 100.0 and r.loc["resnet56", "success_rate_lo"] < 100.0
    res01 = widgets.early_attack_at_alpha(rq4_per_image(), 0.1)
    assert res01.set_index("arch").loc["resnet56", "success_rate"] == 25.0
    assert widgets.early_attack_at_alpha(rq4_per_image(), 20.0).empty


# ---------------------------------------------------------------- widget builders (handler path)

def _note_ok(box):
    import ipywidgets

    assert isinstance(box, ipywidgets.VBox)
    note = box.children[0]
    assert isinstance(note, ipywidgets.HTML)
    assert "needs a running Python kernel" in note.value and "do not respond" in note.value
    assert isinstance(box.children[-1], ipywidgets.Output)


def _has_png(box):
    return any("image/png" in o.get("data", {}) for o in box.children[-1].outputs)


def test_tau_explorer_handler():
    _deployed_available()
    box = widgets.tau_explorer(per_image_rq2(), tau=0.999)
    _note_ok(box)
    assert box.last_error is None, box.last_error
    assert box.calls == 1 and _has_png(box)
    assert list(box.last_result["delta_exit"]) == [0]  # τ = 0.999: everything at the final exit
    slider, pair_dd, attack_dd, eps_dd = box.children[1:5]
    assert pair_dd.value == ("cifar10", "white-box", "vgg16")  # the CNN-target pair is not offered
    assert len(pair_dd.options) == 1
    assert eps_dd.value == pytest.approx(E8)
    slider.value = 0.75
    assert box.calls == 2
    assert list(box.last_result["delta_exit"]) == [0, 1, 2]
    assert _has_png(box)


def test_sweep_selector_handler():
    s = rq1_summary()
    box = widgets.sweep_selector(s)
    _note_ok(box)
    eps_dd, attack_dd, model_dd, ds_dd = box.children[1:5]
    assert box.last_error is None, box.last_error
    assert eps_dd.value == pytest.approx(E8) and len(box.last_result) == len(s) // 2
    attack_dd.value = "pgd"
    assert box.calls == 2 and set(box.last_result["attack"]) == {"pgd"}
    model_dd.value = "resnet56→vgg16"
    assert len(box.last_result) == 1 and _has_png(box)
    eps_dd.value = None  # all ε -> the ε-sweep figure
    assert len(box.last_result) == 2 and _has_png(box)
    attack_dd.value = None
    model_dd.value = None
    assert box.calls == 6 and len(box.last_result) == len(s)


def test_alpha_selector_handler():
    box = widgets.alpha_selector(rq4_per_image())
    _note_ok(box)
    dd = box.children[1]
    assert dd.value == 1.0 and box.last_error is None
    assert box.last_result.set_index("arch").loc["resnet56", "success_rate"] == 100.0
    dd.value = 0.1
    assert box.calls == 2
    assert box.last_result.set_index("arch").loc["resnet56", "success_rate"] == 25.0
    assert _has_png(box)
    tables = [o for o in box.children[-1].outputs if "text/html" in o.get("data", {})]
    assert tables and "ResNet-56" in tables[-1]["data"]["text/html"]  # display names, as on the page


# ---------------------------------------------------------------- the book's legibility rules (issue 11)

def _all_figures():
    s = rq1_summary()
    grid = np.random.default_rng(0).random((6, 3, 8, 8))
    return {
        "transfer": plots.transfer_success(s),
        "transfer2": plots.transfer_success(pd.concat([s, s.assign(dataset="cifar100")])),
        "exit_used": plots.exit_used_density(rq1_exit_used()),
        "exit_change": plots.exit_change_density(rq2_with_delta(), "white-box"),
        "first_changed": plots.first_changed_exit_density(rq3_rows(), "white-box"),
        "alpha": plots.early_attack_alpha(table2_long()),
        "sweep": plots.eps_sweep(s, ["success_rate", "success_rate_all"]),
        "grid": plots.image_grid(grid, grid, grid, titles=["automobile"] * 6),
        "zoo": plots.exit_accuracy(zoo()),
        "paper": plots.paper_vs_reproduced(pd.DataFrame({"label": ["a", "b"], "paper": [1.0, 2.0],
                                                         "reproduced": [1.5, float("nan")]})),
    }


def test_figures_fit_the_column_with_body_size_text():
    """Every figure is at most the column wide (shown 1:1, never scaled down) and no text is smaller than
    the body text (12 pt at 100 px/inch = 16.7 px)."""
    from matplotlib.text import Text

    for name, fig in _all_figures().items():
        assert fig.get_figwidth() <= plots.COLUMN_WIDTH_IN + 1e-9, (name, fig.get_figwidth())
        fig.canvas.draw()  # lays out legends, tick labels
        small = sorted({(t.get_text(), t.get_fontsize()) for t in fig.findobj(Text)
                        if t.get_visible() and t.get_text().strip() and t.get_fontsize() < plots.MIN_FONT_PT})
        assert not small, f"{name}: text below {plots.MIN_FONT_PT} pt: {small[:5]}"


def test_transfer_success_draws_intervals_when_the_table_has_them():
    from matplotlib.collections import LineCollection

    s = rq1_summary()
    plain = plots.transfer_success(s)
    assert not any(isinstance(c, LineCollection) for ax in plain.axes for c in ax.collections)
    with_ci = plots.transfer_success(s.assign(success_rate_lo=s["success_rate"] - 5, success_rate_hi=s["success_rate"] + 7))
    bars = [c for c in with_ci.axes[0].collections if isinstance(c, LineCollection)]
    assert bars, "no error bars drawn"
    segs = np.concatenate([b.get_segments() for b in bars])
    spans = sorted({round(float(abs(seg[1][1] - seg[0][1])), 6) for seg in segs})
    assert spans == [12.0]  # lo = value - 5, hi = value + 7: every bar spans 12 points
    labels = [t.get_text() for t in with_ci.legends[0].get_texts()]
    assert "95 % interval" in labels


def _dropdowns(box):
    import ipywidgets

    return [c for c in box.children if isinstance(c, ipywidgets.Dropdown)]


def test_every_dropdown_has_a_selection_to_save():
    """A Dropdown whose value is None has index None: the static page shows it blank (issue 11.6)."""
    boxes = [widgets.sweep_selector(rq1_summary()), widgets.alpha_selector(rq4_per_image()),
             widgets.first_change_explorer(rq3_rows())]
    try:
        from dynn_lib.experiments.common import deployed  # noqa: F401
        boxes.append(widgets.tau_explorer(per_image_rq2()))
    except ImportError:
        pass
    for box in boxes:
        for dd in _dropdowns(box):
            assert dd.index is not None and dd.label, (dd.description, dd.options)
    sweep = boxes[0]
    eps_dd, attack_dd, model_dd, _ = sweep.children[1:5]
    assert attack_dd.label == "all" and model_dd.label == "all"
    eps_dd.value = widgets.ALL  # "all" still means every ε
    assert len(sweep.last_result) == len(rq1_summary())


def test_widget_tables_use_the_page_column_names():
    box = widgets.sweep_selector(rq1_summary())
    html = next(o["data"]["text/html"] for o in box.children[-1].outputs if "text/html" in o.get("data", {}))
    assert "success % (target-correct)" in html and "ms / example" in html and "success_rate" not in html


def test_first_change_explorer_shows_rq3_quantity_and_opens_on_data():
    df = rq3_rows()
    # the alphabetically first setting has no flipped input: the explorer must skip it
    none_flipped = df[df["pair"] == "resnet56"].assign(pair="mobilenet", final_flipped=False, first_changed_exit=-1)
    box = widgets.first_change_explorer(pd.concat([df, none_flipped]))
    assert box.last_error is None, box.last_error
    model_dd, attack_dd, eps_dd = _dropdowns(box)
    assert model_dd.value[2] != "mobilenet"
    res = box.last_result
    ds, st, pr = model_dd.value
    sub = df[(df["pair"] == pr) & (df["attack"] == attack_dd.value) & df["final_flipped"]]
    assert res.attrs["n_flipped"] == len(sub)
    assert res["fraction"].sum() == pytest.approx(1.0)
    assert res.attrs["share_changed_exit0"] == pytest.approx(100 * (sub["first_changed_exit"] == 0).mean())
    direct = widgets.first_change_at(df, st, pr, attack_dd.value, eps_dd.value, dataset=ds)
    assert direct.equals(res)


# ---------------------------------------------------------------- dynn_lib.display

def test_table_formats_each_quantity_once():
    import base64
    import io
    import re

    from dynn_lib import display as show

    df = pd.DataFrame({"dataset": ["cifar10", "cifar10"], "pair": ["resnet56→vgg16", "vgg16→resnet56"],
                       "eps_255": [8.0, 4.0], "tau": [0.91234, 0.5], "success_rate": [12.345, -0.0001],
                       "success_rate_lo": [5.0, 0.0], "success_rate_hi": [20.0, 3.25], "n": [16, 16],
                       "seconds_per_example": [0.0123, float("nan")]})
    t = show.table(df, "Table X.1. Something.")
    shown = t.data
    assert list(shown["eps_255"]) == ["8", "4"]                      # ε as an integer /255
    assert list(shown["tau"]) == ["0.91", "0.50"]                    # τ with 2 decimals
    assert list(shown["success_rate"]) == ["12.3 [5.0, 20.0]", "0.0 [0.0, 3.2]"]  # no "-0.0", interval inline
    assert list(shown["seconds_per_example"]) == ["12.30", "—"]      # seconds shown in ms; empty is a dash
    assert list(shown["pair"]) == ["ResNet-56 → VGG-16", "VGG-16 → ResNet-56"]
    assert "dataset" not in shown.columns and "dataset: CIFAR-10" in t.markup  # constant column -> caption
    assert "— : " in t.markup and "ms / example" in t.markup and "[95 % CI]" in t.markup
    assert "nan" not in t.markup.lower().replace("dynn", "")
    # the CSV link holds exactly the raw rows
    payload = re.search(r'href="data:text/csv;charset=utf-8;base64,([^"]+)"', t.markup).group(1)
    back = pd.read_csv(io.StringIO(base64.b64decode(payload).decode()))
    assert list(back.columns) == list(df.columns) and back["success_rate"].tolist() == pytest.approx([12.345, -0.0001])
    assert 'download="table-x-1.csv"' in t.markup
    # MAC counts under an "(M)" header are shown in millions; ε (a fraction) in 1/255
    t2 = show.table(pd.DataFrame({"eps": [8 / 255, 2 / 255], "mean_delta_macs": [-123_315_200.0, 5e5]}))
    assert list(t2.data["eps"]) == ["8", "2"] and list(t2.data["mean_delta_macs"]) == ["-123.32", "0.50"]
    assert "ε (/255)" in t2.markup and "mean ΔMACs (M)" in t2.markup
    # a budget or an image count shared by every row is said once, in the caption, in its own units
    t3 = show.table(pd.DataFrame({"eps": [8 / 255] * 2, "n": [200, 200], "success_rate": [1.0, 2.0]}), "T.")
    assert list(t3.data.columns) == ["success_rate"] and "Constant over this table: ε (/255): 8; images: 200." in t3.text
    # a MACs change in % with 2 decimals; the 3-digit fallback never writes an exponent
    assert [show.format_value(v, "total_macs_change") for v in (-0.257, -9.58e-5, 3.5)] == ["-0.26", "0.00", "3.50"]
    assert [show.format_value(v, c) for v, c in ((4.0, "mean_first_changed_exit"), (2.1, "mean_exit"),
                                                  (5.0, "mean_internal_changed"))] == ["4.00", "2.10", "5.00"]
    # every percentage with 1 decimal, whatever its column is called; T2 (a mean count of exits) with 2
    assert [show.format_value(30.0, c) for c in ("early_exit_agreement", "paper_fgsm", "wb_changed_exit0",
                                                  "first_exit_cost", "paper_t2")] == ["30.0"] * 4 + ["30.00"]
    assert [show.format_value(v, "macs_ratio") for v in (0.135, -9.58e-5, 12345.6)] == ["0.135", "-0.0000958", "12,346"]
    with pytest.raises(ValueError, match="csv filename"):
        show.csv_link(df, "../x.csv")


def test_table_cells_wrap_where_a_reader_expects():
    """On the page an interval's bracket sits under its value (its own span, which the book's CSS
    shows as a second line) and a pair may break after its arrow only; the text form, the data
    and the CSV keep "value [lo, hi]" on one line."""
    import re
    from html.parser import HTMLParser
    from pathlib import Path

    from dynn_lib import display as show

    df = pd.DataFrame({"pair": ["resnet56→vgg16", "vgg16→mobilenet"], "success_rate": [12.345, float("nan")],
                       "success_rate_lo": [5.0, float("nan")], "success_rate_hi": [20.0, float("nan")], "n": [16, 3],
                       "note": ["short", "a text longer than twenty-four characters"]})
    t = show.table(df)

    class Cells(HTMLParser):  # (class of the <td>, its text) for every body cell, and the spans inside
        def __init__(self):
            super().__init__()
            self.cells, self.spans, self.stack = [], [], []

        def handle_starttag(self, tag, attrs):
            if tag == "td":
                self.cells.append([dict(attrs).get("class"), ""])
            elif tag == "span" and self.cells:
                self.spans.append((len(self.cells) - 1, dict(attrs).get("class"), ""))
                self.stack.append(len(self.spans) - 1)

        def handle_endtag(self, tag):
            if tag == "span" and self.stack:
                self.stack.pop()

        def handle_data(self, data):
            if self.cells:
                self.cells[-1][1] += data
            if self.stack:
                i = self.stack[-1]
                self.spans[i] = (*self.spans[i][:2], self.spans[i][2] + data)

    p = Cells()
    p.feed(re.search(r"<tbody>.*</tbody>", t.markup).group(0))
    assert [c[1] for c in p.cells] == ["ResNet-56 → VGG-16", "12.3 [5.0, 20.0]", "16", "short",
                                       "VGG-16 → MobileNet", "—", "3", "a text longer than twenty-four characters"]
    assert [c[0] for c in p.cells] == ["txt pair", "num", "num", "txt short", "txt pair", "num", "num", "txt"]
    # the interval: one span with the bracket, after the value; the empty cell has none
    assert [(i, cls, text) for i, cls, text in p.spans if cls == "dynn-ci"] == [(1, "dynn-ci", " [5.0, 20.0]")]
    # the pair: two unbreakable halves, the arrow ending the first
    assert [text for i, cls, text in p.spans if i == 0] == ["ResNet-56 →", "VGG-16"]
    assert list(t.data["success_rate"]) == ["12.3 [5.0, 20.0]", "—"] and "12.3 [5.0, 20.0]" in t.text
    css = (Path(__file__).resolve().parents[1] / "book" / "_static" / "dynn.css").read_text()
    assert re.search(r"\.dynn-ci\s*\{[^}]*display:\s*block", css)
    assert re.search(r"td\.pair > span\s*\{[^}]*white-space:\s*nowrap", css)


def test_long_evidence_lists_its_comparisons_one_per_line():
    """display.evidence_html: a long evidence sentence breaks after each top-level "; " (never
    inside brackets or parentheses), a short one or one without a list is only escaped, and the
    words are those of the text (verdict boxes and the claims ledger show it so)."""
    import html as html_lib

    from dynn_lib import display as show
    from dynn_lib.claims import style_ledger

    items = [f"setting {i} (a; b): 0.{i} [0.0, 1.0; sic]" for i in range(12)]
    long = "changes over 200 images: " + "; ".join(items) + ". Threshold 10 %: 12 of 12 < limit; done"
    assert len(long) > show.EVIDENCE_BREAK_CHARS
    out = show.evidence_html(long)
    assert out.count("<br>") == 12  # 11 between the items, 1 in the closing sentence
    assert html_lib.unescape(out.replace("<br>", " ")) == long and "&lt; limit" in out
    assert all(line.rstrip().endswith(";") for line in out.split("<br>")[:-1])
    short = "a: 1; b: 2; c: 3"
    assert show.evidence_html(short) == short
    no_list = "x" * 400 + "; y"
    assert show.evidence_html(no_list) == no_list
    box = show.verdict_box({"finding": 3, "verdict": "holds", "evidence": long, "n_images": 200})
    assert out in box.markup and f"deciding numbers: {long}" in box.text  # the text form keeps one line
    ledger = pd.DataFrame({"claim_id": ["F3"], "verdict": ["holds"], "evidence": [long]})
    assert out in style_ledger(ledger, ["claim_id", "verdict", "evidence"]).to_html()


def test_verdict_boxes_carry_verdict_sample_and_profile_tag():
    from dynn_lib import display as show

    r = {"finding": 1, "verdict": "inconclusive", "evidence": "D2S − S2D = 3 [−2, 8] points", "n_images": 250}
    smoke = show.verdict_box(r, profile="smoke", dataset="cifar10-jpeg")
    assert 'class="admonition dynn-verdict dynn-verdict-inconclusive"' in smoke.markup
    assert "[smoke]" in smoke.markup and "250 images" in smoke.markup and "D2S" in smoke.markup
    real = show.verdict_box(r, profile="paper", dataset="cifar10-jpeg")
    assert "[smoke]" not in real.markup and "dynn-tag" not in real.markup
    assert "[generated data]" in show.verdict_box(r, profile="fast", dataset="synthetic").markup
    assert "not stated" in show.verdict_box({**r, "n_images": None}, profile="paper").markup
    fams = {v: show.normalise_verdict(v)[0] for v in ("holds", "does not hold", "not testable: needs CIFAR-100")}
    assert fams == {"holds": "holds", "does not hold": "does not hold", "not testable: needs CIFAR-100": "not testable"}
    with pytest.raises(ValueError, match="not a verdict"):  # one vocabulary: old words cannot reach a page
        show.normalise_verdict("mixed")
    with pytest.raises(ValueError, match="verdict"):
        show.verdict_box({"finding": 1})
    assert show.is_indicative("smoke", "cifar10") and show.is_indicative("paper", "synthetic")
    assert not show.is_indicative("fast", "cifar10-jpeg") and not show.is_indicative("paper", ["cifar10", "tinyimagenet"])


def test_rel_path_never_prints_an_absolute_path(tmp_path):
    from dynn_lib import display as show

    assert show.rel_path(tmp_path / "results" / "smoke" / "x", tmp_path / "results") == "smoke/x"
    out = show.rel_path("/somewhere/else/deep/file.csv", tmp_path)
    assert out == "…/deep/file.csv"


def test_check_parameters_rejects_unknown_names_and_reads_json():
    pytest.importorskip("yaml")  # the book extra (parameter values are read as papermill reads them)
    from dynn_lib.book import check_parameters, coerce_parameter

    params = 'profile = "smoke"\neps_255 = [8]\noverrides = {}\ntau = 0.9\n'
    ns = {"eps_255": "[4]", "overrides": '{"n_train": 64}', "tau": "[0.9, 0.8]"}
    assert check_parameters(["import os", params, '# Parameters\neps_255 = "[4]"\noverrides = "{\\"n_train\\": 64}"\n'
                             'tau = "[0.9, 0.8]"\n', "current cell"], ns) == ["eps_255", "overrides", "tau"]
    assert ns == {"eps_255": [4], "overrides": {"n_train": 64}, "tau": [0.9, 0.8]}  # per-exit τ as a list
    with pytest.raises(ValueError, match=r"unknown parameter\(s\) \['sede'\].*\['eps_255', 'overrides', 'profile', 'tau'\]"):
        check_parameters([params, "# Parameters\nsede = 1\n"], {})
    assert check_parameters(["x = 1", "y = 2"], {}) == []  # no injected cell (JupyterLab): nothing to check
    assert coerce_parameter(8, [8]) == [8] and coerce_parameter("smoke", "paper") == "smoke"


def test_progress_writes_plain_lines_when_not_a_terminal(monkeypatch):
    import io

    from dynn_lib import progress as prog

    monkeypatch.delenv("DYNN_PROGRESS", raising=False)
    buf = io.StringIO()  # not a TTY
    assert list(prog.progress(range(8), desc="step", file=buf)) == list(range(8))
    text = buf.getvalue()
    assert "\r" not in text and text.count("\n") == 4 and "[step] done: 8/8" in text
    bar = prog.progress(None, total=4, desc="jobs", file=buf)  # the engines' manual bar
    bar.update(2)
    bar.close()
    assert "[jobs] 50% (2/4)" in buf.getvalue()
    monkeypatch.setenv("DYNN_PROGRESS", "0")
    quiet = io.StringIO()
    assert list(prog.progress(range(3), file=quiet)) == [0, 1, 2] and quiet.getvalue() == ""


def test_ledger_rows_this_build_cannot_decide_are_collapsed_and_the_summary_says_what_it_counts():
    from dynn_lib import display as show

    led = pd.DataFrame({"claim_id": ["F1", "F5", "T1-cifar10-vgg16-pgd"], "claim": ["a", "b", "c"],
                        "verdict": ["holds", "not testable: needs CIFAR-100", "does not hold"],
                        "evidence": ["e", "f", "g"], "n_seeds": [1, 1, 1], "dataset_used": ["synthetic", "", "synthetic"]})
    t = show.ledger_table(led, ["claim_id", "claim", "verdict", "evidence", "n_seeds", "dataset_used"], "Table C.9. x.")
    visible, _, collapsed = t.markup.partition("<details>")
    assert "needs CIFAR-100" in collapsed and "needs CIFAR-100" not in visible
    assert "2 row(s) tested by this build (an inconclusive one is tested, not decided); 1 that its data cannot test" in visible
    # n_seeds is constant (1): it moves to the caption; dataset_used varies and stays a column
    assert "Table C.9. x. seeds run: 1." in visible and ">seeds run<" not in visible and ">dataset used<" in visible
    assert "n_seeds" not in visible.split("download=")[0]
    md = show.site_summary_markdown(led, "smoke", ["synthetic"])
    assert "**smoke**" in md and "[smoke · generated data]" in md
    assert "lists 3 statements" in md and "tests 2 of them: 1 agree with the paper (holds), 1 disagree" in md
    assert "| F1 | a | holds [smoke · generated data] |" in md and "| F5 | b | not testable" in md
    assert "partial build" not in md
    part = show.site_summary_markdown(led, "smoke", ["synthetic"], missing=["rq1", "appendix"])
    assert ("**A partial build:** the results folder holds no published result for "
            "{doc}`RQ1 <_generated/rq1_transferability>`, {doc}`the appendix <_generated/appendix>` on synthetic"
            ) in part
    assert part.replace(part[part.index("\n\n**A partial"):part.index("| finding")], "\n\n") == md
    with pytest.raises(ValueError, match=r"unknown question\(s\) \['rq9'\].*accepted: zoo, rq1"):
        show.site_summary_markdown(led, "smoke", ["synthetic"], missing=["rq9"])
    # the profile fields the results changed (a GPU run's probe choosing 60 epochs) follow its name
    one = show.site_summary_markdown(led, "fast", ["cifar10-jpeg"], changes=["cnn_epochs 60 (fast: 45)"] * 6)
    assert "built with profile **fast** (changed: cnn_epochs 60 (fast: 45)) on **cifar10-jpeg**." in one
    assert "(changed" not in show.site_summary_markdown(led, "fast", ["cifar10-jpeg"], changes=["none", ""])
    two = show.site_summary_markdown(led, "fast", ["cifar10-jpeg"], changes=["none", "lr 0.1 (fast: 0.4)",
                                                                             "n_eval 100 (fast: all)"])
    assert "that differ between results: 2 variants; each page's data note lists its own)" in two
