"""Bad inputs to the library side (noise models, synapses, convert): each is refused where it
enters with the right exception type and a message naming the parameter and the bad value.
Plus the NaN/inf policy, exact large spike counts and the bit-flip semantics of zero inputs and
signalling NaNs."""
import math

import numpy as np
import pytest
import torch
import torch.nn as nn
from scipy import stats

import spikenoise as sn
from spikenoise import BitFlip, MultiLevelNVM
from spikenoise.noise import DifferentialCells, GaussianVariation, binary_weights, error_model_from_config
from spikenoise.noise._tables import TABLE_MAX_N, convolution_powers
from spikenoise.noise.bitflip import from_bits, to_bits
from spikenoise.synapse import (BiasFlips, FlipActivations, InputNoise, NoisyConv2d, NoisyLinear, TiledLinear,
                                box_stats, calibrate_activations, calibrate_input_ranges, configure, convert,
                                level_settings, new_inference, programmed, requantize, synapses, tile)

NVM2 = MultiLevelNVM.noise_level(2)


def _net():
    return nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))


def _converted():
    return convert(_net(), NVM2, errors="static", reads="once")


def _nan_weight_net():
    net = _net()
    with torch.no_grad():
        net[2].weight[1, 0] = float("nan")
    return net


def _dyn(sampler="auto", **kw):
    return NoisyLinear(4, 3, error_model=NVM2, errors="dynamic", reads="spike", sampler=sampler, **kw)


