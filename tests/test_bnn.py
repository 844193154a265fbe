"""Binarized networks: sign STE, weight bit errors, error-aware forward/backward, thresholds."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from scipy.stats import binomtest

import spikenoise as sn
from spikenoise.models.bnn import (BinaryActivation, BinaryCNN, BinaryConv2d, BinaryLinear, BinaryMLP, bn_thresholds,
                                   sign_ste)
from spikenoise.noise.binary import binary_weights, bit_error_rate


def test_sign_ste_forward_and_clipped_gradient():
    x = torch.tensor([-2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5], requires_grad=True)
    y = sign_ste(x)
    assert y.tolist() == [-1, -1, -1, 1, 1, 1, 1]
    g = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0])
    y.backward(g)
    # passes unchanged inside |x| <= 1, zero outside
    assert x.grad.tolist() == [0.0, 2.0, 3.0, 4.0, 5.0, 6.0, 0.0]
    x2 = torch.tensor([-0.8, 0.8, 2.5], requires_grad=True)
    BinaryActivation(clip=2.0)(x2).sum().backward()
    assert x2.grad.tolist() == [1.0, 1.0, 0.0]


@pytest.mark.parametrize("p_mp,p_pm", [(0.05, 0.05), (0.02, 0.1)])
def test_binary_weight_errors_flip_with_the_bit_error_rate(p_mp, p_pm):
    em = binary_weights(p_mp, p_minus_to_plus=p_mp, p_plus_to_minus=p_pm)
    assert bit_error_rate(em) == pytest.approx((p_mp, p_pm))
    stored = em.quantize(torch.tensor([-0.3, 0.7]).repeat(5000))
    assert stored[:2].tolist() == [-1.0, 1.0]
    torch.manual_seed(0)
    reads = em.read(stored, 20)
    assert set(reads.unique().tolist()) <= {-1.0, 1.0}
    minus, plus = stored == -1, stored == 1
    n_mp = int((reads[:, minus] == 1).sum())
    n_pm = int((reads[:, plus] == -1).sum())
    n = 20 * 5000
    assert binomtest(n_mp, n, p_mp).pvalue > 1e-5 and binomtest(n_pm, n, p_pm).pvalue > 1e-5
    assert binomtest(n_mp, n, 1.3 * p_mp).pvalue < 1e-5  # the check can fail
    # the same engine gets the exact per-spike sampler for free
    assert em.discrete() is not None


def test_bad_ber():
    with pytest.raises(ValueError, match="ber"):
        binary_weights(1.2)
    with pytest.raises(ValueError, match="p_plus_to_minus"):
        binary_weights(0.1, p_plus_to_minus=-0.1)
    with pytest.raises(ValueError, match="draws"):
        BinaryLinear(4, 4, draws="sample")


@pytest.mark.parametrize("draws", ["batch", "row"])
def test_error_aware_forward_and_backward_use_the_flipped_weights(draws):
    """Seed 002, IV: forward computes with W_err; backward propagates through the same W_err."""
    torch.manual_seed(1)
    layer = BinaryLinear(32, 16, error_model=binary_weights(0.3), errors="static", draws=draws)
    with torch.no_grad():
        layer.weight[0, 0] = 2.5  # outside the STE range (-2, 2) of a 2-level cell: no gradient
    layer.train()
    x = torch.randn(4, 32, requires_grad=True)
    y = layer(x)
    w_bin = torch.sign(layer.weight.detach())
    w_err = layer.draw  # (1 or 4, 16, 32): the erroneous weights of this inference
    assert w_err.shape[0] == (1 if draws == "batch" else 4)
    w_err = w_err.expand(4, -1, -1)
    flipped = (w_err != w_bin).float().mean()
    assert 0.2 < float(flipped) < 0.4  # ~30 % of the weights are wrong
    s = float(layer.scale)
    assert torch.allclose(y, s * torch.einsum("bi,boi->bo", x.detach(), w_err), atol=1e-5)
    g = torch.randn(4, 16)
    y.backward(g)
    # input gradient flows through W_err, not through the stored sign(W)
    assert torch.allclose(x.grad, s * torch.einsum("bo,boi->bi", g, w_err), atol=1e-5)
    assert not torch.allclose(x.grad, s * g @ w_bin, atol=1e-3)
    # hidden-weight gradient: straight through (dL/dW_err), zero outside the STE range
    expect = s * torch.einsum("bo,bi->oi", g, x.detach())
    expect[0, 0] = 0.0
    assert torch.allclose(layer.weight.grad, expect, atol=1e-5)
    # static: frozen for the rest of this inference, redrawn for the next one
    layer(x)
    assert torch.equal(layer.draw.expand(4, -1, -1), w_err)
    layer.new_inference()
    layer(x)
    assert not torch.equal(layer.draw.expand(4, -1, -1), w_err)


def test_conv_error_aware_backward_uses_flipped_weights():
    torch.manual_seed(2)
    conv = BinaryConv2d(3, 8, error_model=binary_weights(0.25), errors="static", draws="batch")
    x = torch.randn(2, 3, 6, 6, requires_grad=True)
    y = conv(x)
    w_err = conv.draw[0]
    s = float(conv.scale)
    assert torch.allclose(y, s * F.conv2d(x.detach(), w_err, padding=1), atol=1e-5)
    g = torch.randn_like(y)
    y.backward(g)
    xr = x.detach().clone().requires_grad_(True)
    (s * F.conv2d(xr, w_err, padding=1)).backward(g)
    assert torch.allclose(x.grad, xr.grad, atol=1e-5)


def test_models_shapes_clipping_and_no_error_default():
    torch.manual_seed(3)
    mlp = BinaryMLP(64, 10, hidden=(128, 64))
    assert len(mlp.binary_layers()) == 3
    with torch.no_grad():
        mlp.binary_layers()[0].weight.mul_(5)
    mlp.train()
    out = mlp(torch.randn(8, 8, 8))  # flattened
    assert out.shape == (8, 10)
    assert float(mlp.binary_layers()[0].weight.detach().abs().max()) <= 1.0  # clipped before the training forward
    cnn = BinaryCNN(1, (8, 8), 10, width=0.0625)
    assert cnn(torch.randn(2, 8, 8)).shape == (2, 10)
    assert cnn.feature_shape[1:] == (1, 1)
    with pytest.raises(ValueError, match="input"):
        cnn(torch.randn(2, 1, 9, 9))
    # weights really are +-1 (stored) and the default is error-free
    w = mlp.binary_layers()[1].quantized_weight()
    assert set(w.unique().tolist()) <= {-1.0, 1.0}
    mlp.eval()
    x = torch.randn(4, 64)
    assert torch.equal(mlp(x), mlp(x))


def test_batchnorm_sign_is_a_learned_threshold():
    """sign(BN(a)) == [d * (a - T) >= 0]: the BN of a BNN is a per-neuron threshold (seed 002, eq. 2)."""
    torch.manual_seed(4)
    bn = torch.nn.BatchNorm1d(6)
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([1.5, -0.7, 0.3, 2.0, -1.0, 0.0]))
        bn.bias.copy_(torch.tensor([0.2, 0.4, -0.5, 0.0, -0.3, 0.1]))
        bn.running_mean.copy_(torch.randn(6))
        bn.running_var.copy_(torch.rand(6) + 0.5)
    bn.eval()
    a = torch.randn(1000, 6) * 3
    T, d = bn_thresholds(bn)
    expect = torch.where(d * (a - T) >= 0, 1.0, -1.0)
    got = sign_ste(bn(a))
    assert torch.equal(got, expect)


@pytest.fixture
def one_thread():
    """Tiny models: a second thread only adds contention on a shared 2-core machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def test_error_aware_training_beats_standard_at_high_ber(one_thread):
    """A tiny task: trained with 20 % weight errors, the BNN keeps more accuracy at 20 % BER than trained without."""
    torch.manual_seed(5)
    centers = torch.randn(4, 16) * 1.5
    y = torch.randint(0, 4, (1024,))
    x = centers[y] + torch.randn(1024, 16)
    yt = torch.randint(0, 4, (512,))
    xt = centers[yt] + torch.randn(512, 16)

    def train(ber: float) -> BinaryMLP:
        torch.manual_seed(6)
        m = BinaryMLP(16, 4, hidden=(64,), dropout_in=0.0, dropout=0.0,
                      error_model=binary_weights(ber), errors="static" if ber > 0 else "none")
        opt = torch.optim.Adam(m.parameters(), lr=0.01)
        for _ in range(8):
            m.train()
            for i in range(0, 1024, 64):
                opt.zero_grad()
                F.cross_entropy(m(x[i:i + 64]), y[i:i + 64]).backward()
                opt.step()
        return m

    def acc(m: BinaryMLP, ber: float) -> float:
        sn.configure(m, errors="static", error_model=binary_weights(ber))
        m.eval()
        torch.manual_seed(7)
        return sum(float((m(xt[i:i + 32]).argmax(1) == yt[i:i + 32]).float().mean()) for i in range(0, 512, 32)) / 16

    std, aware = train(0.0), train(0.2)
    assert acc(std, 0.0) > 0.8
    a_std, a_aware = acc(std, 0.2), acc(aware, 0.2)
    assert a_aware > a_std + 0.05, (a_std, a_aware)


def test_bnn_cli_runs_and_resumes(tmp_path, one_thread):
    pytest.importorskip("sklearn")
    from spikenoise.cli import main

    out = tmp_path / "bnn"
    argv = ["bnn", "--preset", "quick", "--hidden", "32,32", "--epochs", "1", "--train-bers", "0,0.1",
            "--test-bers", "0,0.01,0.1", "--repeats", "2", "--out", str(out), "--no-progress"]
    assert main(argv) == 0
    lines = (out / "results.jsonl").read_text().splitlines()
    assert len(lines) == 2 * (1 + 2 * 2)  # train BERs x (clean + test BERs x repeats)
    assert (out / "bnn_accuracy_mlp.png").exists() and (out / "tolerance.csv").exists()
    assert "**" in (out / "table.md").read_text()  # the matched (test = train BER) cell is marked
    headline = (out / "headline.txt").read_text()
    assert headline.startswith("headline: ") and "aware (train BER 0.1) / standard" in headline
    assert main(argv) == 0
    assert (out / "results.jsonl").read_text().splitlines() == lines
