"""Tiled analog arrays with ADCs as a synapse layer type (seed paper 003, Fig. 1 and 2).

A layer's weight matrix ``(out, in)`` is mapped onto memory arrays of ``rows x cols`` cells
(default 256 x 64). Every signed weight takes two cells in two columns (``G+`` and ``G-``, as its
error model maps it: :meth:`~spikenoise.noise.base.ErrorModel.cells`), so an array holds ``rows``
inputs x ``cols // 2`` outputs; a layer needs ``ceil(in / rows) x ceil(2 * out / cols)`` arrays
(seed 003 Table 1). For each array and input vector:

1. The input (activation) is clipped to ``[-input_range, input_range]`` and, with
   ``input_bits``, quantized to ``2**input_bits - 1`` steps per sign (the DAC / activation
   quantization of levels 1-3). Negative inputs are applied in a second phase and subtracted.
2. Each column sums its current, in units of ``G_max * input_range``:
   ``I+_o = sum_i (x_i / input_range) G+_oi`` (``G_min`` of idle cells included).
3. Each column current is digitized by an ADC of ``adc_bits`` with input range ``[0, adc_range]``
   (:func:`~spikenoise.synapse.analog.adc`: clipping + uniform quantization, round half up).
4. The partial sum of the array is ``(ADC(I+) - ADC(I-)) * input_range / dG`` (weight x input
   units), multiplied by a trainable per-array multiplier (seed 003 "S2"), and the partial sums
   of all arrays of a column group are added digitally. As every synapse:
   ``y = scale * sum + bias``.

Default ADC range 15 = the paper's 0-45 uA ADC for cells of 0.3-3 uA (15 cells at ``G_max``
with full-scale input). With ``array=None`` and ``adc_bits=None`` the layer is an ideal analog
layer (optional DAC quantization and input noise only) and uses the engine's paths.

:class:`TiledLinear` and :class:`TiledConv2d` subclass :class:`~spikenoise.synapse.NoisyLinear` /
:class:`~spikenoise.synapse.NoisyConv2d`, so ``configure``, ``new_inference``, training and
``state_dict`` behave as for every synapse (the tile options travel in the extra state). A draw
of a tiled layer holds programming errors (:meth:`~spikenoise.noise.base.ErrorModel.draw_errors`);
:func:`~spikenoise.synapse.chips.programmed` pins one (one chip) for every call.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any, Callable

import torch
import torch.nn as nn

from ..noise.analog import DifferentialCells
from ..noise.base import ErrorModel, as_real
from .analog import ADC_RANGE, ARRAY, adc, add_input_noise, array_count, dac, tiled_matmul
from .base import DRAWS, Draw, NoisySynapse, check_choice
from .dtypes import engine_forward
from .layers import NoisyConv2d, NoisyLinear

__all__ = ["AnalogOptions", "ANALOG_OPTIONS", "AnalogSynapse", "TiledLinear", "TiledConv2d"]


@dataclass
class AnalogOptions:
    """Tile options of a tiled layer (:func:`~spikenoise.synapse.convert.tile`,
    :meth:`AnalogSynapse.set_analog`); the defaults are the layers' defaults."""

    array: tuple[int, int] | None = ARRAY
    """``(rows, cols)`` cells per array (``cols`` even: two per weight), or None: one ideal array."""
    adc_bits: int | None = 8
    """ADC resolution per column (None: no ADC)."""
    adc_range: float = ADC_RANGE
    """ADC full scale in units of ``G_max * input_range``."""
    input_bits: int | None = 8
    """DAC / activation quantization (None: none)."""
    input_range: float | None = 1.0
    """Full-scale input (input units); None: no clipping (only with ``array=None, adc_bits=None``)."""
    draws: str = "row"
    """``"row"``: a programming per batch row (an independent chip per input); ``"batch"``: one shared
    by all rows of a call (the paper's per-minibatch noise injection during training)."""
    input_noise: float = 0.0
    """Standard deviation (input units) of Gaussian noise added to the input at every call (seed 004)."""
    learn_multipliers: bool = True
    """Train the per-array multipliers."""


#: names of the tile options (fields of :class:`AnalogOptions`)
ANALOG_OPTIONS = tuple(f.name for f in fields(AnalogOptions))


