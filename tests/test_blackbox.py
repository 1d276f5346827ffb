"""Black-box protocol: query-set size and order, labels from the target in its deployed mode."""
import pytest
import torch

from dynn_lib import blackbox, early_exit
from dynn_lib.zoo import Workspace

from conftest import fake_zoo


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    w = Workspace("synthetic", "smoke", store=tmp_path_factory.mktemp("bb"), device="cpu", n_train=32,
                  n_query=20, n_eval=8, batch_size=16)
    fake_zoo(w)
    return w


def test_pairs_are_data_and_mirror_each_other():
    s2d, d2s = blackbox.get_pairs("S2D"), blackbox.get_pairs("D2S")
    assert len(s2d) == len(d2s) == 3
    for a, b in zip(s2d, d2s):
        assert (a.surrogate_arch, a.target_arch) == (b.target_arch, b.surrogate_arch)
        assert (a.surrogate_kind, a.target_kind, b.surrogate_kind, b.target_kind) == ("cnn", "sdn", "sdn", "cnn")
    with pytest.raises(ValueError, match="accepted: S2D, D2S"):
        blackbox.get_pairs("X2Y")


def test_query_set_is_eleven_copies_with_originals_first(ws):
    q = blackbox.query_set(ws)
    n = len(ws.query_half[1])
    assert q.shape == (11 * n, 3, 32, 32) and q.dtype == torch.uint8
    assert torch.equal(q[:n], ws.query_half[0])


def test_labels_come_from_the_deployed_target(ws):
    q = blackbox.query_set(ws)
    for arch, kind in (("vgg16", "sdn"), ("resnet56", "cnn")):
        labels = blackbox.query_labels(ws, arch, kind)
        model = ws.model(arch, kind)
        z = early_exit.all_exit_logits(model, q)
        if kind == "cnn":
            expect = z[0].argmax(-1)
        else:
            tau = ws.tau(arch, kind)
            expect, exits = early_exit.early_exit_predict(z, tau)
            assert len(set(exits.tolist())) > 1, "fixture should make several exits fire"
            assert not torch.equal(expect, z[-1].argmax(-1)), "deployed answers must differ from the final exit's"
        assert torch.equal(labels, expect)