# (id, call, exception type, substrings the message must contain: the parameter and the bad value)
CASES = [
    # -- error models
    ("nvm-levels-conflict", lambda: MultiLevelNVM(values=[-1, 0, 1], n_levels=8), ValueError, ["n_levels=8", "values"]),
    ("nvm-n_levels-1", lambda: MultiLevelNVM(n_levels=1), ValueError, ["n_levels", "1"]),
    ("nvm-n_levels-bool", lambda: MultiLevelNVM(n_levels=True), ValueError, ["n_levels", "True"]),
    ("nvm-n_levels-float", lambda: MultiLevelNVM(n_levels=4.5), ValueError, ["n_levels", "4.5"]),
    ("nvm-sigma-negative", lambda: MultiLevelNVM(sigma=-0.1), ValueError, ["sigma", "-0.1"]),
    ("nvm-sigma-nan", lambda: MultiLevelNVM(sigma=float("nan")), ValueError, ["sigma", "nan"]),
    ("nvm-sigma-string", lambda: MultiLevelNVM(sigma="big"), ValueError, ["sigma", "'big'"]),
    ("nvm-sigma-length", lambda: MultiLevelNVM(sigma=[0.1, 0.2]), ValueError, ["sigma", "[0.1, 0.2]"]),
    ("nvm-values-string", lambda: MultiLevelNVM(values="abc"), ValueError, ["values", "'abc'"]),
    ("nvm-values-unequal", lambda: MultiLevelNVM(values=[0, 1, 3]), ValueError, ["values", "equally spaced", "3.0"]),
    ("nvm-values-decreasing", lambda: MultiLevelNVM(values=[1, 0]), ValueError, ["values", "increasing", "[1.0, 0.0]"]),
    ("nvm-values-inf", lambda: MultiLevelNVM(values=[0, float("inf")]), ValueError, ["values", "inf"]),
    ("nvm-sigma-and-confusion", lambda: MultiLevelNVM(0.3, values=[-1, 1], confusion=[[1, 0], [0, 1]]),
     ValueError, ["sigma=0.3", "confusion"]),
    ("nvm-confusion-rows", lambda: MultiLevelNVM.from_confusion([[0.5, 0.4], [0, 1]]), ValueError,
     ["confusion", "row sums", "0.9"]),
    ("nvm-confusion-negative", lambda: MultiLevelNVM.from_confusion([[1.5, -0.5], [0, 1]]), ValueError,
     ["confusion", "-0.5"]),
    ("nvm-confusion-shape", lambda: MultiLevelNVM.from_confusion([[1.0, 0.0]]), ValueError,
     ["confusion", "(1, 2)"]),
    ("nvm-noise-level-5", lambda: MultiLevelNVM.noise_level(5), ValueError, ["noise level", "5"]),
    ("nvm-noise-level-bool", lambda: MultiLevelNVM.noise_level(True), ValueError, ["noise level", "True"]),
    ("nvm-p0-zero", lambda: MultiLevelNVM.sigma_for_p0(0.0), ValueError, ["p0", "0.0"]),
    ("nvm-p0-string", lambda: MultiLevelNVM.sigma_for_p0("x"), ValueError, ["p0", "'x'"]),
    ("bitflip-p-above-1", lambda: BitFlip(1.5), ValueError, ["p01", "1.5"]),
    ("bitflip-p10-nan", lambda: BitFlip(0.1, float("nan")), ValueError, ["p10", "nan"]),
    ("bitflip-p-bool", lambda: BitFlip(True), ValueError, ["p01", "True"]),
    ("bitflip-dtype", lambda: BitFlip(0.1, dtype="float8"), ValueError, ["dtype", "'float8'"]),
    ("bitflip-dtype-list", lambda: BitFlip(0.1, dtype=["float32"]), ValueError, ["dtype", "['float32']"]),
    ("bitflip-mask-bits", lambda: BitFlip(0.1, dtype="float16", bit_mask=[3, 16]), ValueError, ["16", "bit"]),
    ("bitflip-reads-negative", lambda: BitFlip(0.1).read(torch.ones(2), -1), ValueError, ["n", "-1"]),
    ("nvm-reads-negative", lambda: NVM2.read(torch.ones(2), -1), ValueError, ["n", "-1"]),
    ("gv-reads-float", lambda: GaussianVariation(0.1).read(torch.ones(2), 2.5), ValueError, ["n", "2.5"]),
    ("flip-bits-float-tensor", lambda: sn.noise.bitflip.flip_bits(torch.ones(3), [0], 0.1, 0.1), TypeError,
     ["bits", "float32"]),
    ("flip-bits-p", lambda: sn.noise.bitflip.flip_bits(torch.ones(3, dtype=torch.int16), [0], 0.1, -2), ValueError,
     ["p10", "-2"]),
    ("bit-error-rate-model", lambda: sn.noise.binary.bit_error_rate(BitFlip(0.1)), ValueError, ["BitFlip"]),
    ("protect-sign-flag", lambda: BitFlip.protect(0.1, sign="yes"), TypeError, ["sign", "'yes'"]),
    ("ber-negative", lambda: binary_weights(-0.1), ValueError, ["ber", "-0.1"]),
    ("ber-direction", lambda: binary_weights(0.1, p_plus_to_minus=2), ValueError, ["p_plus_to_minus", "2"]),
    ("gv-sigma-negative", lambda: GaussianVariation(-1), ValueError, ["sigma", "-1"]),
    ("gv-sigma-bool", lambda: GaussianVariation(True), ValueError, ["sigma", "True"]),
    ("gv-bits", lambda: GaussianVariation(0.1, bits=1), ValueError, ["bits", "1"]),
    ("gv-state-dependent", lambda: GaussianVariation(0.1, state_dependent="yes"), TypeError,
     ["state_dependent", "'yes'"]),
    ("dc-on-off", lambda: DifferentialCells(0.1, on_off=0.5), ValueError, ["on_off", "0.5"]),
    ("dc-on-off-string", lambda: DifferentialCells(0.1, on_off="10"), ValueError, ["on_off", "'10'"]),
    ("dc-mapping", lambda: DifferentialCells(0.1, mapping="linear"), ValueError, ["mapping", "'linear'"]),
    ("config-not-dict", lambda: error_model_from_config("multilevel_nvm"), TypeError, ["cfg", "'multilevel_nvm'"]),
    ("config-kind", lambda: error_model_from_config({"kind": "memristor"}), ValueError, ["kind", "'memristor'"]),
    ("config-missing-key", lambda: error_model_from_config({"kind": "bitflip"}), ValueError, ["cfg", "'p01'"]),
    # -- layers
    ("linear-zero-in", lambda: NoisyLinear(0, 4), ValueError, ["in_features", "0"]),
    ("linear-zero-out", lambda: NoisyLinear(4, 0), ValueError, ["out_features", "0"]),
    ("linear-float-size", lambda: NoisyLinear(4.0, 2), ValueError, ["in_features", "4.0"]),
    ("linear-bias-string", lambda: NoisyLinear(4, 2, bias="no"), TypeError, ["bias", "'no'"]),
    ("linear-learn-scale", lambda: NoisyLinear(4, 2, learn_scale=None), TypeError, ["learn_scale", "None"]),
    ("linear-errors", lambda: NoisyLinear(4, 2, errors="sometimes"), ValueError, ["errors", "'sometimes'"]),
    ("linear-reads", lambda: NoisyLinear(4, 2, reads=["spike"]), ValueError, ["reads", "['spike']"]),
    ("linear-sampler", lambda: NoisyLinear(4, 2, sampler="fast"), ValueError, ["sampler", "'fast'"]),
    ("linear-draws", lambda: NoisyLinear(4, 2, draws="chip"), ValueError, ["draws", "'chip'"]),
    ("linear-nonfinite", lambda: NoisyLinear(4, 2, nonfinite="ignore"), ValueError, ["nonfinite", "'ignore'"]),
    ("linear-error-model", lambda: NoisyLinear(4, 2, error_model="nvm"), ValueError, ["error_model", "'nvm'"]),
    ("conv-zero-out", lambda: NoisyConv2d(2, 0, 3), ValueError, ["out_channels", "0"]),
    ("conv-kernel-0", lambda: NoisyConv2d(2, 2, 0), ValueError, ["kernel_size", "0"]),
    ("conv-stride-neg", lambda: NoisyConv2d(2, 2, 3, stride=-1), ValueError, ["stride", "-1"]),
    ("conv-padding-neg", lambda: NoisyConv2d(2, 2, 3, padding=(1, -1)), ValueError, ["padding", "(1, -1)"]),
    ("bitflip-gaussian", lambda: NoisyLinear(4, 2, error_model=BitFlip(0.01), sampler="gaussian"), ValueError,
     ["sampler='gaussian'", "BitFlip", "'brute' or 'auto'"]),
    ("bitflip-exact", lambda: NoisyLinear(4, 2, error_model=BitFlip(0.01), sampler="exact"), ValueError,
     ["sampler='exact'", "BitFlip", "'brute' or 'auto'"]),
    ("input-not-tensor", lambda: NoisyLinear(4, 2)([1.0, 2.0, 3.0, 4.0]), TypeError, ["input", "list"]),
    ("input-nan", lambda: NoisyLinear(4, 2)(torch.tensor([[1.0, float("nan"), 0.0, 0.0]])), ValueError,
     ["NoisyLinear 4->2", "input", "nan"]),
    ("input-inf-conv", lambda: NoisyConv2d(1, 1, 1)(torch.full((1, 1, 2, 2), float("inf"))), ValueError,
     ["NoisyConv2d 1->1", "input", "inf"]),
    ("exact-graded-input", lambda: _dyn("exact")(torch.full((1, 4), 0.5)), ValueError,
     ["sampler='exact'", "NoisyLinear 4->3", "0.5"]),
    ("brute-huge-count", lambda: _dyn("brute")(torch.full((1, 4), 1e6)), ValueError,
     ["spike count", "1e+06", "sampler='brute'"]),
    ("pin-bad-draw", lambda: NoisyLinear(4, 2, error_model=NVM2, errors="static").pin(torch.zeros(1, 3, 3)),
     ValueError, ["draw", "(2, 4)", "(1, 3, 3)"]),
    ("pin-not-a-draw", lambda: NoisyLinear(4, 2, error_model=NVM2, errors="static").pin("chip"), ValueError,
     ["draw", "str"]),
    ("input-noise-sigma", lambda: InputNoise(-0.5), ValueError, ["sigma", "-0.5"]),
    ("tiled-input-noise", lambda: TiledLinear(4, 2, input_noise="lots"), ValueError, ["input_noise", "'lots'"]),
    ("tiled-unknown-option", lambda: TiledLinear(4, 2, adc_bitz=4), ValueError, ["adc_bitz"]),
    # -- whole-model functions
    ("convert-string", lambda: convert("x"), TypeError, ["model", "'x'"]),
    ("convert-none", lambda: convert(None), TypeError, ["model", "None"]),
    ("convert-error-model", lambda: convert(_net(), "nvm"), TypeError, ["error_model", "'nvm'"]),
    ("convert-twice", lambda: convert(_converted()), ValueError, ["already converted", "'0'", "configure"]),
    ("convert-inplace", lambda: convert(_net(), inplace="yes"), TypeError, ["inplace", "'yes'"]),
    ("convert-map-weights", lambda: convert(_net(), map_weights=1), TypeError, ["map_weights", "1"]),
    ("convert-nonfinite", lambda: convert(_net(), nonfinite="warn"), ValueError, ["nonfinite", "'warn'"]),
    ("convert-nan-weights", lambda: convert(_nan_weight_net()), ValueError, ["layer '2'", "weight", "NaN"]),
    ("convert-bitflip-gaussian", lambda: convert(_net(), BitFlip(0.1), sampler="gaussian"), ValueError,
     ["layer '0'", "sampler='gaussian'"]),
    ("configure-not-model", lambda: configure("net", errors="static"), TypeError, ["model", "'net'"]),
    ("configure-errors", lambda: configure(_converted(), errors="often"), ValueError, ["errors", "'often'"]),
    ("configure-nonfinite", lambda: configure(_converted(), nonfinite=True), ValueError, ["nonfinite", "True"]),
    ("new-inference-plain", lambda: new_inference(nn.Linear(2, 2)), ValueError, ["Linear", "no noisy synapses"]),
    ("synapses-not-model", lambda: list(synapses(42)), TypeError, ["model", "42"]),
    ("tile-error-model", lambda: tile(_net(), error_model=0.1), TypeError, ["error_model", "0.1"]),
    ("tile-reads", lambda: tile(_net(), reads="twice"), ValueError, ["reads", "'twice'"]),
    ("programmed-plain", lambda: programmed(nn.Linear(2, 2)).__enter__(), ValueError, ["Linear", "no noisy"]),
    ("programmed-seed", lambda: programmed(_converted(), seed="a").__enter__(), ValueError, ["seed", "'a'"]),
    ("calibrate-percentile", lambda: calibrate_input_ranges(tile(_net()), torch.ones(2, 4), percentile=150),
     ValueError, ["percentile", "150"]),
    ("calibrate-x", lambda: calibrate_input_ranges(tile(_net()), [1, 2]), TypeError, ["x", "list"]),
    ("box-stats-nan", lambda: box_stats([0.5, float("nan")]), ValueError, ["values", "nan"]),
    ("box-stats-empty", lambda: box_stats([]), ValueError, ["at least one value", "[]"]),
    ("level-settings-bool", lambda: level_settings(True), ValueError, ["level", "True"]),
    ("requantize-error-model", lambda: requantize(_converted(), "float16"), TypeError,
     ["error_model", "'float16'"]),
    ("requantize-plain", lambda: requantize(_net(), BitFlip(0.0)), ValueError, ["Sequential", "no noisy"]),
    ("bias-flips-model", lambda: BiasFlips(_converted(), NVM2), ValueError, ["error_model", "MultiLevelNVM"]),
    ("flip-activations-scale", lambda: FlipActivations(BitFlip(0.0, dtype="int8"), scale=-1.0), ValueError,
     ["scale", "-1.0"]),
    ("insert-flips-after", lambda: sn.synapse.insert_activation_flips(_net(), after=nn.ReLU), TypeError,
     ["after", "ReLU"]),
    ("activation-flips-model", lambda: sn.synapse.activation_flips("net"), TypeError, ["model", "'net'"]),
    ("calibrate-activations-batches", lambda: calibrate_activations(nn.Sequential(FlipActivations()), [],
                                                                    max_batches=0), ValueError, ["max_batches", "0"]),
]