def check_analog_names(options: dict[str, Any]) -> None:
    """ValueError naming any key of ``options`` that is not a tile option."""
    bad = set(options) - set(ANALOG_OPTIONS)
    if bad:
        raise ValueError(f"unknown analog option(s) {sorted(bad)}; known: {ANALOG_OPTIONS}")


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


def _check_noise(s) -> float:
    v = as_real("input_noise", s, "a number >= 0")
    if not (v >= 0 and math.isfinite(v)):
        raise ValueError(f"input_noise must be a finite number >= 0, got {s!r}")
    return v


_CHECKS: dict[str, Callable[[Any], Any]] = {
    "adc_bits": lambda v: _check_bits("adc_bits", v),
    "adc_range": lambda v: _check_positive("adc_range", v),
    "input_bits": lambda v: _check_bits("input_bits", v),
    "input_range": lambda v: _check_positive("input_range", v, allow_none=True),
    "draws": lambda v: check_choice("draws", v, DRAWS),
    "input_noise": _check_noise,
}


class AnalogSynapse(NoisySynapse):
    """Tile / ADC / DAC / input-noise state shared by :class:`TiledLinear` and :class:`TiledConv2d`.

    A draw of a tiled layer holds programming errors (:meth:`ErrorModel.draw_errors`).
    """

    multipliers: nn.Parameter
    array: tuple[int, int] | None
    adc_bits: int | None
    adc_range: float
    input_bits: int | None
    input_range: float | None
    input_noise: float

    def _init_analog(self, options: dict[str, Any]) -> None:
        check_analog_names(options)
        self.array = None
        self.multipliers = nn.Parameter(torch.ones(1, 1), requires_grad=False)
        self._probe: list | None = None  # column currents are collected here while probing
        defaults = AnalogOptions()
        self.set_analog(**{name: options.get(name, getattr(defaults, name)) for name in ANALOG_OPTIONS})

    # -- configuration ---------------------------------------------------------------------
    def set_analog(self, **options: Any) -> None:
        """Change tile options (names in :data:`ANALOG_OPTIONS`); starts a new inference.

        Changing ``array`` re-creates the per-array multipliers (at 1): build the optimizer after.
        """
        check_analog_names(options)
        if "array" in options:
            self.array = _check_array(options["array"])
            R, C = array_count(self.weight[0].numel(), self.weight.shape[0], self.array)
            learn = bool(options.get("learn_multipliers", self.multipliers.requires_grad))
            self.multipliers = nn.Parameter(torch.ones(R, C, device=self.weight.device, dtype=self.weight.dtype),
                                            requires_grad=learn)
        for name, check in _CHECKS.items():
            if name in options:
                setattr(self, name, check(options[name]))
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

    def set_analog_state(self, opts: dict[str, Any]) -> None:
        """Restore tile options from a checkpoint, keeping loaded multipliers that fit."""
        opts = dict(opts)
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
        R, C = array_count(self.weight[0].numel(), self.weight.shape[0], self.array)
        arr = "ideal (no arrays)" if self.array is None else f"{R}x{C} arrays of {self.array[0]}x{self.array[1]}"
        adc_ = "ideal ADC" if self.adc_bits is None else f"{self.adc_bits}-bit ADC [0, {self.adc_range:g}]"
        dac_ = ("no DAC" if self.input_range is None else
                f"inputs clipped to +-{self.input_range:g}" + ("" if self.input_bits is None else
                                                               f", {self.input_bits}-bit"))
        noise = f", input noise {self.input_noise:g}" if self.input_noise else ""
        pin = ", programmed chip pinned" if self.pinned else ""
        return f"{arr}, {adc_}, {dac_}, draws={self.draws!r}{noise}{pin}"

    # -- probing (ADC calibration) ---------------------------------------------------------
    def start_probe(self) -> None:
        """Collect the column currents before the ADC of every later call (forces the array path)."""
        self._probe = []

    @property
    def probing(self) -> bool:
        """True while column currents are being collected."""
        return self._probe is not None

    def stop_probe(self) -> list[torch.Tensor]:
        """Stop collecting; returns the currents collected (units of ``G_max * input_range``)."""
        found, self._probe = self._probe or [], None
        return found

    # -- computation -----------------------------------------------------------------------
    def prepare_input(self, x: torch.Tensor) -> torch.Tensor:
        """Input noise, then the DAC."""
        if self.input_noise > 0:
            x = add_input_noise(x, self.input_noise)
        return dac(x, self.input_bits, self.input_range)

    def multipliers_per_output(self, out: int) -> torch.Tensor:
        """``(R, out)``: each output column's per-array multiplier."""
        per = out if self.array is None else self.array[1] // 2
        return self.multipliers.repeat_interleave(per, dim=1)[:, :out]

    def analog_map(self, x: torch.Tensor, wq: torch.Tensor, errors: Draw | None, dense, tiled) -> torch.Tensor:
        """The layer's map of ``x`` on programmed weights ``wq`` + ``errors``.

        Ideal: ``dense(x, weights (n, *W))``. Arrays/ADC: ``tiled(x >= 0, G+, G-, dg)`` with the
        error model's cells, negative inputs in a second phase subtracted.
        """
        em = self.error_model
        if self.ideal:
            return dense(x, em.weights_with(wq, errors))
        gp, gm = em.cells_with(wq, errors)
        y = tiled(x.clamp_min(0), gp, gm, em.dg)
        if bool((x < 0).any()):
            y = y - tiled((-x).clamp_min(0), gp, gm, em.dg)  # second phase: negative inputs
        return y


    # -- draws ---------------------------------------------------------------------------
    def sample_draw(self, stored: torch.Tensor, n: int, generator: torch.Generator | None = None) -> Draw:
        return self.error_model.draw_errors(stored, n, generator)

    def draw_reads(self, stored: torch.Tensor, draw: Draw) -> torch.Tensor:
        return self.error_model.weights_with(stored.detach(), draw)

    def draw_rows(self, draw: Draw) -> int:
        return draw[0].shape[0]

    def get_extra_state(self) -> dict[str, Any]:
        state = super().get_extra_state()
        state["analog"] = self.analog_options()
        return state

    def set_extra_state(self, state: dict[str, Any]) -> None:
        super().set_extra_state(state)
        self.set_analog_state(state.get("analog", {}))

    def use_engine(self) -> bool:
        """Ideal, per-row and unpinned: the engine's paths (all samplers) apply."""
        return self.ideal and self.draws == "row" and not self.pinned

    def errors_for(self, wq: torch.Tensor, batch: int) -> Draw | None:
        """The programming errors this call uses, or None (error-free)."""
        mode = self.read_mode
        if not self.pinned and mode == "clean":
            return None
        if not self.pinned and mode == "per_spike":
            raise ValueError(f"{type(self).__name__} with arrays/ADC or draws='batch' draws per call, not per "
                             "spike; use reads='step' (or 'once'), or errors='static'")
        return self.draw_for(wq, batch)


