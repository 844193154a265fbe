"""Tiled analog arrays with ADCs as a synapse layer type (seed paper 003, Fig. 1 and 2).

A layer's weight matrix ``(out, in)`` is mapped onto memory arrays of ``rows x cols`` cells
(default 256 x 64). Every signed weight takes two cells in two columns (``G+`` and ``G-``), so an
array holds ``rows`` inputs x ``cols // 2`` outputs; a layer needs ``ceil(in / rows) x
ceil(2 * out / cols)`` arrays (seed 003 Table 1). For each array and input vector:

1. The input (activation) is clipped to ``[-input_range, input_range]`` and, with
   ``input_bits``, quantized to ``2**input_bits - 1`` steps per sign (the DAC / activation
   quantization of levels 1-3). Negative inputs are applied in a second phase and subtracted.
2. Each column sums its current, in units of ``G_max * input_range``:
   ``I+_o = sum_i (x_i / input_range) G+_oi`` (``G_min`` of idle cells included).
3. Each column current is digitized by an ADC of ``adc_bits`` with input range ``[0, adc_range]``:
   ``ADC(I) = clip(floor(I / LSB + 1/2), 0, 2**adc_bits - 1) * LSB``, ``LSB = adc_range /
   (2**adc_bits - 1)`` (clipping + uniform quantization, round half up; the backward pass is
   straight-through inside the range and zero outside).
4. The partial sum of the array is ``(ADC(I+) - ADC(I-)) * input_range / dG`` (weight x input
   units), multiplied by a trainable per-array multiplier (seed 003 "S2"), and the partial sums
   of all arrays of a column group are added digitally. As every synapse:
   ``y = scale * sum + bias``.

Default ADC range 15 = the paper's 0-45 uA ADC for cells of 0.3-3 uA (15 cells at ``G_max``
with full-scale input). With ``array=None`` and ``adc_bits=None`` the layer is an ideal analog
layer (optional DAC quantization and input noise only) and uses the engine's paths.

:class:`TiledLinear` and :class:`TiledConv2d` subclass :class:`~spikenoise.synapse.NoisyLinear` /
:class:`~spikenoise.synapse.NoisyConv2d`, so ``configure``, ``new_inference``, training and
``state_dict`` behave as for every synapse (the tile options travel in the extra state).

When errors are drawn (on top of the engine's ``errors`` / ``reads``)
    ``draws="row"`` (engine default): every batch row gets its own programming (an independent
    chip per input). ``draws="batch"``: one programming shared by all rows of a call -- the
    paper's per-minibatch noise injection during training. :func:`programmed` pins one
    programming (one chip) for every call until it exits -- evaluation across programming runs
    (:func:`programming_accuracies`, 40 chips per condition by default).

Input noise (seed 004 ``sigma_te``)
    ``input_noise = s``: additive Gaussian noise of standard deviation ``s`` (input units) on the
    layer's input at every call, training or evaluation (:class:`InputNoise` is the same as a
    stand-alone module for any model).
"""
from __future__ import annotations

import contextlib
import copy
import math
from typing import Any, Iterable, Iterator, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .noise.analog import DifferentialCells, GaussianVariation
from .noise.base import ErrorModel
from .synapse import NoisyConv2d, NoisyLinear, NoisySynapse, new_inference, synapses

__all__ = ["TiledLinear", "TiledConv2d", "AnalogSynapse", "InputNoise", "ARRAY", "ADC_RANGE", "DRAWS",
           "ANALOG_OPTIONS", "adc", "dac", "tiled_matmul", "tile", "set_analog", "calibrate_input_ranges", "calibrate_adc_ranges",
           "array_count", "programmed", "programming_accuracies", "box_stats", "level_settings", "LEVELS",
           "fill_range"]

#: default array size (rows, columns) of seed 003
ARRAY = (256, 64)
#: default ADC input range in units of ``G_max * input_range`` (0-45 uA / 3 uA, seed 003 sec. 3.2)
ADC_RANGE = 15.0
DRAWS = ("row", "batch")
#: options of :func:`tile` / :meth:`AnalogSynapse.set_analog`
ANALOG_OPTIONS = ("array", "adc_bits", "adc_range", "input_bits", "input_range", "draws", "input_noise",
                  "learn_multipliers")
#: architecture-aware pipeline levels of seed 003 (Fig. 2)
LEVELS = (0, 1, 2, 3)


# ----------------------------------------------------------------------------------------------
# converters

def _round_half_up(x: torch.Tensor) -> torch.Tensor:
    return torch.floor(x + 0.5)


def adc(i: torch.Tensor, bits: int | None, full_scale: float) -> torch.Tensor:
    """Digitize column currents ``i`` (any shape): clip to ``[0, full_scale]``, round to LSB.

    ``LSB = full_scale / (2**bits - 1)``, codes ``0 .. 2**bits - 1``, round half up. Gradient:
    straight-through inside ``[0, full_scale]``, zero outside. ``bits=None``: ideal (identity).
    """
    if bits is None:
        return i
    n = 2 ** bits - 1
    lsb = full_scale / n
    ic = i.clamp(0.0, full_scale)
    q = _round_half_up(ic.detach() / lsb).clamp_(0, n) * lsb
    return ic + (q - ic).detach()


def dac(x: torch.Tensor, bits: int | None, full_scale: float | None) -> torch.Tensor:
    """Clip inputs to ``[-full_scale, full_scale]`` and quantize ``|x|`` to ``2**bits - 1`` steps.

    Straight-through gradient inside the range. ``full_scale=None``: no clipping/quantization.
    """
    if full_scale is None:
        return x
    xc = x.clamp(-full_scale, full_scale)
    if bits is None:
        return xc
    lsb = full_scale / (2 ** bits - 1)
    q = torch.sign(xc.detach()) * _round_half_up(xc.detach().abs() / lsb) * lsb
    return xc + (q - xc).detach()


