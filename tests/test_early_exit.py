"""Early-exit rule, calibration and the two inference paths."""
import numpy as np
import pytest
import torch

from dynn_lib import early_exit as ee


def _logits():
    # 3 exits, 4 inputs, 2 classes; confidences of exits 0 and 1 chosen by hand
    big, small = 4.0, 0.1  # softmax max ~0.982 vs ~0.525
    z = torch.tensor([
        [[big, 0], [small, 0], [0, small], [0, big]],    # exit 0: conf .98 .52 .52 .98, preds 0 0 1 1
        [[0, big], [big, 0], [small, 0], [big, 0]],      # exit 1: conf .98 .98 .52 .98, preds 1 0 0 0
        [[0, 1.0], [1.0, 0], [1.0, 0], [0, 1.0]],        # final: preds 1 0 0 1
    ])
    return z


def test_exit_numbers_and_predictions_by_hand():
    z = _logits()
    pred, ex = ee.early_exit_predict(z, 0.9)
    assert ex.tolist() == [0, 1, 2, 0]
    assert pred.tolist() == [0, 0, 0, 1]
    # per-exit thresholds: exit 0 never fires, exit 1 fires at 0.9
    pred, ex = ee.early_exit_predict(z, (1.0, 0.9))
    assert ex.tolist() == [1, 1, 2, 1]
    assert pred.tolist() == [1, 0, 0, 0]
    # a list of tensors is accepted too
    assert torch.equal(ee.exit_numbers(list(z), 0.9), torch.tensor([0, 1, 2, 0]))


def test_bad_thresholds_are_rejected():
    z = _logits()
    with pytest.raises(ValueError, match="one threshold per internal exit"):
        ee.exit_numbers(z, (0.9, 0.9, 0.9))
    with pytest.raises(ValueError, match=r"tau must lie in \[0, 1\].*1.5"):
        ee.exit_numbers(z, 1.5)
    with pytest.raises(ValueError, match="tau must be a number in \\[0, 1\\] or one per internal exit, got True"):
        ee.exit_numbers(z, True)


def test_any_real_number_is_one_global_tau():
    z, labels = _logits(), torch.tensor([0, 0, 0, 1])
    for tau in (1, np.float32(0.9), np.float64(0.9), 0.9):
        assert torch.equal(ee.exit_numbers(z, tau), ee.exit_numbers(z, float(tau)))
        r = ee.report(z, labels, tau)
        assert r.tau == float(tau) and isinstance(r.tau, float)
    assert ee.report(z, labels, (np.float32(1.0), 0.9)).tau == (1.0, 0.9)


def test_calibration_picks_smallest_tau_within_one_point():
    z = _logits()
    labels = torch.tensor([1, 0, 0, 1])  # final exit is 100% right
    # tau 0.5: everything leaves at exit 0 (50%); 0.6-0.95: input 0 leaves wrongly at exit 0 (75%)
    assert ee.calibrate(z, labels) == 0.99
    assert ee.calibrate(z, labels, tolerance=0.25) == 0.6
    assert ee.calibrate(z, labels, tolerance=0.5) == 0.5
    rep = ee.report(z, labels, 0.99, exit_macs=[1, 2, 4])
    assert rep.accuracy == 1.0 and rep.mean_exit == 2.0 and rep.mean_macs == 4.0 and rep.macs_ratio == 1.0
    rep = ee.report(z, labels, 0.9, exit_macs=[1, 2, 4])
    assert rep.exit_counts == (2, 1, 1) and rep.mean_macs == pytest.approx((1 + 2 + 4 + 1) / 4)


@pytest.mark.parametrize("n, final_ok", [(5000, 51), (5000, 3517), (1000, 777), (200, 101)])
def test_calibration_accepts_a_drop_of_exactly_one_point(n, final_ok):
    """Exactly tolerance x N fewer correct answers qualifies (a float32 mean misjudged 51/5000
    against 1/5000); one more does not."""
    drop = round(0.01 * n)
    labels = torch.zeros(n, dtype=torch.long)
    for lost in (drop, drop + 1):
        # 2 exits, 2 classes; the final exit is right on the first final_ok inputs; the IC is
        # confident (p ~ 0.73: below 0.8, the next grid τ that changes anything) on all and right on final_ok - lost of them
        z = torch.zeros(2, n, 2)
        z[1, :final_ok, 0] = 5.0
        z[1, final_ok:, 1] = 5.0
        z[0, :, 1] = 1.0
        z[0, :final_ok - lost, :] = torch.tensor([1.0, 0.0])
        assert (ee.early_exit_predict(z, 0.5)[0] == labels).sum() == final_ok - lost
        assert ee.calibrate(z, labels) == (0.5 if lost == drop else 0.8)


