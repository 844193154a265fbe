"""Inputs users have: integer/bool spike tensors, float16/bfloat16, autocast; spike counts vs graded."""
import pytest
import torch
import torch.nn as nn

import spikenoise as sn
from spikenoise.synapse import NoisyConv1d, NoisyConv2d, NoisyLinear


def _layers():
    em = sn.MultiLevelNVM.noise_level(2)
    return {
        "linear": (NoisyLinear(6, 4, error_model=em, errors="dynamic", reads="spike"), (3, 6)),
        "conv1d": (NoisyConv1d(2, 3, 3, error_model=em, errors="dynamic", reads="spike"), (3, 2, 7)),
        "conv2d": (NoisyConv2d(2, 3, 3, error_model=em, errors="static", reads="spike"), (3, 2, 5, 5)),
    }


@pytest.mark.parametrize("name", ["linear", "conv1d", "conv2d"])
@pytest.mark.parametrize("dtype", [torch.int64, torch.uint8, torch.bool, torch.int32])
def test_integer_and_bool_spikes_are_spike_counts(name, dtype):
    """Same seed, same counts: an integer/bool tensor gives exactly the float tensor's output."""
    torch.manual_seed(0)
    layer, shape = _layers()[name]
    counts = torch.randint(0, 2 if dtype == torch.bool else 3, shape)
    torch.manual_seed(1)
    ref = layer(counts.float())
    layer.new_inference()
    torch.manual_seed(1)
    y = layer(counts.to(dtype))
    assert y.dtype == torch.float32
    torch.testing.assert_close(y, ref, rtol=0, atol=0)


@pytest.mark.parametrize("name", ["linear", "conv1d", "conv2d"])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_inputs_compute_in_float32_and_return_input_dtype(name, dtype):
    torch.manual_seed(0)
    layer, shape = _layers()[name]
    x = torch.randint(0, 3, shape).to(dtype)
    torch.manual_seed(1)
    ref = layer(x.float())
    layer.new_inference()
    torch.manual_seed(1)
    y = layer(x)
    assert y.dtype == dtype
    torch.testing.assert_close(y, ref.to(dtype), rtol=0, atol=0)


def test_autocast_keeps_counts_exact_inside_noisy_layers():
    """Under CPU bfloat16 autocast a converted model gives bit-identical noisy-layer outputs:
    autocast is off inside the layer, so 300 spikes on one synapse (not representable in
    bfloat16) are still counted exactly."""
    torch.manual_seed(0)
    net = sn.convert(nn.Sequential(nn.Linear(8, 5), nn.ReLU(), nn.Linear(5, 3)),
                     sn.MultiLevelNVM.noise_level(2), errors="dynamic", reads="spike")
    x = torch.randint(0, 3, (4, 8)).float()
    x[0, 0] = 301.0
    torch.manual_seed(1)
    ref = net(x)
    torch.manual_seed(1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = net(x)
    assert y.dtype == torch.float32
    torch.testing.assert_close(y, ref, rtol=0, atol=0)


def test_noisy_rnn_takes_integer_spikes():
    torch.manual_seed(0)
    net = sn.convert(nn.GRU(4, 3), sn.MultiLevelNVM.noise_level(2), errors="static")
    x = torch.randint(0, 2, (5, 2, 4))
    torch.manual_seed(1)
    ref = net(x.float())[0]
    torch.manual_seed(1)
    out = net(x.to(torch.uint8))[0]
    torch.testing.assert_close(out, ref, rtol=0, atol=0)


def test_classification_is_per_tensor_counts_vs_graded():
    """One fractional element makes the whole tensor graded: an input 2 is then one read weighted
    by 2 (variance 4 v) instead of two independent reads (variance 2 v)."""
    torch.manual_seed(0)
    em = sn.MultiLevelNVM.noise_level(2)
    layer = NoisyLinear(2, 1, bias=False, error_model=em, errors="dynamic", reads="spike", sampler="brute",
                        learn_scale=False)
    with torch.no_grad():
        layer.weight.fill_(-1.0)  # stored at level -1 (the noisiest: p0 = 0.5)
        layer.scale.fill_(1.0)
    v = float(em.read_moments(torch.tensor([-1.0]))[1])
    n = 20000
    counts = torch.tensor([[2.0, 0.0]]).expand(n, 2)
    graded = torch.tensor([[2.0, 1e-3]]).expand(n, 2)
    with torch.no_grad():
        var_counts = float(layer(counts).var())
        var_graded = float(layer(graded).var())
    # var of a sample variance of n draws: sd ~ var * sqrt(2 / n) (about 1 %); allow 6 %
    assert var_counts == pytest.approx(2 * v, rel=0.06)
    assert var_graded == pytest.approx(4 * v, rel=0.06)


def test_bad_input_types_raise():
    layer = NoisyLinear(2, 1)
    with pytest.raises(TypeError, match="torch.Tensor"):
        layer([1.0, 2.0])
    with pytest.raises(TypeError, match="real"):
        layer(torch.ones(1, 2, dtype=torch.complex64))
