"""Bit-flip error model: exact flip statistics per bit and direction, masks, formats, targets."""
from __future__ import annotations

import math

import pytest
import torch
from scipy.stats import binomtest

import spikenoise as sn
from spikenoise.synapse import (BiasFlips, FlipActivations, calibrate_activations, insert_activation_flips,
                                requantize, set_activation_flips)
from spikenoise.noise import error_model_from_config
from spikenoise.noise.bitflip import DTYPES, BitFlip, flip_bits, from_bits, to_bits

ALPHA = 1e-5  # per-test significance; seeded RNG makes each test deterministic


def _random_patterns(dtype: str, n: int, seed: int) -> torch.Tensor:
    """Uniformly random bit patterns of ``dtype`` as a tensor of that format (every bit 0 or 1 half the time)."""
    _, idt, width, _, _ = DTYPES[dtype]
    g = torch.Generator().manual_seed(seed)
    info = torch.iinfo(idt)
    bits = torch.randint(info.min, info.max, (n,), dtype=torch.int64, generator=g).to(idt)
    if dtype == "int8":
        return bits.to(torch.float32)  # int8 values stored as float integers
    return bits.view(DTYPES[dtype][0])


def _flip_counts(before: torch.Tensor, after: torch.Tensor, width: int):
    """Per bit position: (#0 bits, #0->1 flips, #1 bits, #1->0 flips) as Python ints."""
    shifts = torch.arange(width, dtype=torch.int64)
    b = (before.reshape(-1, 1).to(torch.int64) >> shifts) & 1  # (N, width) unpacked bits
    a = (after.reshape(-1, 1).to(torch.int64) >> shifts) & 1
    n1 = b.sum(0)
    f01 = ((a - b) == 1).sum(0)
    f10 = ((b - a) == 1).sum(0)
    n0 = b.shape[0] - n1
    return list(zip(n0.tolist(), f01.tolist(), n1.tolist(), f10.tolist()))


def _check_rates(counts, noisy: list[int], p01: float, p10: float) -> tuple[int, int, int, int]:
    tot = [0, 0, 0, 0]
    for k, (n0, f01, n1, f10) in enumerate(counts):
        if k in noisy:
            assert binomtest(f01, n0, p01).pvalue > ALPHA, f"bit {k} 0->1: {f01}/{n0} vs p01={p01}"
            assert binomtest(f10, n1, p10).pvalue > ALPHA, f"bit {k} 1->0: {f10}/{n1} vs p10={p10}"
        else:
            assert f01 == 0 and f10 == 0, f"masked bit {k} flipped ({f01}, {f10})"
        for i, v in enumerate((n0, f01, n1, f10)):
            tot[i] += v if k in noisy else 0
    return tot  # type: ignore[return-value]


@pytest.mark.parametrize("dtype", sorted(DTYPES))
@pytest.mark.parametrize("p01,p10", [(4e-3, 1.2e-2), (0.3, 0.1)], ids=["sparse", "dense"])
def test_read_flips_each_bit_with_exact_probability(dtype, p01, p10):
    """Every noisy bit flips 0->1 with p01 and 1->0 with p10 (binomial test per bit and direction)."""
    width = DTYPES[dtype][2]
    mask = list(range(0, width, 2)) + [width - 1]  # every other bit plus the sign
    em = BitFlip(p01, p10, dtype=dtype, bit_mask=mask)
    stored = _random_patterns(dtype, 2048 if p01 < 0.01 else 512, seed=width)
    g = torch.Generator().manual_seed(7)
    n_reads = 64 if p01 < 0.01 else 8
    reads = em.read(stored, n_reads, generator=g)
    assert reads.shape == (n_reads, *stored.shape) and reads.dtype == stored.dtype
    before = to_bits(stored, dtype).unsqueeze(0).expand_as(reads)
    after = to_bits(reads, dtype) if dtype != "int8" else reads.round().to(torch.int8)
    tot = _check_rates(_flip_counts(before, after, width), sorted(set(mask)), p01, p10)
    # the aggregated counts are precise enough to reject a 25 % error in either probability,
    # so the per-bit tests above are not vacuous
    n0, f01, n1, f10 = tot
    assert binomtest(f01, n0, p01).pvalue > ALPHA and binomtest(f10, n1, p10).pvalue > ALPHA
    for wrong in (1.25, 0.8):
        assert binomtest(f01, n0, wrong * p01).pvalue < ALPHA and binomtest(f10, n1, wrong * p10).pvalue < ALPHA
    assert binomtest(f01, n0, p10).pvalue < ALPHA and binomtest(f10, n1, p01).pvalue < ALPHA  # directions differ