@pytest.mark.parametrize("call,exc,words", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_refused_with_a_clear_message(call, exc, words):
    with pytest.raises(exc) as info:
        call()
    msg = str(info.value)
    missing = [w for w in words if w not in msg]
    assert not missing, f"message {msg!r} lacks {missing}"


def test_enough_cases():
    assert len(CASES) >= 40


# -------------------------------------------------------------------------- NaN/inf policy

def test_nan_hidden_weight_is_named_then_propagates_when_asked():
    layer = NoisyLinear(3, 2, error_model=GaussianVariation(0.1), errors="static", reads="once")
    with torch.no_grad():
        layer.weight[0, 1] = float("nan")
    with pytest.raises(ValueError, match="hidden weights contain 1 non-finite"):
        layer(torch.ones(2, 3))
    layer.set_errors(nonfinite="propagate")
    y = layer(torch.ones(2, 3))
    assert torch.isnan(y[:, 0]).all() and torch.isfinite(y[:, 1]).all()  # only the output that reads it


def test_nan_cannot_be_stored_in_a_level_cell():
    layer = NoisyLinear(3, 2, error_model=NVM2, nonfinite="propagate")
    with torch.no_grad():
        layer.weight[0, 0] = float("nan")
    with pytest.raises(ValueError, match="cannot store NaN"):
        layer(torch.ones(1, 3))


def test_converted_layers_are_named_in_errors_and_policy_travels_in_state():
    net = convert(_net(), NVM2, errors="static", reads="once")
    x = torch.ones(1, 4)
    x[0, 2] = float("inf")
    with pytest.raises(ValueError, match=r"layer '0' \(NoisyLinear 4->3\): input"):
        net(x)
    configure(net, nonfinite="propagate")
    assert not torch.isfinite(net(x)).all()
    other = convert(_net(), NVM2, errors="static", reads="once")
    other.load_state_dict(net.state_dict())
    assert [s.nonfinite for s in synapses(other)] == ["propagate", "propagate"]


def test_bitflip_models_propagate_by_default_and_others_raise():
    assert NoisyLinear(2, 2, error_model=BitFlip(0.1)).nonfinite_policy == "propagate"
    assert NoisyLinear(2, 2, error_model=NVM2).nonfinite_policy == "raise"
    assert NoisyLinear(2, 2, error_model=BitFlip(0.1), nonfinite="raise").nonfinite_policy == "raise"


# -------------------------------------------------------------------------- zero input is no read

@pytest.mark.parametrize("errors,reads,draws", [("none", "once", "row"), ("static", "once", "row"),
                                                ("static", "once", "batch"), ("dynamic", "spike", "row")])
def test_zero_input_never_reads_an_inf_or_nan_weight(errors, reads, draws):
    em = BitFlip(1e-9, dtype="float32", bit_mask=[0])  # noisy, but flips are (practically) never drawn
    layer = NoisyLinear(3, 1, bias=False, error_model=em, errors=errors, reads=reads, draws=draws, sampler="brute")
    with torch.no_grad():
        layer.weight[:] = torch.tensor([[float("inf"), float("nan"), 1.0]])
        layer.scale.fill_(1.0)
    x = torch.tensor([[0.0, 0.0, 2.0], [1.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 0.0]])
    y = layer(x)[:, 0]
    assert y[0] == 2.0 and y[1] == float("inf") and y[2] == float("-inf")
    assert torch.isnan(y[3]) and y[4] == 0.0


def test_zero_input_never_reads_inf_in_convolutions():
    layer = NoisyConv2d(1, 1, 3, padding=1, bias=False, error_model=BitFlip(0.0), errors="static", reads="once")
    with torch.no_grad():
        layer.weight.zero_()
        layer.weight[0, 0, 1, 1] = float("inf")  # centre tap: reads the pixel itself
        layer.scale.fill_(1.0)
    x = torch.zeros(1, 1, 3, 3)
    x[0, 0, 0, 0] = 1.0
    y = layer(x)[0, 0]
    assert y[0, 0] == float("inf") and (y.flatten()[1:] == 0).all()  # zero pixels and padding read nothing


# -------------------------------------------------------------------------- signalling NaNs

def test_float16_signalling_nan_keeps_its_bits_bit9_flips_binomially():
    """A stored +inf (float16 0x7C00) with mantissa flips: reads are NaN whose quiet bit (9) is set
    only by its own flip. A cast through float ops would set bit 9 on every NaN."""
    p, n = 0.2, 20_000
    em = BitFlip(p, dtype="float16", bit_mask=BitFlip.fields("float16")["mantissa"])
    g = torch.Generator().manual_seed(11)
    reads = em.read(torch.full((n,), float("inf")), 1, generator=g)[0]  # float32 compute
    bits = to_bits(reads, "float16").to(torch.int64) & 0xFFFF
    nan = (bits & 0x3FF) != 0
    assert torch.equal(torch.isnan(reads), nan)
    k = int(((bits >> 9) & 1).sum())
    assert stats.binomtest(k, n, p).pvalue > 1e-3
    # exact bit-pattern round trip of every float16 NaN, signalling or quiet, either sign
    pats = torch.tensor([0x7C01, 0x7D00, 0x7E00, 0x7FFF, 0xFC01, 0xFDFF], dtype=torch.int32).to(torch.int16)
    assert torch.equal(to_bits(from_bits(pats, "float16", torch.float32), "float16"), pats)


# -------------------------------------------------------------------------- large spike counts

def test_large_counts_match_the_exact_sum_distribution():
    """n above the table size: chi-square against the exact n-fold convolution power."""
    n, draws, lvl = 3 * TABLE_MAX_N, 40_000, 3
    sampler = NVM2.sum_sampler()
    g = torch.Generator().manual_seed(5)
    s = sampler.sample(torch.tensor(lvl), torch.full((draws,), n), g).numpy()
    assert sampler.n_max <= TABLE_MAX_N  # the tables did not grow with n
    pmfs, offs = convolution_powers(NVM2.confusion.numpy()[lvl], -lvl, n)
    pmf, off = pmfs[n], offs[n]
    values = off + np.arange(pmf.size)
    # bins of >= 50 expected counts, tails merged
    expected = pmf * draws
    edges, acc = [values[0]], 0.0
    for v, e in zip(values, expected):
        acc += e
        if acc >= 50:
            edges.append(v + 1)
            acc = 0.0
    edges[-1] = values[-1] + 1
    obs = np.histogram(s, bins=edges)[0]
    exp = np.histogram(values, bins=edges, weights=expected)[0]
    assert obs.sum() == draws
    chi2 = ((obs - exp) ** 2 / exp).sum()
    assert stats.chi2.sf(chi2, len(obs) - 1) > 1e-3


def test_a_million_spikes_is_exact_in_mean_and_variance_with_bounded_tables():
    n, draws, lvl = 10 ** 6, 20_000, 6
    sampler = NVM2.sum_sampler()
    s = sampler.sample(torch.tensor(lvl), torch.full((draws,), n),
                       torch.Generator().manual_seed(2)).to(torch.float64).numpy()
    row = NVM2.confusion.numpy()[lvl]
    d = np.arange(row.size) - lvl
    mu, var = n * (row * d).sum(), n * ((row * d * d).sum() - (row * d).sum() ** 2)
    z = (s.mean() - mu) / math.sqrt(var / draws)
    assert abs(z) < 4.5
    assert abs(s.var() / var - 1) < 4.5 * math.sqrt(2 / draws)
    assert sampler.n_max <= TABLE_MAX_N


def test_large_spike_counts_through_a_layer_are_exact_and_bounded():
    """8-bit pixel values and 1e6 spikes per input: the exact sampler, mean and variance per output."""
    torch.manual_seed(0)
    layer = NoisyLinear(16, 4, bias=False, error_model=NVM2, errors="dynamic", reads="spike", sampler="exact")
    x = torch.full((4000, 16), 10 ** 6, dtype=torch.float32)
    with torch.no_grad():
        y = layer(x) / layer.scale
        wq = layer.quantized_weight()
    idx = NVM2.level_index(wq)
    vals = NVM2.values.numpy()
    P = NVM2.confusion.numpy()
    mean_l, var_l = P @ vals, P @ vals ** 2 - (P @ vals) ** 2
    mu = torch.tensor(mean_l)[idx].sum(1) * 1e6
    var = torch.tensor(var_l)[idx].sum(1) * 1e6
    z = (y.double().mean(0) - mu) / (var / y.shape[0]).sqrt()
    assert z.abs().max() < 4.5
    assert ((y.double().var(0) / var) - 1).abs().max() < 4.5 * math.sqrt(2 / y.shape[0])
    assert NVM2.sum_sampler().n_max <= TABLE_MAX_N
    pixels = torch.randint(0, 256, (8, 16)).float()
    assert torch.isfinite(layer(pixels)).all()


# -------------------------------------------------------------------------- empty batches

@pytest.mark.parametrize("make,x,shape", [
    (lambda: NoisyConv2d(2, 3, 3, error_model=NVM2, errors="static", reads="once"), torch.zeros(0, 2, 5, 5),
     (0, 3, 3, 3)),
    (lambda: NoisyConv2d(2, 3, 3, error_model=NVM2, errors="dynamic", reads="spike"), torch.zeros(0, 2, 5, 5),
     (0, 3, 3, 3)),
    (lambda: NoisyLinear(4, 3, error_model=NVM2, errors="static"), torch.zeros(0, 4), (0, 3)),
    (lambda: NoisyLinear(4, 3, error_model=NVM2, errors="dynamic", reads="step"), torch.zeros(2, 0, 4), (2, 0, 3)),
    (lambda: TiledLinear(4, 3, error_model=DifferentialCells(0.1), errors="static"), torch.zeros(0, 4), (0, 3)),
])
def test_empty_batch_gives_an_empty_output(make, x, shape):
    layer = make()
    assert tuple(layer(x).shape) == shape
    assert tuple(layer(torch.ones(1, *x.shape[1:]) if x.shape[0] == 0 else x).shape)[1:] == shape[1:]


# -------------------------------------------------------------------------- --out of every study

def test_out_that_is_a_file_or_unwritable_is_one_line(tmp_path, monkeypatch, capsys):
    from spikenoise.cli import main
    from spikenoise.studies.scaffold import StudyError, output_folder

    f = tmp_path / "afile"
    f.write_text("x")
    for out, words in ((f, ["is a file"]), (f / "sub", ["cannot be created", str(f)])):
        assert main(["compare", "--out", str(out)]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "--out" in err[0] and all(w in err[0] for w in words), err
    monkeypatch.setattr("os.access", lambda path, mode: False)  # a read-only folder (root writes anyway)
    with pytest.raises(StudyError, match="not writable") as info:
        output_folder(tmp_path / "new")
    assert info.value.exit_code == 1 and not (tmp_path / "new").exists()