class TiledLinear(AnalogSynapse, NoisyLinear):
    """``NoisyLinear`` on tiled analog arrays with ADCs (module docstring).

    Args:
        in_features, out_features, bias: as ``nn.Linear``.
        error_model: default ``DifferentialCells()`` (error-free, on/off 10, 8-bit targets).
        errors, reads, sampler, learn_scale: as :class:`~spikenoise.synapse.NoisyLinear`
            (default ``reads="once"``: programming variation is static).
        **analog: tile options, the fields of :class:`AnalogOptions` (defaults there).

    Shapes: input ``(B, in)`` or ``(B, *, in)`` -> ``(B, out)`` / ``(B, *, out)``.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, *,
                 error_model: ErrorModel | None = None, errors: str = "none", reads: str = "once",
                 sampler: str = "auto", learn_scale: bool = True, nonfinite: str | None = None, device=None,
                 dtype=None, **analog: Any):
        check_analog_names(analog)
        NoisyLinear.__init__(self, in_features, out_features, bias,
                             error_model=DifferentialCells() if error_model is None else error_model,
                             errors=errors, reads=reads, sampler=sampler, learn_scale=learn_scale,
                             nonfinite=nonfinite, device=device, dtype=dtype)
        self._init_analog(analog)

    def extra_repr(self) -> str:
        return f"{nn.Linear.extra_repr(self)}, {self.analog_repr()}, {self.synapse_repr()}"

    @engine_forward
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)  # the engine path checks again: one more isfinite, kept for simplicity
        if x.dim() < 1 or x.shape[-1] != self.in_features:
            raise ValueError(f"TiledLinear expects input (..., {self.in_features}), got shape {tuple(x.shape)}")
        if x.numel() == 0:
            return self.empty_forward(x, self.quantized_weight())
        x = self.prepare_input(x)
        if self.use_engine():
            return NoisyLinear.forward(self, x)
        if x.dim() == 1:
            return self.forward_prepared(x.unsqueeze(0)).squeeze(0)
        return self.forward_prepared(x)

    def forward_prepared(self, x: torch.Tensor) -> torch.Tensor:
        """Forward of an input that already went through input noise and DAC (``(B, *, in)``)."""
        wq = self.quantized_weight()
        B = x.shape[0]
        y = self.analog_map(x.reshape(B, -1, self.in_features), wq, self.errors_for(wq, B),
                            self._dense, self._tiled)
        return self.scale_and_bias(y.reshape(*x.shape[:-1], self.out_features))

    @staticmethod
    def _dense(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """``(B, P, K)`` inputs times ``n`` weights ``(n, O, K)`` (shared or one per row) -> ``(B, P, O)``."""
        return torch.einsum("bpk,nok->bpo", x, w) if w.shape[0] == 1 else torch.einsum("bpk,bok->bpo", x, w)

    def _tiled(self, x: torch.Tensor, gp: torch.Tensor, gm: torch.Tensor, dg: float) -> torch.Tensor:
        mult = None
        if self.array is not None or self.adc_bits is not None:
            mult = self.multipliers_per_output(gp.shape[1])
        assert self.input_range is not None
        return tiled_matmul(x, gp, gm, dg=dg, rows=None if self.array is None else self.array[0],
                            adc_bits=self.adc_bits, adc_range=self.adc_range, input_range=self.input_range,
                            multipliers=mult, probe=self._probe)


class TiledConv2d(AnalogSynapse, NoisyConv2d):
    """``NoisyConv2d`` on tiled analog arrays via unfold: each output position is one array read.

    The kernel ``(C_out, C_in, kh, kw)`` is a ``(C_out, C_in*kh*kw)`` matrix on the arrays
    (seed 003 Table 1: "row vector length" = ``C_in*kh*kw``). Options as :class:`TiledLinear`;
    arrays/ADC need ``groups=1``. Shapes: ``(B, C_in, H, W)`` -> ``(B, C_out, H', W')``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, dilation=1,
                 groups: int = 1, bias: bool = True, *, error_model: ErrorModel | None = None,
                 errors: str = "none", reads: str = "once", sampler: str = "auto", learn_scale: bool = True,
                 nonfinite: str | None = None, device=None, dtype=None, **analog: Any):
        check_analog_names(analog)
        NoisyConv2d.__init__(self, in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
                             error_model=DifferentialCells() if error_model is None else error_model,
                             errors=errors, reads=reads, sampler=sampler, learn_scale=learn_scale,
                             nonfinite=nonfinite, device=device, dtype=dtype)
        self._init_analog(analog)

    def extra_repr(self) -> str:
        return f"{nn.Conv2d.extra_repr(self)}, {self.analog_repr()}, {self.synapse_repr()}"

    @engine_forward
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)  # the engine path checks again: one more isfinite, kept for simplicity
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"TiledConv2d expects input (B, {self.in_channels}, H, W), got shape {tuple(x.shape)}")
        if x.numel() == 0:
            return self.empty_forward(x, self.quantized_weight())
        x = self.prepare_input(x)
        if self.use_engine():
            return NoisyConv2d.forward(self, x)
        wq = self.quantized_weight()
        return self.scale_and_bias(self.analog_map(x, wq, self.errors_for(wq, x.shape[0]),
                                                   self._conv_n, self._tiled_conv))

    def _conv_n(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """Convolution with ``n`` kernels ``w`` ``(n, O', C', kh, kw)``: shared (n=1) or one per row."""
        if w.shape[0] == 1:
            return self.conv(x, w[0])
        return self.row_op(x, w)

    def _tiled_conv(self, x: torch.Tensor, gp: torch.Tensor, gm: torch.Tensor, dg: float) -> torch.Tensor:
        """Digitized partial sums of non-negative inputs ``x``; conductances ``(n, O, C, kh, kw)``.

        A row tile holds a contiguous range of the ``C*kh*kw`` unfolded rows (channel-major, as
        ``F.unfold``); its column currents are one convolution over the channels it touches with
        the rows outside the tile masked out -- the same sums as unfold + matmul, without the
        unfolded input in memory.
        """
        if self.groups != 1:
            raise ValueError("TiledConv2d supports groups=1 only with arrays or an ADC")
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
        return (ps * self.multipliers_per_output(O).view(1, R, O, 1, 1)).sum(dim=1)