@pytest.mark.parametrize("dense_above", [1.0, 0.0], ids=["sparse", "dense"])
def test_flip_bits_both_samplers_agree_with_probabilities(dense_above):
    """The position sampler and the per-bit sampler are both exact (forced on the same input)."""
    g = torch.Generator().manual_seed(3)
    bits = torch.randint(-2 ** 31, 2 ** 31 - 1, (4000,), dtype=torch.int64, generator=g).to(torch.int32)
    out = flip_bits(bits.unsqueeze(0).expand(8, -1).contiguous(), list(range(32)), 0.02, 0.06, g,
                    dense_above=dense_above)
    counts = _flip_counts(bits.unsqueeze(0).expand(8, -1), out, 32)
    n0, f01, n1, f10 = _check_rates(counts, list(range(32)), 0.02, 0.06)
    assert abs(f01 / n0 - 0.02) < 0.001 and abs(f10 / n1 - 0.06) < 0.002


def test_bernoulli_positions_cover_the_whole_range():
    """Flips land uniformly over elements (no truncation of the geometric-gap process)."""
    from spikenoise.noise.bitflip import _bernoulli_positions

    g = torch.Generator().manual_seed(11)
    total, p = 10 ** 6, 1e-3
    pos = _bernoulli_positions(total, p, g, "cpu")
    assert binomtest(pos.numel(), total, p).pvalue > ALPHA
    assert bool((pos[1:] > pos[:-1]).all()) and int(pos.max()) < total
    # each tenth of the range gets its share
    per_tenth = torch.bincount(pos // (total // 10), minlength=10)
    assert all(binomtest(int(c), total // 10, p).pvalue > ALPHA for c in per_tenth)


def test_masks_presets_and_positions():
    assert BitFlip.fields("float32") == {"sign": [31], "exponent": list(range(23, 31)), "mantissa": list(range(23))}
    assert BitFlip.fields("bfloat16")["exponent"] == list(range(7, 15))
    assert BitFlip.fields("float16")["exponent"] == list(range(10, 15))
    assert BitFlip.fields("float64")["exponent"] == list(range(52, 63))
    assert BitFlip.mantissa_only(0.1).bits == list(range(23))
    assert BitFlip.protect(0.1, dtype="float16", sign=True, exponent=True).bits == list(range(10))
    assert BitFlip.thermometer(0.1, 0).bits == list(range(32))
    assert BitFlip.thermometer(0.1, 1).bits == list(range(31))  # all but the sign
    assert BitFlip.thermometer(0.1, 9).bits == list(range(23))  # mantissa only (seed 001 case "9")
    assert BitFlip(0.1, bit_mask=0x007FFFFF).bits == list(range(23))
    assert BitFlip(0.1, bit_mask=[3, 1, 3]).bits == [1, 3]
    assert BitFlip(0.1, bit_mask=[]).noiseless


def test_mantissa_only_never_changes_sign_or_exponent():
    w = torch.randn(5000) * 3
    r = BitFlip.mantissa_only(0.4).read(w, 4, torch.Generator().manual_seed(0))
    assert torch.equal(torch.sign(r), torch.sign(w).expand_as(r))
    assert torch.equal(torch.frexp(r).exponent, torch.frexp(w).exponent.expand_as(r))
    assert (r != w).float().mean() > 0.9  # yet the mantissa is noisy


@pytest.mark.parametrize("bad,match", [
    (dict(p01=-0.1), "p01"), (dict(p01=0.1, p10=1.5), "p10"), (dict(p01=float("nan")), "p01"),
    (dict(p01=0.1, dtype="float8"), "float8"), (dict(p01=0.1, bit_mask=[32]), r"\[32\]"),
    (dict(p01=0.1, dtype="int8", bit_mask=[8]), r"\[8\]"), (dict(p01=0.1, bit_mask=1 << 32), "0x100000000"),
    (dict(p01=0.1, bit_mask=[1.5]), r"1\.5"), (dict(p01=0.1, bit_mask=[-1]), r"-1"),
    (dict(p01=0.1, bit_mask="abc"), "abc"),
])
def test_bad_arguments_raise_value_error_naming_the_value(bad, match):
    with pytest.raises(ValueError, match=match):
        BitFlip(**bad)


def test_thermometer_rejects_out_of_range():
    with pytest.raises(ValueError, match="33"):
        BitFlip.thermometer(0.1, 33)


def test_nonfinite_values_from_exponent_flips_are_kept():
    """All exponent bits forced to 1 (p01 = 1, p10 = 0): mantissa 0 -> inf, mantissa != 0 -> NaN."""
    em = BitFlip(1.0, 0.0, bit_mask=BitFlip.fields("float32")["exponent"])
    r = em.read(torch.tensor([2.0, -2.0, 1.5]), 1)[0]
    assert r[0] == float("inf") and r[1] == -float("inf") and torch.isnan(r[2])
    # float64 storage read into float32 compute: a huge float64 becomes inf, never clamped
    em64 = BitFlip(1.0, 0.0, dtype="float64", bit_mask=[62])  # exponent MSB: 0.5 -> 2^1023, finite in float64
    assert em64.read(torch.tensor([0.5]), 1)[0, 0] == float("inf")
    assert em64.read(torch.tensor([0.5], dtype=torch.float64), 1)[0, 0] == 2.0 ** 1023


def test_read_never_modifies_its_input():
    for d in DTYPES:
        w = torch.tensor([0.5, -1.0, 2.0]) if d != "int8" else torch.tensor([5.0, -7.0, 100.0])
        ref = w.clone()
        BitFlip(0.5, dtype=d).read(w, 1)
        BitFlip(0.5, dtype=d).read(w, 3)
        assert torch.equal(w, ref), d


def test_formats_quantize_and_roundtrip():
    w = torch.tensor([0.1, -1.2345678, 3.0])
    assert torch.equal(BitFlip(0, dtype="float32").quantize(w), w)
    assert torch.equal(BitFlip(0, dtype="float16").quantize(w), w.half().float())
    assert torch.equal(BitFlip(0, dtype="bfloat16").quantize(w), w.bfloat16().float())
    for d in DTYPES:
        if d != "int8":
            x = torch.randn(100)
            assert torch.equal(from_bits(to_bits(x, d), d), x.to(DTYPES[d][0]).float())
    # noiseless reads are the stored values, shape (n, *shape)
    assert torch.equal(BitFlip(0.0).read(w, 3), w.expand(3, -1))


def test_int8_post_training_quantization():
    em = BitFlip(0.0, dtype="int8")
    w = torch.tensor([[0.5, -1.27], [0.01, 1.0]])
    s = em.fit_scale(w)
    assert s == pytest.approx(1.27 / 127)
    q = em.quantize(w / s)
    assert torch.equal(q, torch.tensor([[50.0, -127.0], [1.0, 100.0]]))
    assert em.ste_range() == (-127.5, 127.5)
    assert BitFlip(0.0).fit_scale(w) == 1.0 and BitFlip(0.0).ste_range() is None
    # a flip of bit 7 (two's-complement sign) moves by 128: 50 -> -78, -127 -> 1
    r = BitFlip(1.0, 1.0, dtype="int8", bit_mask=[7]).read(q, 1)[0]
    assert torch.equal(r, torch.tensor([[-78.0, 1.0], [-127.0, -28.0]]))


def test_int8_read_moments_match_samples():
    em = BitFlip(0.05, 0.15, dtype="int8")
    stored = torch.tensor([-127.0, -3.0, 0.0, 64.0, 127.0])
    mean, var = em.read_moments(stored)
    reads = em.read(stored, 60000, torch.Generator().manual_seed(5)).double()
    assert torch.allclose(reads.mean(0), mean.double(), atol=5 * float(var.max().sqrt()) / math.sqrt(60000))
    assert torch.allclose(reads.var(0), var.double(), rtol=0.05)
    with pytest.raises(NotImplementedError):
        BitFlip(0.1).read_moments(stored)


def test_config_roundtrip():
    em = BitFlip(1e-3, 2e-3, dtype="bfloat16", bit_mask=[0, 5, 15])
    again = error_model_from_config(em.config())
    assert again == em and again.bits == [0, 5, 15] and again.p10 == 2e-3
    assert "bfloat16" in repr(em)


def test_static_errors_frozen_per_inference_dynamic_per_read():
    """The synapse engine decides when: static = frozen until new_inference, dynamic = per call."""
    torch.manual_seed(0)
    lin = sn.NoisyLinear(64, 32, error_model=BitFlip(0.0), errors="none", reads="step")
    requantize(lin, BitFlip(0.02, dtype="int8"), errors="static", reads="step")
    x = torch.randn(4, 64)
    a, b = lin(x), lin(x)
    assert torch.equal(a, b)  # frozen within an inference
    assert not torch.equal(a[0], a[1]) or not torch.equal(a[1], a[2])  # rows draw independently
    lin.new_inference()
    assert not torch.equal(lin(x), a)
    lin.set_errors(errors="dynamic")
    assert not torch.equal(lin(x), lin(x))


def test_requantize_int8_keeps_function_and_flips_biases():
    torch.manual_seed(1)
    net = torch.nn.Sequential(torch.nn.Linear(20, 16), torch.nn.ReLU(), torch.nn.Linear(16, 5))
    x = torch.randn(8, 20)
    ref = net(x)
    conv = sn.convert(net, BitFlip(0.0, dtype="float32"), errors="none", reads="once")
    assert torch.allclose(conv(x), ref, atol=1e-6)
    requantize(conv, BitFlip(0.0, dtype="int8"))
    assert (conv(x) - ref).abs().max() < 0.05 * ref.abs().max()  # int8 rounding only
    # biases: flipping only the float32 sign bit with probability 1 negates every bias
    requantize(conv, BitFlip(0.0, dtype="float32"), errors="none")
    clean = conv(x)
    with BiasFlips(conv, BitFlip(1.0, dtype="float32", bit_mask=[31])):
        flipped = conv(x)
    # last layer's output moves by -2 b; earlier bias changes propagate through ReLU, so compare the last
    # layer alone
    last = conv[2]
    h = torch.randn(8, 16)
    with BiasFlips(last, BitFlip(1.0, dtype="float32", bit_mask=[31])):
        assert torch.allclose(last(h), last.scale * (h @ last.weight.T) - last.bias, atol=1e-6)
    assert not torch.allclose(flipped, clean)
    assert torch.allclose(conv(x), clean)  # hooks removed


def test_bias_flips_are_per_batch_row():
    lin = sn.NoisyLinear(4, 3000, errors="none", error_model=BitFlip(0.0))
    with BiasFlips(lin, BitFlip(0.3, dtype="float16")):
        y = lin(torch.zeros(2, 4))
    assert not torch.equal(y[0], y[1])


def test_flip_activations_statistics_and_int8_calibration():
    x = torch.rand(20000) + 0.5  # positive: sign bit 0, exponent bits fixed pattern
    fa = FlipActivations(BitFlip(0.01, 0.0, bit_mask=[31]))  # only 0 -> 1 on the sign bit
    y = fa(x)
    neg = int((y < 0).sum())
    assert binomtest(neg, x.numel(), 0.01).pvalue > ALPHA
    assert torch.equal(y.abs(), x)
    # gradient is straight-through
    xg = torch.rand(10, requires_grad=True)
    fa(xg).sum().backward()
    assert torch.equal(xg.grad, torch.ones(10))
    # int8 needs a scale: calibrate on data; p = 0 is plain 8-bit quantization
    net = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.ReLU())
    mods = insert_activation_flips(net, BitFlip(0.0, dtype="int8"))
    assert len(mods) == 1 and isinstance(net[1][1], FlipActivations)
    data = torch.randn(64, 8)
    with pytest.raises(ValueError, match="calibrate"):
        net(data)
    (s,) = calibrate_activations(net, [data])
    ref = torch.relu(net[0](data))
    assert s == pytest.approx(float(ref.detach().max()) / 127)
    assert (net(data) - ref).abs().max() <= s / 2 + 1e-6
    assert set_activation_flips(net, BitFlip(0.5, dtype="int8")) == 1
    assert (net(data) - ref).abs().max() > 10 * s


def test_convert_whole_model_with_flips_collapses_then_mantissa_only_does_not():
    """Sanity: exponent flips wreck a layer's output at p where mantissa-only flips barely matter."""
    torch.manual_seed(2)
    lin = sn.NoisyLinear(256, 64, error_model=BitFlip(0.0), errors="static", reads="once")
    x = torch.randn(32, 256)
    clean = lin(x).detach()
    lin.set_errors(error_model=BitFlip(1e-3))
    full = lin(x).detach()
    lin.set_errors(error_model=BitFlip.mantissa_only(1e-3))
    mant = lin(x).detach()
    err_full = (full - clean).abs().nan_to_num(float("inf")).amax(dim=1)
    err_mant = (mant - clean).abs().amax(dim=1)
    assert float(err_mant.max()) < 0.05 * float(clean.abs().max())
    assert float(err_full.median()) > 1e3 * float(err_mant.median() + 1e-12)


def _cli(argv):
    from spikenoise.cli import main

    return main(argv)


def test_bitflip_cli_runs_resumes_and_writes_outputs(tmp_path, capsys):
    pytest.importorskip("sklearn")
    out = tmp_path / "bf"
    argv = ["bitflip", "--preset", "quick", "--model", "vgg11", "--width", "0.0625", "--image-size", "8",
            "--epochs", "1", "--dtypes", "float32,int8", "--targets", "w+b+a", "--p-min", "1e-4", "--p-max", "1e-2",
            "--per-decade", "1", "--repeats", "1", "--floor-margin", "-1", "--out", str(out), "--no-progress"]
    torch.set_num_threads(1)
    try:
        assert _cli(argv) == 0
        lines = (out / "results.jsonl").read_text().splitlines()
        assert len(lines) == 2 * 3  # dtypes x probabilities
        for name in ("results.csv", "midpoints.csv", "midpoints.json", "table.md", "formats_wba.png"):
            assert (out / name).exists(), name
        table = (out / "table.md").read_text()
        assert "| int8 | all | w+b+a |" in table
        # 3 probabilities: too few to fit a midpoint, so the headline says it is not determined
        assert "targets w+b+a: not determined" in (out / "headline.txt").read_text()
        # rerun: every condition is on disk, nothing is recomputed
        assert _cli(argv) == 0
        assert (out / "results.jsonl").read_text().splitlines() == lines
    finally:
        torch.set_num_threads(2)


@pytest.mark.parametrize("depth", [11, 13, 16, 19])
def test_vgg_shapes_and_batchnorm_folding(depth):
    from spikenoise.models.vgg import VGG, fold_batchnorm

    torch.manual_seed(depth)
    n_conv = {11: 8, 13: 10, 16: 13, 19: 16}[depth]
    m = VGG(depth, num_classes=12, in_channels=1, input_size=(16, 12), width=0.0625)
    assert len([s for s in sn.synapses(m) if isinstance(s, torch.nn.Conv2d)]) == n_conv
    assert m.feature_shape == (32, 1, 1)  # a 1-pixel dimension is not pooled further
    x = torch.randn(3, 16, 12)
    m.train()
    for _ in range(3):
        m(torch.randn(8, 16, 12))  # batch norm statistics
    m.eval()
    ref = m(x)
    assert ref.shape == (3, 12)
    assert fold_batchnorm(m) == n_conv + 2
    assert not any(isinstance(mod, torch.nn.BatchNorm2d) for mod in m.modules())
    assert torch.allclose(m(x), ref, atol=1e-4, rtol=1e-4)  # same function, now weights + biases only
    with pytest.raises(ValueError, match="expects input"):
        m(torch.randn(2, 1, 9, 9))


def test_vgg_on_kws_features():
    from spikenoise.models.vgg import VGG

    m = VGG(11, num_classes=12, in_channels=1, input_size=(67, 40), width=0.0625, classifier_layers=1)
    assert m.feature_shape == (32, 2, 1)  # 67 x 40 halved 5x (40 -> 1 stops pooling that dim)
    assert m(torch.randn(2, 67, 40)).shape == (2, 12)
    with pytest.raises(ValueError, match="depth"):
        VGG(12)
    with pytest.raises(ValueError, match="width"):
        VGG(11, width=0)
