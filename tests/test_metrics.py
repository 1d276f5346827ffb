"""Every metric on small hand-made inputs whose answer is worked out by hand here."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from dynn_lib import metrics as M
from dynn_lib.early_exit import early_exit_predict, exit_numbers


def logits_from_preds(table, num_classes: int = 3) -> torch.Tensor:
    """``[E, B, C]`` logits whose argmax at exit e, input b is ``table[e][b]``."""
    p = torch.tensor(table)
    return torch.nn.functional.one_hot(p, num_classes).float() * 5.0


# ---------------------------------------------------------------- RQ1

def test_success_rate_over_correct_and_all():
    labels = [0, 1, 2, 3]
    clean = [0, 1, 2, 0]  # images 0, 1, 2 correct when benign
    adv = [1, 1, 0, 0]    # adv wrong on images 0, 2, 3
    # over correct: images 0 and 2 of {0, 1, 2} -> 2/3
    assert M.success_rate(torch.tensor(clean), torch.tensor(adv), torch.tensor(labels)) == pytest.approx(200 / 3)
    # over all: images 0, 2, 3 of 4 -> 75 %
    assert M.success_rate(clean, adv, labels, over="all") == 75.0
    # numpy accepted
    assert M.success_rate(np.array(clean), np.array(adv), np.array(labels)) == pytest.approx(200 / 3)


def test_success_rate_empty_denominator_is_nan():
    # nothing classified correctly when benign
    assert math.isnan(M.success_rate([1, 0], [1, 0], [0, 1]))
    assert math.isnan(M.success_rate([], [], []))
    assert math.isnan(M.success_rate([], [], [], over="all"))
    # the "all" rate is still defined
    assert M.success_rate([1, 0], [0, 0], [0, 1], over="all") == 50.0


def test_success_rate_validation():
    with pytest.raises(ValueError, match="shape mismatch"):
        M.success_rate([0, 1], [0, 1, 2], [0, 1])
    with pytest.raises(ValueError, match="over"):
        M.success_rate([0], [0], [0], over="some")
    with pytest.raises(ValueError, match="integers"):
        M.success_rate(torch.zeros(2, dtype=torch.float32), torch.zeros(2, dtype=torch.long), [0, 0])
    with pytest.raises(ValueError, match=r"\[B\]"):
        M.success_rate(torch.zeros(2, 3, dtype=torch.long), torch.zeros(2, 3, dtype=torch.long), [0, 0])


def test_success_rate_with_early_exit_predictions():
    # 2 exits, tau 0.9: exit 0 fires on image 0 only (confident), image 1 answers at the final exit
    clean = torch.tensor([[[9.0, 0.0], [0.1, 0.0]],   # exit 0
                          [[0.0, 9.0], [0.0, 9.0]]])  # final exit
    pred, ex = early_exit_predict(clean, 0.9)
    assert pred.tolist() == [0, 1] and ex.tolist() == [0, 1]
    # adversarial: both answer at the final exit with class 1
    adv = torch.tensor([[[0.1, 0.0], [0.0, 0.1]], [[0.0, 9.0], [0.0, 9.0]]])
    pred_adv, _ = early_exit_predict(adv, 0.9)
    # labels [0, 1]: both correct when benign (deployed mode); image 0 is now wrong -> 50 %
    assert M.success_rate(pred, pred_adv, [0, 1]) == 50.0


# ---------------------------------------------------------------- RQ2

def test_exit_change_and_macs_change():
    clean = torch.tensor([0, 2, 1, 2])
    adv = torch.tensor([2, 2, 0, 1])
    d = M.exit_change(clean, adv)
    assert d.dtype == torch.int64
    assert d.tolist() == [2, 0, -1, -1]
    macs = [10.0, 25.0, 50.0]
    m = M.macs_change(clean, adv, macs)
    assert m.dtype == torch.float64
    assert m.tolist() == [40.0, 0.0, -15.0, -25.0]


def test_exit_change_validation():
    with pytest.raises(ValueError, match="shape mismatch"):
        M.exit_change([0, 1], [0])
    with pytest.raises(ValueError, match="outside"):
        M.macs_change([0, 3], [0, 1], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match=">= 0"):
        M.exit_change([-1], [0])


def test_share_exit_raised():
    assert M.share_exit_raised(torch.tensor([2, 1, -1, 3])) == 50.0          # 2 and 3 are > 1
    assert M.share_exit_raised([2, 1, -1, 3], more_than=0) == 75.0          # 2, 1, 3
    assert M.share_exit_raised([1, 1, 0, -2]) == 0.0
    assert math.isnan(M.share_exit_raised([]))


def test_rq2_pipeline_with_exit_numbers():
    # 3 exits, 2 images, tau 0.9
    clean = torch.tensor([[[9.0, 0.0], [0.0, 0.0]],   # exit 0: fires on image 0
                          [[0.0, 0.0], [0.0, 9.0]],   # exit 1: fires on image 1
                          [[1.0, 0.0], [1.0, 0.0]]])
    adv = torch.tensor([[[0.0, 0.0], [0.0, 0.0]],     # nothing fires early
                        [[0.0, 0.0], [0.0, 0.0]],
                        [[1.0, 0.0], [1.0, 0.0]]])
    d = M.exit_change(exit_numbers(clean, 0.9), exit_numbers(adv, 0.9))
    assert d.tolist() == [2, 1]
    assert M.share_exit_raised(d) == 50.0


# ---------------------------------------------------------------- RQ3

# clean predictions, rows = exits 0..2, columns = images 0..3
RQ3_CLEAN = [[0, 1, 2, 0],
             [0, 1, 2, 1],
             [0, 1, 2, 2]]
# adversarial: img0 changes at exit 0 and at the final; img1 first at exit 1; img2 changes at
# exit 0 only (final unchanged -> -1); img3 changes only at the final exit (-> 2)
RQ3_ADV = [[1, 1, 0, 0],
           [1, 2, 2, 1],
           [1, 2, 2, 0]]


def test_first_changed_exit_and_final_flipped():
    zc, za = logits_from_preds(RQ3_CLEAN), logits_from_preds(RQ3_ADV)
    assert M.final_flipped(zc, za).tolist() == [True, True, False, True]
    first = M.first_changed_exit(zc, za)
    assert first.dtype == torch.int64
    assert first.tolist() == [0, 1, -1, 2]
    # lists of per-exit tensors work the same
    assert M.first_changed_exit(list(zc), list(za)).tolist() == [0, 1, -1, 2]


def test_first_changed_exit_explicit_logits():
    # 2 exits, 2 images, 2 classes, written out
    clean = [torch.tensor([[2.0, 1.0], [0.0, 3.0]]), torch.tensor([[5.0, 0.0], [1.0, 4.0]])]
    adv = [torch.tensor([[2.0, 1.0], [3.0, 0.0]]), torch.tensor([[0.0, 5.0], [1.0, 4.0]])]
    # image 0: exit 0 argmax 0 -> 0 (same), final 0 -> 1 (flip) => first = 1
    # image 1: exit 0 argmax 1 -> 0 (changed), final 1 -> 1 (not flipped) => -1
    assert M.first_changed_exit(clean, adv).tolist() == [1, -1]


def test_first_changed_exit_nothing_flipped():
    zc = logits_from_preds(RQ3_CLEAN)
    assert M.first_changed_exit(zc, zc.clone()).tolist() == [-1, -1, -1, -1]
    assert not M.final_flipped(zc, zc).any()


def test_share_first_exit():
    first = torch.tensor([0, 1, -1, 2])
    assert M.share_first_exit(first) == pytest.approx(100 / 3)   # 1 of 3 flipped
    assert M.share_first_exit(first, exit=2) == pytest.approx(100 / 3)
    assert M.share_first_exit([0, 0, -1, 1]) == pytest.approx(200 / 3)
    assert math.isnan(M.share_first_exit([-1, -1]))
    with pytest.raises(ValueError):
        M.share_first_exit([-2, 0])


def test_first_changed_exit_shape_mismatch():
    with pytest.raises(ValueError, match="shape mismatch"):
        M.first_changed_exit(torch.zeros(3, 4, 5), torch.zeros(2, 4, 5))
    with pytest.raises(ValueError, match=r"\[E, B, C\]"):
        M.first_changed_exit(torch.zeros(4, 5), torch.zeros(4, 5))


# ---------------------------------------------------------------- RQ4

def test_early_attack_success():
    p = torch.tensor([0, 1, 2, 0])
    adv = logits_from_preds([[1, 1, 0, 2],
                             [2, 0, 1, 2],
                             [0, 1, 2, 1]])
    # img0: final 0 == p, internals 1, 2 != 0 -> success
    # img1: final 1 == p, but exit 0 predicts 1 == p -> fail
    # img2: final 2 == p, internals 0, 1 != 2 -> success
    # img3: internals 2, 2 != 0 but final 1 != p -> fail
    ok = M.early_attack_success(adv, p)
    assert ok.dtype == torch.bool
    assert ok.tolist() == [True, False, True, False]
    assert M.early_attack_success(list(adv), [0, 1, 2, 0]).tolist() == [True, False, True, False]


def test_early_attack_success_single_exit_and_validation():
    z = logits_from_preds([[0, 1]])  # E = 1: criterion is final == p
    assert M.early_attack_success(z, [0, 0]).tolist() == [True, False]
    with pytest.raises(ValueError, match="batch size"):
        M.early_attack_success(logits_from_preds([[0, 1]]), [0, 1, 2])


def test_t1_t2():
    clean = logits_from_preds([[2, 2, 0, 1],
                               [1, 0, 0, 1],
                               [0, 1, 2, 0]])   # p_B = [0, 1, 2, 0]
    adv = logits_from_preds([[1, 1, 0, 2],
                             [2, 0, 1, 0],
                             [0, 1, 2, 1]])
    # kept final: images 0, 1, 2 (img3 1 != 0) -> T1 = 75 %
    # internal exits != p_B: img0 (1, 2 vs 0) 2; img1 (1, 0 vs 1) 1; img2 (0, 1 vs 2) 2 -> 5/3
    t1, t2 = M.t1_t2(clean, adv)
    assert t1 == 75.0
    assert t2 == pytest.approx(5 / 3)


def test_t1_t2_none_kept_and_empty():
    clean = logits_from_preds([[0, 0], [0, 1]])
    adv = logits_from_preds([[1, 1], [1, 0]])
    t1, t2 = M.t1_t2(clean, adv)
    assert t1 == 0.0 and math.isnan(t2)
    t1, t2 = M.t1_t2(torch.zeros(2, 0, 3), torch.zeros(2, 0, 3))
    assert math.isnan(t1) and math.isnan(t2)


# ---------------------------------------------------------------- perturbation size

def _pair():
    x = torch.zeros(2, 1, 2, 2)
    x_adv = x.clone()
    x_adv[0] = 0.1               # every pixel moved by 0.1: MSE 0.01 -> 20 dB
    x_adv[1, 0, 0, 0] = 0.5      # one of 4 pixels moved by 0.5: MSE 0.0625 -> 10 log10 16 dB
    return x, x_adv


def test_psnr_linf_l2():
    x, x_adv = _pair()
    p = M.psnr(x, x_adv)
    assert p.shape == (2,)
    assert p[0].item() == pytest.approx(20.0)
    assert p[1].item() == pytest.approx(10 * math.log10(16))   # 12.0412 dB
    assert M.linf(x, x_adv).tolist() == pytest.approx([0.1, 0.5])
    assert M.l2(x, x_adv).tolist() == pytest.approx([0.2, 0.5])  # sqrt(4 * 0.01), sqrt(0.25)


def test_psnr_identical_is_inf_and_mean_ignores_it():
    x, x_adv = _pair()
    x_adv = torch.cat([x_adv, x[:1]])
    x = torch.cat([x, x[:1]])
    p = M.psnr(x, x_adv)
    assert math.isinf(p[2].item()) and p[2].item() > 0
    assert M.mean_psnr(p) == pytest.approx((20.0 + 10 * math.log10(16)) / 2)
    assert math.isnan(M.mean_psnr(M.psnr(x[2:], x_adv[2:])))
    assert M.linf(x[2:], x_adv[2:]).tolist() == [0.0]
    assert M.l2(x[2:], x_adv[2:]).tolist() == [0.0]


def test_psnr_uint8_and_range_check():
    x = torch.zeros(1, 1, 2, 2, dtype=torch.uint8)
    x_adv = x.clone()
    x_adv[0, 0, 0, 0] = 255     # MSE = 1/4 -> 10 log10 4 dB
    assert M.psnr(x, x_adv).item() == pytest.approx(10 * math.log10(4))
    assert M.linf(x, x_adv).item() == pytest.approx(1.0)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        M.psnr(x.float(), x_adv.float())    # 0-255 floats
    with pytest.raises(ValueError, match="shape mismatch"):
        M.psnr(torch.zeros(2, 3), torch.zeros(2, 4))


# ---------------------------------------------------------------- cost, distributions, seeds

def test_time_per_example():
    assert M.time_per_example(12.0, 4) == 3.0
    for n in (0, -1):
        with pytest.raises(ValueError, match="n must be > 0"):
            M.time_per_example(1.0, n)
    with pytest.raises(ValueError):
        M.time_per_example(-1.0, 2)


def test_exit_distribution():
    d = M.exit_distribution(torch.tensor([0, 2, 2, 1, 2]), 4)
    assert d.dtype == torch.float64
    assert d.tolist() == pytest.approx([0.2, 0.2, 0.6, 0.0])
    assert d.sum().item() == pytest.approx(1.0)
    assert torch.isnan(M.exit_distribution([], 3)).all()
    with pytest.raises(ValueError, match="exits must lie"):
        M.exit_distribution([0, 3], 3)


def test_mean_std():
    m, s = M.mean_std([1.0, 2.0, 3.0, 4.0])
    assert m == 2.5
    assert s == pytest.approx(math.sqrt(5 / 3))   # ddof = 1: (2.25+.25+.25+2.25)/3
    assert M.mean_std(np.array([7.0])) == (7.0, 0.0)
    assert M.mean_std(torch.tensor([1.0, 1.0])) == (1.0, 0.0)
    with pytest.raises(ValueError):
        M.mean_std([])


def test_interval_text_shows_the_sign_of_a_bound_that_rounds_to_zero():
    from dynn_lib.metrics import interval_text

    assert interval_text(4.1, 20.49) == "[4.1, 20.5]"
    assert interval_text(-0.007, 2.5) == "[-0.01, 2.5]"  # not "[-0.0, 2.5]": the interval includes 0
    assert interval_text(0.004, 1.0, digits=2) == "[0.004, 1.00]"
    assert interval_text(0.0, 1.0) == "[0.0, 1.0]"
    assert interval_text(-0.0, 0.0) == "[0.0, 0.0]"  # a negative zero is written as 0
    assert interval_text(-1e-9, 2.0) == "[0.0, 2.0]"  # and so is a value too small for its sign to show
    # the point value of an evidence sentence follows the same rule
    from dynn_lib.experiments.common import fmt

    assert fmt(-0.03, " %", lo=-1.0, hi=1.1) == "-0.03 % [-1.0, 1.1]"  # was "-0.0 % [-1.0, 1.1]" (Finding 3)
    assert fmt(-0.0, " pp") == "0.0 pp" and fmt(12.34, " pp", lo=4.1, hi=20.5) == "12.3 pp [4.1, 20.5]"
    assert interval_text(float("nan"), 1.0) == "[no interval: too few images]"