def test_calibration_fallback_is_told_apart_by_meets_rule():
    """When no τ of the grid keeps the rule, calibrate returns the grid's largest and meets_rule
    says False; a τ chosen by the rule meets it."""
    z = _logits()
    labels = torch.tensor([1, 0, 0, 1])
    assert ee.calibrate(z, labels) == 0.99 and ee.meets_rule(z, labels, 0.99) and not ee.meets_rule(z, labels, 0.9)
    grid = (0.5, 0.9)  # both below the first τ that keeps the final exit's 100 %
    assert ee.calibrate(z, labels, grid=grid) == 0.9 and not ee.meets_rule(z, labels, 0.9)
    assert ee.meets_rule(z, labels, 0.9, tolerance=0.25)
    with pytest.raises(ValueError, match="tolerance is a fraction in \\[0, 1\\], got 1.5"):
        ee.calibrate(z, labels, tolerance=1.5)


def test_fired_logits_select_the_exit_taken():
    z = _logits().requires_grad_()
    out = ee.fired_logits(z, 0.9)
    assert torch.equal(out, z[[0, 1, 2, 0], torch.arange(4)])
    out.sum().backward()
    assert z.grad[0, 0].abs().sum() > 0 and z.grad[1, 0].abs().sum() == 0


@pytest.mark.parametrize("tau", [0.0, 0.12, 0.15, 0.2, 1.0])
def test_real_early_stopping_equals_batched_rule(tiny_dynn, tau):
    torch.manual_seed(1)
    x = torch.rand(64, 3, 8, 8)
    with torch.no_grad():
        z = torch.stack(tiny_dynn(x))
    pred, ex = ee.early_exit_predict(z, tau)
    logits, ex2 = tiny_dynn.forward_early_exit(x, (tau, tau))
    assert torch.equal(ex, ex2)
    assert torch.equal(pred, logits.argmax(1))
    # one sample at a time (the latency path) agrees with the batched path
    for i in range(0, 64, 9):
        li, ei = tiny_dynn.forward_early_exit(x[i:i + 1], (tau, tau))
        assert ei.item() == ex[i].item() and li.argmax(1).item() == pred[i].item()
    if 0 < tau < 1:
        assert len(set(ex.tolist())) >= 1


def test_all_exit_logits_restores_mode_and_accepts_uint8(tiny_dynn):
    tiny_dynn.train()
    imgs = torch.randint(0, 256, (10, 3, 8, 8), dtype=torch.uint8)
    z = ee.all_exit_logits(tiny_dynn, imgs, batch_size=4)
    assert z.shape == (3, 10, 10) and tiny_dynn.training
    tiny_dynn.eval()
    with torch.no_grad():
        ref = torch.stack(tiny_dynn(imgs.float() / 255))
    assert torch.allclose(z, ref, atol=1e-5)


def test_float_pixels_are_the_exact_division_on_every_device():
    """uint8 level k -> k/255 correctly rounded (float64 division rounded once more to float32 is
    exact here): the CPU's division and the table other devices read give these bits; the product
    with the rounded reciprocal, which CUDA computes for a division by a Python number, would not."""
    from dynn_lib.early_exit import pixel_table, to_float_pixels
    levels = torch.arange(256, dtype=torch.uint8)
    exact = (levels.double() / 255).float()
    assert torch.equal(to_float_pixels(levels), exact)
    assert torch.equal(pixel_table("cpu")[levels.long()], exact)  # the lookup made on non-CPU devices
    reciprocal = levels.float() * (torch.tensor(1.0) / torch.tensor(255.0))
    assert int((reciprocal != exact).sum()) == 126
    x = torch.randint(0, 256, (4, 3, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    assert torch.equal(to_float_pixels(x), pixel_table("cpu")[x.long()])
    f = torch.rand(2, 3, dtype=torch.float64)
    assert torch.equal(to_float_pixels(f), f.float())