def tiled_matmul(x: torch.Tensor, g_plus: torch.Tensor, g_minus: torch.Tensor, *, dg: float,
                 rows: int | None, adc_bits: int | None, adc_range: float, input_range: float,
                 multipliers: torch.Tensor | None = None, probe: list | None = None) -> torch.Tensor:
    """Partial sums per array, digitized per column, summed digitally.

    Args:
        x: ``(B, P, K)`` inputs, ``>= 0``, already within ``[0, input_range]`` (P: positions).
        g_plus, g_minus: ``(n, O, K)`` conductances in units of ``G_max``; ``n`` is 1 (shared
            by the batch) or B (one programming per row).
        dg: ``G_max - G_min`` in units of ``G_max`` (weight = (G+ - G-) / dg).
        rows: rows per array (None: one array spans all K inputs).
        adc_bits, adc_range: the ADC (bits None: ideal).
        input_range: full-scale input (inputs are applied as ``x / input_range``).
        multipliers: ``(R, O)`` per-array multipliers (R = number of row tiles) or None.
        probe: if a list, the column currents ``(B, P, R, 2O)`` before the ADC are appended.

    Returns:
        ``(B, P, O)`` = ``sum_r m_r * (ADC(I+_r) - ADC(I-_r)) * input_range / dg``.
    """
    B, P, K = x.shape
    n, O, K2 = g_plus.shape
    if K2 != K or g_minus.shape != g_plus.shape:
        raise ValueError(f"inputs have {K} features but conductances have shape {tuple(g_plus.shape)}")
    if n not in (1, B):
        raise ValueError(f"conductances hold {n} programmings for a batch of {B}")
    r = K if rows is None else int(rows)
    R = -(-K // r)
    pad = R * r - K
    xs = x / input_range
    if pad:
        xs = F.pad(xs, (0, pad))
        g_plus = F.pad(g_plus, (0, pad))
        g_minus = F.pad(g_minus, (0, pad))
    xs = xs.reshape(B, P, R, r)
    gp = g_plus.reshape(n, O, R, r)
    gm = g_minus.reshape(n, O, R, r)
    if n == 1:
        ip = torch.einsum("bprk,ork->bpro", xs, gp[0])
        im = torch.einsum("bprk,ork->bpro", xs, gm[0])
    else:
        ip = torch.einsum("bprk,bork->bpro", xs, gp)
        im = torch.einsum("bprk,bork->bpro", xs, gm)
    if probe is not None:
        probe.append(torch.cat([ip, im], dim=-1).detach())
    ps = (adc(ip, adc_bits, adc_range) - adc(im, adc_bits, adc_range)) * (input_range / dg)
    if multipliers is not None:
        ps = ps * multipliers
    return ps.sum(dim=2)


def array_count(in_features: int, out_features: int, array: tuple[int, int] | None = ARRAY) -> tuple[int, int]:
    """``(row tiles, column tiles)`` for a weight ``(out, in)``, two columns per weight."""
    if array is None:
        return 1, 1
    rows, cols = array
    return -(-in_features // rows), -(-2 * out_features // cols)


def _noise_tensor(sigma: float, x: torch.Tensor) -> torch.Tensor:
    return x + sigma * torch.randn_like(x)


class InputNoise(nn.Module):
    """Additive Gaussian noise ``x + sigma * N(0, 1)`` on every call (seed 004 ``sigma_te``).

    Active in training and evaluation (it models noisy signals, not a regularizer); drawn fresh
    per element at every call. ``sigma`` is in the input's own units.
    """

    def __init__(self, sigma: float = 0.0):
        super().__init__()
        self.sigma = float(sigma)
        if not self.sigma >= 0:
            raise ValueError(f"sigma must be >= 0, got {sigma!r}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _noise_tensor(self.sigma, x) if self.sigma > 0 else x

    def extra_repr(self) -> str:
        return f"sigma={self.sigma:g}, fresh draw per element at every call"


# ----------------------------------------------------------------------------------------------
# the layer mixin

def _check_array(array) -> tuple[int, int] | None:
    if array is None:
        return None
    try:
        rows, cols = (int(a) for a in array)
    except (TypeError, ValueError):
        raise ValueError(f"array must be (rows, columns) or None, got {array!r}") from None
    if rows < 1 or cols < 2 or cols % 2:
        raise ValueError(f"array needs rows >= 1 and an even number of columns >= 2, got {array!r}")
    return rows, cols


def _check_bits(name: str, bits) -> int | None:
    if bits is None:
        return None
    if isinstance(bits, bool) or not isinstance(bits, int) or not 1 <= bits <= 24:
        raise ValueError(f"{name} must be None or an integer in [1, 24], got {bits!r}")
    return bits


def _check_positive(name: str, v, allow_none: bool = False) -> float | None:
    if v is None and allow_none:
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a positive number, got {v!r}") from None
    if not (f > 0 and math.isfinite(f)):
        raise ValueError(f"{name} must be a positive number, got {v!r}")
    return f


class AnalogSynapse(NoisySynapse):
    """Tile / ADC / DAC / input-noise state shared by :class:`TiledLinear` and :class:`TiledConv2d`."""

    array: tuple[int, int] | None
    adc_bits: int | None
    adc_range: float
    input_bits: int | None
    input_range: float | None
    draws: str
    input_noise: float

    def _init_analog(self, array, adc_bits, adc_range, input_bits, input_range, draws, input_noise,
                     learn_multipliers) -> None:
        self.array = None
        self.multipliers = nn.Parameter(torch.ones(1, 1), requires_grad=False)
        self._draw: dict[str, torch.Tensor] | None = None
        self._pinned: dict[str, torch.Tensor] | None = None
        self._probe: list | None = None  # column currents are collected here when a list
        self.set_analog(array=array, adc_bits=adc_bits, adc_range=adc_range, input_bits=input_bits,
                        input_range=input_range, draws=draws, input_noise=input_noise,
                        learn_multipliers=learn_multipliers)

    # -- configuration ---------------------------------------------------------------------
    @property
    def _in_out(self) -> tuple[int, int]:
        w = self.weight  # type: ignore[attr-defined]
        return w[0].numel(), w.shape[0]

    def set_analog(self, **options: Any) -> None:
        """Change tile options (names in :data:`ANALOG_OPTIONS`); starts a new inference.

        Changing ``array`` re-creates the per-array multipliers (at 1): build the optimizer after.
        """
        bad = set(options) - set(ANALOG_OPTIONS)
        if bad:
            raise ValueError(f"unknown analog option(s) {sorted(bad)}; known: {ANALOG_OPTIONS}")
        if "array" in options:
            self.array = _check_array(options["array"])
            k, o = self._in_out
            R, C = array_count(k, o, self.array)
            learn = bool(options.get("learn_multipliers", self.multipliers.requires_grad))
            self.multipliers = nn.Parameter(torch.ones(R, C, device=self.weight.device,  # type: ignore[attr-defined]
                                                       dtype=self.weight.dtype), requires_grad=learn)
        if "adc_bits" in options:
            self.adc_bits = _check_bits("adc_bits", options["adc_bits"])
        if "adc_range" in options:
            self.adc_range = _check_positive("adc_range", options["adc_range"])  # type: ignore[assignment]
        if "input_bits" in options:
            self.input_bits = _check_bits("input_bits", options["input_bits"])
        if "input_range" in options:
            self.input_range = _check_positive("input_range", options["input_range"], allow_none=True)
        if "draws" in options:
            if options["draws"] not in DRAWS:
                raise ValueError(f"draws must be one of {DRAWS}, got {options['draws']!r}")
            self.draws = options["draws"]
        if "input_noise" in options:
            s = float(options["input_noise"])
            if not s >= 0:
                raise ValueError(f"input_noise must be >= 0, got {options['input_noise']!r}")
            self.input_noise = s
        if "learn_multipliers" in options:
            self.multipliers.requires_grad_(bool(options["learn_multipliers"]))
        if self.input_bits is not None and self.input_range is None:
            raise ValueError("input_bits needs an input_range (the DAC full scale)")
        if (self.adc_bits is not None or self.array is not None) and self.input_range is None:
            raise ValueError("analog arrays need an input_range (the full-scale input of the array)")
        if not self.ideal and getattr(self, "groups", 1) != 1:
            raise ValueError("tiled arrays / ADC support groups=1 convolutions only")
        self.new_inference()

    def analog_options(self) -> dict[str, Any]:
        """Current tile options (JSON-serialisable)."""
        return {"array": None if self.array is None else list(self.array), "adc_bits": self.adc_bits,
                "adc_range": self.adc_range, "input_bits": self.input_bits, "input_range": self.input_range,
                "draws": self.draws, "input_noise": self.input_noise,
                "learn_multipliers": bool(self.multipliers.requires_grad)}

    @property
    def ideal(self) -> bool:
        """No arrays and no ADC: an ideal analog dot product (DAC and input noise still apply)."""
        return self.array is None and self.adc_bits is None and self._probe is None

    def get_extra_state(self) -> dict[str, Any]:
        state = super().get_extra_state()
        state["analog"] = self.analog_options()
        return state

    def set_extra_state(self, state: dict[str, Any]) -> None:
        super().set_extra_state(state)
        opts = dict(state.get("analog", {}))
        arr = opts.pop("array", None)
        arr = None if arr is None else tuple(arr)
        if arr != self.array:
            # torch loads parameters before the extra state: keep loaded multipliers if they fit
            loaded = self.multipliers.detach().clone()
            self.set_analog(array=arr)
            if loaded.shape == self.multipliers.shape:
                with torch.no_grad():
                    self.multipliers.copy_(loaded)
        self.set_analog(**opts)

    def analog_repr(self) -> str:
        k, o = self._in_out
        R, C = array_count(k, o, self.array)
        arr = "ideal (no arrays)" if self.array is None else f"{R}x{C} arrays of {self.array[0]}x{self.array[1]}"
        adc_ = "ideal ADC" if self.adc_bits is None else f"{self.adc_bits}-bit ADC [0, {self.adc_range:g}]"
        dac_ = ("no DAC" if self.input_range is None else
                f"inputs clipped to +-{self.input_range:g}" + ("" if self.input_bits is None else
                                                               f", {self.input_bits}-bit"))
        noise = f", input noise {self.input_noise:g}" if self.input_noise else ""
        pin = ", programmed chip pinned" if self._pinned is not None else ""
        return f"{arr}, {adc_}, {dac_}, draws={self.draws!r}{noise}{pin}"

    def when_drawn(self) -> str:
        if self._pinned is not None:
            return "one programming (chip) pinned for every call until programmed() exits"
        base = super().when_drawn()
        if self.draws == "batch" and base != "no errors":
            return base.replace("per batch row", "shared by the whole batch")
        return base

    # -- state -----------------------------------------------------------------------------
    def new_inference(self) -> None:
        super().new_inference()
        self._draw = None

    # -- computation helpers ---------------------------------------------------------------
    def _prepare_input(self, x: torch.Tensor) -> torch.Tensor:
        if self.input_noise > 0:
            x = _noise_tensor(self.input_noise, x)
        return dac(x, self.input_bits, self.input_range)

    def _cellwise(self) -> bool:
        return isinstance(self.error_model, DifferentialCells)

    def _sample(self, wq: torch.Tensor, n: int, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """Programming errors (detached) for ``n`` chips, ``(n, *W.shape)`` each."""
        em = self.error_model
        w = wq.detach()
        with torch.no_grad():
            if isinstance(em, DifferentialCells):
                gp0, gm0 = em.cells(w)
                gp, gm = em.read_cells(w, n, generator)
                return {"p": gp - gp0, "m": gm - gm0}
            return {"w": em.read(w, n, generator) - w}

    def _errors_for(self, wq: torch.Tensor, batch: int) -> dict[str, torch.Tensor] | None:
        """The programming errors this call uses, or None (error-free)."""
        if self._pinned is not None:
            return self._pinned
        mode = self._mode()
        if mode == "clean":
            return None
        if mode == "per_spike":
            raise ValueError(f"{type(self).__name__} with arrays/ADC or draws='batch' draws per call, not per "
                             "spike; use reads='step' (or 'once'), or errors='static'")
        n = batch if self.draws == "row" else 1
        if mode == "per_row":
            return self._sample(wq, n)
        if self._draw is None:
            self._draw = self._sample(wq, n)
        else:
            have = next(iter(self._draw.values())).shape[0]
            if have != n:
                raise ValueError(
                    f"{type(self).__name__}: static errors were drawn for a batch of {have} but this read has "
                    f"batch {batch}; call spikenoise.new_inference(model) between inferences")
        return self._draw

    def _analog_mm(self, x: torch.Tensor, wq2: torch.Tensor, errs: dict[str, torch.Tensor] | None) -> torch.Tensor:
        """``(B, P, K)`` inputs times the ``(O, K)`` stored weights with errors -> ``(B, P, O)``."""
        O = wq2.shape[0]
        em = self.error_model
        if self.ideal:
            w = wq2.unsqueeze(0)
            if errs is not None:
                e = errs["w"] if "w" in errs else (errs["p"] - errs["m"]) / em.dg  # type: ignore[attr-defined]
                w = w + e.reshape(e.shape[0], O, -1)
            return torch.einsum("bpk,nok->bpo", x, w) if w.shape[0] == 1 else torch.einsum("bpk,bok->bpo", x, w)
        if isinstance(em, DifferentialCells):
            gp, gm = em.cells(wq2)
            gp, gm, dg = gp.unsqueeze(0), gm.unsqueeze(0), em.dg
            if errs is not None:
                gp = gp + errs["p"].reshape(errs["p"].shape[0], O, -1)
                gm = gm + errs["m"].reshape(errs["m"].shape[0], O, -1)
        else:
            # any other error model: the signed (read) weight on two ideal cells (G_min = 0)
            w = wq2.unsqueeze(0)
            if errs is not None:
                w = w + errs["w"].reshape(errs["w"].shape[0], O, -1)
            gp, gm, dg = w.clamp_min(0), (-w).clamp_min(0), 1.0
        mult = None
        if self.array is not None or self.adc_bits is not None:
            per = O if self.array is None else self.array[1] // 2
            mult = self.multipliers.repeat_interleave(per, dim=1)[:, :O]
        rows = None if self.array is None else self.array[0]
        assert self.input_range is not None
        kw = dict(dg=dg, rows=rows, adc_bits=self.adc_bits, adc_range=self.adc_range,
                  input_range=self.input_range, multipliers=mult, probe=self._probe)
        y = tiled_matmul(x.clamp_min(0), gp, gm, **kw)
        if bool((x < 0).any()):
            y = y - tiled_matmul((-x).clamp_min(0), gp, gm, **kw)  # second phase: negative inputs
        return y

    def _use_engine(self) -> bool:
        return self.ideal and self.draws == "row" and self._pinned is None

    # -- programming (chips) ---------------------------------------------------------------
    def program(self, generator: torch.Generator | None = None) -> None:
        """Pin one programming (one chip) for every later call, until :meth:`unprogram`."""
        if self.errors == "none" or self.error_model.noiseless:
            self._pinned = None
            return
        if self._mode() != "frozen":
            raise ValueError("programming runs need static errors (errors='static' or reads='once'), "
                             f"got errors={self.errors!r}, reads={self.reads!r}")
        wq = self.quantized_weight()
        self._pinned = self._sample(wq, 1, _generator_on(generator, wq.device))

    def unprogram(self) -> None:
        self._pinned = None
        self.new_inference()


class TiledLinear(AnalogSynapse, NoisyLinear):
    """``NoisyLinear`` on tiled analog arrays with ADCs (module docstring).

    Args:
        in_features, out_features, bias: as ``nn.Linear``.
        error_model: default ``DifferentialCells()`` (error-free, on/off 10, 8-bit targets).
        errors, reads, sampler, learn_scale: as :class:`~spikenoise.synapse.NoisyLinear`
            (default ``reads="once"``: programming variation is static).
        array: ``(rows, cols)`` per array, or None (one ideal array, no tiling).
        adc_bits: ADC resolution (None: no ADC); adc_range: ADC full scale in ``G_max * input_range``.
        input_bits: DAC / activation quantization (None: none); input_range: full-scale input
            (None: no clipping, only with ``array=None, adc_bits=None``).
        draws: ``"row"`` or ``"batch"`` (module docstring).
        input_noise: standard deviation of Gaussian noise added to the input at every call.
        learn_multipliers: train the per-array multipliers.

    Shapes: input ``(B, in)`` or ``(B, *, in)`` -> ``(B, out)`` / ``(B, *, out)``.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, *,
                 error_model: ErrorModel | None = None, errors: str = "none", reads: str = "once",
                 sampler: str = "auto", learn_scale: bool = True, array: Sequence[int] | None = ARRAY,
                 adc_bits: int | None = 8, adc_range: float = ADC_RANGE, input_bits: int | None = 8,
                 input_range: float | None = 1.0, draws: str = "row", input_noise: float = 0.0,
                 learn_multipliers: bool = True, device=None, dtype=None):
        NoisyLinear.__init__(self, in_features, out_features, bias,
                             error_model=DifferentialCells() if error_model is None else error_model,
                             errors=errors, reads=reads, sampler=sampler, learn_scale=learn_scale,
                             device=device, dtype=dtype)
        self._init_analog(array, adc_bits, adc_range, input_bits, input_range, draws, input_noise,
                          learn_multipliers)

    def extra_repr(self) -> str:
        return f"{nn.Linear.extra_repr(self)}, {self.analog_repr()}, {self.synapse_repr()}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() < 1 or x.shape[-1] != self.in_features:
            raise ValueError(f"TiledLinear expects input (..., {self.in_features}), got shape {tuple(x.shape)}")
        x = self._prepare_input(x)
        if self._use_engine():
            return NoisyLinear.forward(self, x)
        if x.dim() == 1:
            return self.forward_prepared(x.unsqueeze(0)).squeeze(0)
        return self.forward_prepared(x)

    def forward_prepared(self, x: torch.Tensor) -> torch.Tensor:
        """Forward of an input that already went through input noise and DAC (``(B, *, in)``)."""
        wq = self.quantized_weight()
        B = x.shape[0]
        errs = self._errors_for(wq, B)
        y = self._analog_mm(x.reshape(B, -1, self.in_features), wq, errs)
        return self._finish(y.reshape(*x.shape[:-1], self.out_features))


class TiledConv2d(AnalogSynapse, NoisyConv2d):
    """``NoisyConv2d`` on tiled analog arrays via unfold: each output position is one array read.

    The kernel ``(C_out, C_in, kh, kw)`` is a ``(C_out, C_in*kh*kw)`` matrix on the arrays
    (seed 003 Table 1: "row vector length" = ``C_in*kh*kw``). Options as :class:`TiledLinear`;
    arrays/ADC need ``groups=1``. Shapes: ``(B, C_in, H, W)`` -> ``(B, C_out, H', W')``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, dilation=1,
                 groups: int = 1, bias: bool = True, *, error_model: ErrorModel | None = None,
                 errors: str = "none", reads: str = "once", sampler: str = "auto", learn_scale: bool = True,
                 array: Sequence[int] | None = ARRAY, adc_bits: int | None = 8, adc_range: float = ADC_RANGE,
                 input_bits: int | None = 8, input_range: float | None = 1.0, draws: str = "row",
                 input_noise: float = 0.0, learn_multipliers: bool = True, device=None, dtype=None):
        NoisyConv2d.__init__(self, in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
                             error_model=DifferentialCells() if error_model is None else error_model,
                             errors=errors, reads=reads, sampler=sampler, learn_scale=learn_scale,
                             device=device, dtype=dtype)
        self._init_analog(array, adc_bits, adc_range, input_bits, input_range, draws, input_noise,
                          learn_multipliers)

    def extra_repr(self) -> str:
        return f"{nn.Conv2d.extra_repr(self)}, {self.analog_repr()}, {self.synapse_repr()}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"TiledConv2d expects input (B, {self.in_channels}, H, W), got shape {tuple(x.shape)}")
        x = self._prepare_input(x)
        if self._use_engine():
            return NoisyConv2d.forward(self, x)
        wq = self.quantized_weight()
        errs = self._errors_for(wq, x.shape[0])
        if self.ideal:
            w = wq.unsqueeze(0)
            if errs is not None:
                e = errs["w"] if "w" in errs else (errs["p"] - errs["m"]) / self.error_model.dg  # type: ignore[attr-defined]
                w = w + e
            return self._finish(self._conv_n(x, w))
        if self.groups != 1:
            raise ValueError("TiledConv2d supports groups=1 only with arrays or an ADC")
        em = self.error_model
        if isinstance(em, DifferentialCells):
            gp, gm = em.cells(wq)
            gp, gm, dg = gp.unsqueeze(0), gm.unsqueeze(0), em.dg
            if errs is not None:
                gp, gm = gp + errs["p"], gm + errs["m"]
        else:
            w = wq.unsqueeze(0) if errs is None else wq.unsqueeze(0) + errs["w"]
            gp, gm, dg = w.clamp_min(0), (-w).clamp_min(0), 1.0
        y = self._tiled_conv(x.clamp_min(0), gp, gm, dg)
        if bool((x < 0).any()):
            y = y - self._tiled_conv((-x).clamp_min(0), gp, gm, dg)  # second phase: negative inputs
        return self._finish(y)

    def _conv_n(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """Convolution with ``n`` kernels ``w`` ``(n, O', C', kh, kw)``: shared (n=1) or one per row."""
        if w.shape[0] == 1:
            return self._conv(x, w[0])
        return self._per_row_conv(x, w)

    def _tiled_conv(self, x: torch.Tensor, gp: torch.Tensor, gm: torch.Tensor, dg: float) -> torch.Tensor:
        """Digitized partial sums of non-negative inputs ``x``; conductances ``(n, O, C, kh, kw)``.

        A row tile holds a contiguous range of the ``C*kh*kw`` unfolded rows (channel-major, as
        ``F.unfold``); its column currents are one convolution over the channels it touches with
        the rows outside the tile masked out -- the same sums as unfold + matmul, without the
        unfolded input in memory.
        """
        assert self.input_range is not None
        O, C, kh, kw = self.weight.shape
        khw = kh * kw
        K = C * khw
        rows = K if self.array is None else self.array[0]
        R = -(-K // rows)
        xs = x / self.input_range
        g = torch.cat([gp, gm], dim=1)  # (n, 2O, C, kh, kw): both columns in one convolution
        currents = []
        for r in range(R):
            k0, k1 = r * rows, min(K, (r + 1) * rows)
            c0, c1 = k0 // khw, (k1 - 1) // khw + 1
            mask = torch.zeros(K, dtype=g.dtype, device=g.device)
            mask[k0:k1] = 1.0
            mask = mask.reshape(C, kh, kw)[c0:c1]
            currents.append(self._conv_n(xs[:, c0:c1], g[:, :, c0:c1] * mask))
        i = torch.stack(currents, dim=1)  # (B, R, 2O, Ho, Wo)
        if self._probe is not None:
            self._probe.append(i.detach())
        i = adc(i, self.adc_bits, self.adc_range)
        ps = (i[:, :, :O] - i[:, :, O:]) * (self.input_range / dg)
        per = O if self.array is None else self.array[1] // 2
        mult = self.multipliers.repeat_interleave(per, dim=1)[:, :O]  # (R, O)
        return (ps * mult.view(1, R, O, 1, 1)).sum(dim=1)


# ----------------------------------------------------------------------------------------------
# whole-model helpers

def _analog_layers(model: nn.Module) -> Iterator[AnalogSynapse]:
    for m in model.modules():
        if isinstance(m, AnalogSynapse):
            yield m


def _hook(module: nn.Module, args: Any) -> None:
    new_inference(module)


def tile(model: nn.Module, error_model: ErrorModel | None = None, *, errors: str | None = None,
         reads: str | None = None, inplace: bool = False, **analog: Any) -> nn.Module:
    """Put every synapse of ``model`` on tiled analog arrays.

    * ``nn.Linear`` / ``nn.Conv2d`` become :class:`TiledLinear` / :class:`TiledConv2d` with their
      weights mapped as :func:`spikenoise.convert` does (hidden ``w / s``, ``scale = s``,
      ``s = error_model.fit_scale(w)``).
    * ``NoisyLinear`` / ``NoisyConv2d`` become tiled layers with the same hidden weights, bias,
      scale and error options.
    * Tiled layers get the given options (:meth:`AnalogSynapse.set_analog`).

    Args:
        error_model: error model of every layer (None: keep; plain layers get ``DifferentialCells()``).
        errors, reads: None keeps each synapse's value (plain layers: ``"none"``, ``"once"``).
        inplace: modify ``model`` itself instead of a deep copy.
        **analog: options of :data:`ANALOG_OPTIONS`; left out: keep (tiled layers) or the
            :class:`TiledLinear` defaults (others).

    A model that had no synapses gets a forward pre-hook: every call is one inference.
    """
    bad = set(analog) - set(ANALOG_OPTIONS)
    if bad:
        raise ValueError(f"unknown analog option(s) {sorted(bad)}; known: {ANALOG_OPTIONS}")
    had_synapses = any(True for _ in synapses(model))
    if not inplace:
        model = copy.deepcopy(model)

    def make(old: nn.Module) -> nn.Module:
        noisy = isinstance(old, NoisySynapse)
        em = error_model or (old.error_model if noisy else DifferentialCells())  # type: ignore[attr-defined]
        kw: dict[str, Any] = dict(error_model=em,
                                  errors=errors or (old.errors if noisy else "none"),  # type: ignore[attr-defined]
                                  reads=reads or (old.reads if noisy else "once"),  # type: ignore[attr-defined]
                                  sampler=old.sampler if noisy else "auto",  # type: ignore[attr-defined]
                                  learn_scale=bool(old.scale.requires_grad) if noisy else True,  # type: ignore[attr-defined]
                                  device=old.weight.device, dtype=old.weight.dtype, **analog)
        if isinstance(old, nn.Conv2d):
            if old.padding_mode != "zeros" or isinstance(old.padding, str):
                raise ValueError(f"cannot tile {old}: only numeric zero padding is supported")
            new: nn.Module = TiledConv2d(old.in_channels, old.out_channels, old.kernel_size, old.stride,
                                         old.padding, old.dilation, old.groups, old.bias is not None, **kw)
        else:
            new = TiledLinear(old.in_features, old.out_features, old.bias is not None, **kw)  # type: ignore[arg-type]
        with torch.no_grad():
            if noisy:
                new.weight.copy_(old.weight)
                new.scale.copy_(old.scale)  # type: ignore[attr-defined]
            else:
                s = em.fit_scale(old.weight)
                new.weight.copy_(old.weight / s)
                new.scale.fill_(s)  # type: ignore[attr-defined]
            if old.bias is not None:
                new.bias.copy_(old.bias)
        new.train(old.training)
        return new

    def walk(parent: nn.Module) -> None:
        for name, child in list(parent.named_children()):
            if isinstance(child, AnalogSynapse):
                child.set_analog(**analog)
                if error_model is not None or errors is not None or reads is not None:
                    child.set_errors(errors=errors, reads=reads, error_model=error_model)
            elif type(child) in (nn.Linear, nn.Conv2d, NoisyLinear, NoisyConv2d):
                setattr(parent, name, make(child))
            else:
                walk(child)

    if type(model) in (nn.Linear, nn.Conv2d, NoisyLinear, NoisyConv2d):
        model = make(model)
    elif isinstance(model, AnalogSynapse):
        walk(nn.ModuleList([model]))
    else:
        walk(model)
    if not any(True for _ in _analog_layers(model)):
        raise ValueError(f"{type(model).__name__} has no linear or conv layer to tile")
    if not had_synapses and not getattr(model, "_spikenoise_hooked", False):
        model.register_forward_pre_hook(_hook)
        model._spikenoise_hooked = True  # type: ignore[assignment]
    return model


def set_analog(model: nn.Module, **options: Any) -> nn.Module:
    """Set tile options on every tiled layer of ``model`` (see :data:`ANALOG_OPTIONS`)."""
    found = False
    for layer in _analog_layers(model):
        layer.set_analog(**options)
        found = True
    if not found:
        raise ValueError(f"{type(model).__name__} has no tiled layers; use spikenoise.tiles.tile first")
    return model


@torch.no_grad()
def fill_range(model: nn.Module) -> nn.Module:
    """Rescale every synapse so its largest ``|hidden weight|`` sits at the top of the range (1).

    ``hidden /= m`` and ``scale *= m`` with ``m = max|hidden|`` (clipped to the STE range), as
    :func:`spikenoise.convert` maps float weights: relative variation (``sigma`` of
    :class:`GaussianVariation`) is then relative to each layer's largest weight, as in CrossSim.
    Exact for unquantized, ideal layers; with arrays/ADC the analog currents change.
    """
    for s in synapses(model):
        w = s.weight  # type: ignore[attr-defined]
        rng = s.error_model.ste_range()
        wc = w if rng is None else w.clamp(rng[0], rng[1])
        m = float(wc.abs().max()) if w.numel() else 0.0
        if m > 0:
            w.copy_(wc / m)
            s.scale.mul_(m)  # type: ignore[attr-defined]
        s.new_inference()
    return model


@torch.no_grad()
def calibrate_input_ranges(model: nn.Module, x: torch.Tensor, percentile: float = 99.9,
                           max_samples: int = 2 ** 20) -> list[float]:
    """Set every tiled layer's ``input_range`` to a percentile of ``|input|`` on batch ``x``.

    Runs ``model(x)`` once error-free, without DAC clipping and without input noise (so each
    layer sees the activations it was trained on). Zero inputs are left out of the percentile
    (after ReLU most are zero). Returns the ranges in module order. Units: the layer's input.
    """
    layers = list(_analog_layers(model))
    if not layers:
        raise ValueError(f"{type(model).__name__} has no tiled layers")
    saved = [(l.errors, l.input_range, l.input_bits, l.input_noise, l.array, l.adc_bits) for l in layers]
    found: dict[int, float] = {}
    gen = torch.Generator().manual_seed(0)

    def grab(i: int):
        def hook(mod: nn.Module, args: Any) -> None:
            a = args[0].detach().abs().flatten()
            a = a[a > 0]
            if a.numel() > max_samples:
                a = a[torch.randperm(a.numel(), generator=gen)[:max_samples]]
            v = float(torch.quantile(a.float(), percentile / 100.0)) if a.numel() else 1.0
            found[i] = max(found.get(i, 0.0), v)
        return hook

    handles = [l.register_forward_pre_hook(grab(i)) for i, l in enumerate(layers)]  # type: ignore[attr-defined]
    was_training = model.training
    try:
        for l in layers:
            l.errors = "none"
            l.input_bits = None
            l.input_noise = 0.0
            l.array = None
            l.adc_bits = None
            l.input_range = None
        model.eval()
        model(x)
    finally:
        for h in handles:
            h.remove()
        for l, (e, r, b, s, a, ab) in zip(layers, saved):
            l.errors, l.input_range, l.input_bits, l.input_noise, l.array, l.adc_bits = e, r, b, s, a, ab
        model.train(was_training)
    ranges = []
    for i, l in enumerate(layers):
        l.set_analog(input_range=found.get(i, 1.0) or 1.0)
        ranges.append(l.input_range)
    return ranges  # type: ignore[return-value]


@torch.no_grad()
def calibrate_adc_ranges(model: nn.Module, x: torch.Tensor, percentile: float = 99.9,
                         max_samples: int = 2 ** 20) -> list[float | None]:
    """Set every ADC's full scale to a percentile of the column currents on batch ``x``.

    The per-layer ADC reference as many IMC designs set it (seed 003 instead fixes 0-45 uA =
    15 ``G_max`` for the whole system: with dense activations that saturates, see the study).
    Runs ``model(x)`` once error-free with ideal ADCs (arrays, DAC and ``G_min`` as configured);
    currents of both columns (``G+`` and ``G-``), zeros left out. Returns the new ranges in module
    order (None for layers without ADC). Units: ``G_max * input_range``.
    """
    layers = list(_analog_layers(model))
    saved = [(l.errors, l.adc_bits, l.input_noise) for l in layers]
    was_training = model.training
    try:
        for l in layers:
            if l.adc_bits is not None:
                l._probe = []
            l.errors, l.adc_bits, l.input_noise = "none", None, 0.0
        model.eval()
        model(x)
    finally:
        probes = [l._probe for l in layers]
        for l, (e, b, s) in zip(layers, saved):
            l.errors, l.adc_bits, l.input_noise = e, b, s
            l._probe = None
        model.train(was_training)
    gen = torch.Generator().manual_seed(0)
    out: list[float | None] = []
    for l, pr in zip(layers, probes):
        if pr is None:
            out.append(None)
            continue
        a = torch.cat([p.flatten() for p in pr]) if pr else torch.zeros(0)
        a = a[a > 0]
        if a.numel() > max_samples:
            a = a[torch.randperm(a.numel(), generator=gen)[:max_samples]]
        v = float(torch.quantile(a.float(), percentile / 100.0)) if a.numel() else ADC_RANGE
        l.set_analog(adc_range=v)
        out.append(v)
    return out


# ----------------------------------------------------------------------------------------------
# programming runs

def _generator_on(generator: torch.Generator | None, device: torch.device) -> torch.Generator | None:
    """``generator`` if it lives on ``device``, else a generator there seeded from it."""
    if generator is None or generator.device == device:
        return generator
    g = torch.Generator(device=device)
    g.manual_seed(int(torch.randint(2 ** 62, (1,), generator=generator)))
    return g


@contextlib.contextmanager
def programmed(model: nn.Module, seed: int | None = None,
               generator: torch.Generator | None = None) -> Iterator[nn.Module]:
    """Program one chip: every noisy synapse keeps one draw of its errors for every call inside.

    Unlike ``errors="static"`` (a draw per inference and batch row), all inputs of all calls in
    the block see the same programmed weights, as a physical chip would. Works for tiled layers
    natively and for any other :class:`~spikenoise.synapse.NoisySynapse` (its static draw is
    pinned and shared by the batch). Layers with ``errors="none"`` or a noiseless error model
    stay error-free. Needs static errors elsewhere.

    Args:
        seed: seeds the programming (``torch.Generator``); or pass ``generator``.
    """
    if generator is None:
        generator = torch.Generator()
        generator.manual_seed(0 if seed is None else int(seed))
    handles = []
    pinned_layers = []
    try:
        for s in synapses(model):
            if isinstance(s, AnalogSynapse):
                s.program(generator)
                pinned_layers.append(s)
                continue
            if s.errors == "none" or s.error_model.noiseless:
                continue
            if s._mode() != "frozen":
                raise ValueError("programmed() needs static errors (errors='static' or reads='once'), "
                                 f"got errors={s.errors!r}, reads={s.reads!r} in {type(s).__name__}")
            wq = s.quantized_weight().detach()
            chip = s.error_model.read(wq, 1, _generator_on(generator, wq.device))

            def pin(mod: nn.Module, args: Any, chip: torch.Tensor = chip) -> None:
                mod._frozen = chip.expand(args[0].shape[0], *chip.shape[1:])  # type: ignore[attr-defined]

            handles.append(s.register_forward_pre_hook(pin))  # type: ignore[attr-defined]
        yield model
    finally:
        for h in handles:
            h.remove()
        for s in pinned_layers:
            s.unprogram()
        new_inference(model)


def programming_accuracies(model: nn.Module, loader: Iterable, n: int = 40, seed: int = 0,
                           progress: bool = False, desc: str = "programmings") -> list[float]:
    """Test accuracy of ``n`` independently programmed chips (seed 003: 40 per condition).

    Chip ``k`` is programmed with seed ``derive_seed(seed, k, "chip")``, so any single chip can be
    reproduced. A model without noisy layers gives ``n`` equal values.
    """
    from tqdm.auto import tqdm

    from .evaluate import accuracy
    from .train import derive_seed

    accs = []
    for k in tqdm(range(n), desc=desc, leave=False, disable=not progress, dynamic_ncols=True):
        with programmed(model, seed=derive_seed(seed, k, "chip")):
            accs.append(accuracy(model, loader))
    return accs


def box_stats(values: Sequence[float]) -> dict[str, float]:
    """Box-plot statistics of programming-run accuracies.

    Returns ``min, q1, median, q3, max, mean, std, n`` and ``top25`` = the 75th percentile (the
    accuracy that re-programming a chip until it lands in the best quarter achieves, seed 003),
    plus ``top25_mean`` = the mean of the best quarter. Percentiles interpolate linearly (numpy).
    """
    v = np.asarray(list(values), dtype=np.float64)
    if v.size == 0:
        raise ValueError("box_stats needs at least one value")
    q1, med, q3 = np.percentile(v, [25, 50, 75])
    best = np.sort(v)[::-1][:max(1, int(math.ceil(v.size / 4)))]
    return {"n": int(v.size), "min": float(v.min()), "q1": float(q1), "median": float(med), "q3": float(q3),
            "max": float(v.max()), "mean": float(v.mean()), "std": float(v.std(ddof=1)) if v.size > 1 else 0.0,
            "top25": float(q3), "top25_mean": float(best.mean())}


# ----------------------------------------------------------------------------------------------
# seed 003 pipeline levels

def level_settings(level: int, sigma: float = 0.0, *, on_off: float = 10.0, bits: int = 8, act_bits: int = 8,
                   array: tuple[int, int] = ARRAY, adc_bits: int = 8, adc_range: float = ADC_RANGE,
                   mapping: str = "proportional", state_dependent: bool = False) -> dict[str, Any]:
    """Error model and tile options of an architecture-aware pipeline level (seed 003 Fig. 2).

    * 0: floating point (clip to [-1, 1], no quantization, no arrays).
    * 1: ``bits``-bit weights and ``act_bits``-bit activations; variation on the signed weight.
    * 2: + signed weights on two cells in two columns, finite on/off ratio (per-cell variation).
    * 3: + ``array`` tiles, ``adc_bits`` ADC per column with range ``adc_range``, per-array
      trainable multipliers.

    Returns ``{"error_model": ..., "analog": {...}}`` for :func:`tile` / :meth:`set_analog`
    (``input_range`` is left to :func:`calibrate_input_ranges`).
    """
    if level not in LEVELS:
        raise ValueError(f"level must be one of {LEVELS}, got {level!r}")
    if level == 0:
        em: ErrorModel = GaussianVariation(sigma, bits=None, state_dependent=state_dependent)
        return {"error_model": em, "analog": dict(array=None, adc_bits=None, input_bits=None)}
    if level == 1:
        em = GaussianVariation(sigma, bits=bits, state_dependent=state_dependent)
        return {"error_model": em, "analog": dict(array=None, adc_bits=None, input_bits=act_bits)}
    em = DifferentialCells(sigma, on_off=on_off, bits=bits, mapping=mapping, state_dependent=state_dependent)
    if level == 2:
        return {"error_model": em, "analog": dict(array=None, adc_bits=None, input_bits=act_bits)}
    return {"error_model": em, "analog": dict(array=tuple(array), adc_bits=adc_bits, adc_range=adc_range,
                                              input_bits=act_bits, learn_multipliers=True)}
