"""The synapse engine: quantized, noisy Linear and Conv2d layers that read weights from NVM.

Every noisy layer keeps full-precision *hidden* weights (what the optimizer updates), stores
``error_model.quantize(hidden)`` in memory, and multiplies the pre-activation by a learnable
per-layer ``scale``::

    y = scale * (x (*) W_read) + bias

``W_read`` is what the hardware reads. Two options say when it is drawn, and for whom:

``errors``
    ``"none"``: ``W_read`` = stored weights. ``"static"``: one draw per batch row at the first read
    after a new inference, frozen for every later read of that inference. ``"dynamic"``: an
    independent draw at every read.
``reads``
    ``"once"``: the weights are read once per inference (CNN with data re-use), so static and
    dynamic errors coincide. ``"step"``: once per call (one timestep) (RNN); a read whose input is zero
    contributes nothing, so only non-zero inputs count as reads in the operation counters. ``"spike"``: once per incoming spike (event-driven SNN); a zero input is no read; for
    Conv2d each (spike, kernel tap, output position) is its own read; an integer input ``c`` is
    ``|c|`` spikes (``c`` reads); a graded input ``x`` is one read weighted by ``x``.

A *new inference* starts with :func:`new_inference` (scoped to the model it is called on);
:func:`convert` registers it on the converted model's forward by default.

Samplers for ``errors="dynamic", reads="spike"``: ``"exact"`` counts the reads per level with one
matmul/conv against one-hot level masks and draws the summed error of ``n`` iid reads from exact
convolution-power tables (never a (batch x in x out) noise tensor); it needs integer (spike) inputs
and a discrete error model. ``"brute"`` draws every read (the reference; always exact, memory
heavy). ``"gaussian"`` matches mean and variance per output (approximate, labelled so); for
NoisyLinear it also serves ``reads="step"`` (fast for recurrent layers on graded inputs).
``"auto"`` picks ``"exact"`` where it applies and otherwise ``"brute"``; in training with gradients
it picks ``"brute"``, so the backward pass sees the very weights the forward pass read.
"""
from __future__ import annotations

import copy
from typing import Any, Iterator

import torch
import torch.nn as nn
import torch.nn.functional as F

from .noise.base import ErrorModel, error_model_from_config
from .noise.nvm import MultiLevelNVM

__all__ = ["NoisySynapse", "NoisyLinear", "NoisyConv2d", "convert", "new_inference", "configure",
           "synapses", "ERRORS", "READS", "SAMPLERS"]

ERRORS = ("none", "static", "dynamic")
READS = ("once", "step", "spike")
SAMPLERS = ("auto", "exact", "brute", "gaussian")

#: Bytes the exact per-spike sampler may use for temporaries. 0 (default): as much as the clean
#: layer call itself (input + weights + output), which keeps peak memory near 2x clean. On a GPU
#: a larger budget (e.g. 256 MiB) means fewer, larger kernels and so more speed.
MEMORY_BUDGET = 0


def _check_choice(name: str, value: Any, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")
    return value


def _is_integer_valued(x: torch.Tensor) -> bool:
    x = x.detach()
    return bool(torch.equal(x, torch.round(x)))


class NoisySynapse:
    """Mixin holding the NVM state of a layer. Use :class:`NoisyLinear` / :class:`NoisyConv2d`."""

    error_model: ErrorModel
    errors: str
    reads: str
    sampler: str

    def _init_synapse(self, error_model: ErrorModel | None, errors: str, reads: str, sampler: str,
                      learn_scale: bool) -> None:
        if error_model is None:
            error_model = MultiLevelNVM()
        if not isinstance(error_model, ErrorModel):
            raise ValueError(f"error_model must be an ErrorModel (e.g. MultiLevelNVM), got {error_model!r}")
        self.error_model = error_model
        self.errors = _check_choice("errors", errors, ERRORS)
        self.reads = _check_choice("reads", reads, READS)
        self.sampler = _check_choice("sampler", sampler, SAMPLERS)
        fan_in = self.weight[0].numel()  # type: ignore[attr-defined]
        self.scale = nn.Parameter(torch.tensor(fan_in ** -0.5), requires_grad=learn_scale)
        self._frozen: torch.Tensor | None = None
        self.reset_hidden_parameters()

    def reset_hidden_parameters(self) -> None:
        """Paper init: hidden weights U(-1, 1), bias U(-1/sqrt(k), 1/sqrt(k)), scale 1/sqrt(k)."""
        fan_in = self.weight[0].numel()  # type: ignore[attr-defined]
        with torch.no_grad():
            self.weight.uniform_(-1.0, 1.0)  # type: ignore[attr-defined]
            if self.bias is not None:  # type: ignore[attr-defined]
                self.bias.uniform_(-fan_in ** -0.5, fan_in ** -0.5)  # type: ignore[attr-defined]
            self.scale.fill_(fan_in ** -0.5)

    # -- state -----------------------------------------------------------------------------
    def new_inference(self) -> None:
        """Forget frozen reads: the next read starts a new inference."""
        self._frozen = None

    def set_errors(self, errors: str | None = None, reads: str | None = None, sampler: str | None = None,
                   error_model: ErrorModel | None = None) -> None:
        """Change when/how errors are drawn (also starts a new inference)."""
        if errors is not None:
            self.errors = _check_choice("errors", errors, ERRORS)
        if reads is not None:
            self.reads = _check_choice("reads", reads, READS)
        if sampler is not None:
            self.sampler = _check_choice("sampler", sampler, SAMPLERS)
        if error_model is not None:
            if not isinstance(error_model, ErrorModel):
                raise ValueError(f"error_model must be an ErrorModel, got {error_model!r}")
            self.error_model = error_model
        self.new_inference()

    def get_extra_state(self) -> dict[str, Any]:
        return {"errors": self.errors, "reads": self.reads, "sampler": self.sampler,
                "error_model": self.error_model.config()}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self.set_errors(errors=state["errors"], reads=state["reads"], sampler=state["sampler"],
                        error_model=error_model_from_config(state["error_model"]))

    def when_drawn(self) -> str:
        """Plain-words description of when errors are drawn, and for whom."""
        if self.errors == "none" or self.error_model.noiseless:
            return "no errors"
        if self.errors == "static" or self.reads == "once":
            return "one draw per batch row, frozen until new_inference()"
        if self.reads == "step":
            approx = ", gaussian approximation" if self.sampler == "gaussian" and isinstance(self, nn.Linear) else ""
            return f"fresh draw per batch row at every call (timestep){approx}"
        return f"fresh draw at every incoming spike (sampler={self.sampler})"

    def synapse_repr(self) -> str:
        return (f"errors={self.errors!r}, reads={self.reads!r}, error_model={self.error_model!r}, "
                f"noise: {self.when_drawn()}")

    # -- weights ---------------------------------------------------------------------------
    def quantized_weight(self) -> torch.Tensor:
        """Stored weights, with a clipped straight-through gradient to the hidden weights."""
        w = self.weight  # type: ignore[attr-defined]
        q = self.error_model.quantize(w.detach())
        rng = self.error_model.ste_range()
        wc = w if rng is None else w.clamp(rng[0], rng[1])
        return wc + (q - wc).detach()

    def _frozen_reads(self, wq: torch.Tensor, batch: int) -> torch.Tensor:
        """The static draw of this inference, (batch, *W.shape); drawn at the first read."""
        if self._frozen is None:
            self._frozen = self.error_model.read(wq.detach(), batch)
        elif self._frozen.shape[0] != batch:
            raise ValueError(
                f"{type(self).__name__}: static errors were drawn for a batch of {self._frozen.shape[0]} "
                f"but this read has batch {batch}; call spikenoise.new_inference(model) between inferences")
        return self._frozen

    def _with_reads(self, x: torch.Tensor, wq: torch.Tensor, reads: torch.Tensor, per_row_op, op) -> torch.Tensor:
        """``per_row_op(x, reads)`` with the straight-through gradient to the hidden weights.

        The forward value uses the drawn weights, and so does the gradient w.r.t. ``x``; the
        zero-valued term ``op(x, wq - wq.detach())`` routes dL/dW_read to the hidden weights
        (summed over the batch) without a per-row copy of the weights.
        """
        y = per_row_op(x, reads)
        if wq.requires_grad and torch.is_grad_enabled():
            y = y + op(x, wq - wq.detach())
        return y

    def _mode(self) -> str:
        if self.errors == "none" or self.error_model.noiseless:
            return "clean"
        if self.errors == "static" or self.reads == "once":
            return "frozen"
        if self.reads == "step":
            return "per_row"
        return "per_spike"

    def _spike_sampler(self, x: torch.Tensor) -> str:
        """Resolve ``sampler`` for a per-spike read of input ``x``."""
        if self.sampler == "gaussian":
            return "gaussian"
        exact_ok = self.error_model.discrete() is not None and _is_integer_valued(x)
        if self.sampler == "exact":
            if not exact_ok:
                raise ValueError(
                    "sampler='exact' needs integer (spike-count) inputs and a discrete error model; "
                    f"got {'graded inputs' if self.error_model.discrete() is not None else repr(self.error_model)}")
            return "exact"
        if self.sampler == "brute":
            return "brute"
        grad = torch.is_grad_enabled() and (self.weight.requires_grad or x.requires_grad)  # type: ignore[attr-defined]
        return "exact" if exact_ok and not grad else "brute"

    def _finish(self, y: torch.Tensor) -> torch.Tensor:
        y = y * self.scale
        if self.bias is not None:  # type: ignore[attr-defined]
            shape = [1] * y.dim()
            shape[1 if isinstance(self, nn.Conv2d) else -1] = -1
            y = y + self.bias.view(shape)  # type: ignore[attr-defined]
        return y


def _rowwise_linear(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Row ``b`` of ``x`` (B, *, in) times its own weights ``w[b]`` (out, in)."""
    if x.dim() == 2:
        return torch.bmm(w, x.unsqueeze(-1)).squeeze(-1)
    return torch.einsum("b...i,boi->b...o", x, w)


class NoisyLinear(NoisySynapse, nn.Linear):
    """``nn.Linear`` whose weights live in NVM cells.

    Args:
        in_features, out_features, bias: as ``nn.Linear``.
        error_model: an :class:`~spikenoise.noise.ErrorModel` (default: error-free 8-level NVM).
        errors: ``"none" | "static" | "dynamic"``.
        reads: ``"once" | "step" | "spike"``.
        sampler: ``"auto" | "exact" | "brute" | "gaussian"`` (per-spike dynamic reads only).
        learn_scale: train the per-layer scale (default True).

    Shapes: input ``(B, in)`` or ``(B, *, in)``; output ``(B, out)`` / ``(B, *, out)``. Batch rows
    (dim 0) get independent errors; extra middle dims share a row's static draw.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, *,
                 error_model: ErrorModel | None = None, errors: str = "none", reads: str = "spike",
                 sampler: str = "auto", learn_scale: bool = True, device=None, dtype=None):
        nn.Linear.__init__(self, in_features, out_features, bias, device=device, dtype=dtype)
        self._init_synapse(error_model, errors, reads, sampler, learn_scale)

    def extra_repr(self) -> str:
        return f"{nn.Linear.extra_repr(self)}, {self.synapse_repr()}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() < 1 or x.shape[-1] != self.in_features:
            raise ValueError(f"NoisyLinear expects input (..., {self.in_features}), got shape {tuple(x.shape)}")
        wq = self.quantized_weight()
        mode = self._mode()
        if mode == "clean":
            return self._finish(F.linear(x, wq))
        if x.dim() == 1:
            return self.forward(x.unsqueeze(0)).squeeze(0)
        B = x.shape[0]
        if mode == "per_row" and self.sampler == "gaussian":
            # outputs use disjoint weights, so a per-output Gaussian is the moment-matched law
            return self._finish(self._gaussian(x, wq, counts_are_reads=False))
        if mode in ("frozen", "per_row"):
            reads = self._frozen_reads(wq, B) if mode == "frozen" else self.error_model.read(wq.detach(), B)
            return self._finish(self._with_reads(x, wq, reads, _rowwise_linear, F.linear))
        # per spike: every row of every middle dim is its own set of reads
        lead = x.shape[:-1]
        x2 = x.reshape(-1, self.in_features)
        how = self._spike_sampler(x2)
        if how == "gaussian":
            y = self._gaussian(x2, wq)
        elif how == "exact":
            y = _exact_spike_reads(self, x2, wq, lambda inp, m: F.linear(inp, m))
        else:
            y = self._brute(x2, wq)
        return self._finish(y.reshape(*lead, self.out_features))

    def _gaussian(self, x: torch.Tensor, wq: torch.Tensor, counts_are_reads: bool = True) -> torch.Tensor:
        """Approximate: Gaussian output with the exact mean and variance of the drawn sum."""
        mean, var = self.error_model.read_moments(wq.detach())
        mean = wq + (mean - wq.detach())
        # per spike, an integer input c is c reads (variance adds c times); a graded x, or any
        # input read once per step, is one read scaled by x (variance x^2)
        xv = x.abs() if counts_are_reads and _is_integer_valued(x) else x * x
        mu = F.linear(x, mean)
        sd = F.linear(xv, var).clamp_min(0).sqrt()
        return mu + sd * torch.randn_like(mu)

    def _brute(self, x: torch.Tensor, wq: torch.Tensor) -> torch.Tensor:
        """Reference: draw every read. Integer |x| > 1 means that many independent reads."""
        B = x.shape[0]
        mx = float(x.detach().abs().max()) if x.numel() else 0.0
        reps = int(mx) if mx > 1 and _is_integer_valued(x.detach()) else 1
        sign, mag = x.sign(), x.abs()
        y = None
        for k in range(1, reps + 1):
            xk = x if reps == 1 else sign * (mag >= k).to(x.dtype)
            yk = self._with_reads(xk, wq, self.error_model.read(wq.detach(), B), _rowwise_linear, F.linear)
            y = yk if y is None else y + yk
        return y


class NoisyConv2d(NoisySynapse, nn.Conv2d):
    """``nn.Conv2d`` whose weights live in NVM cells (see :class:`NoisyLinear` for the options).

    Shapes: input ``(B, C_in, H, W)``, output ``(B, C_out, H', W')``. With ``reads="spike"`` each
    (spike, kernel tap, output position) is an independent read; static and per-step reads share
    one draw per batch row across positions.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 dilation=1, groups: int = 1, bias: bool = True, *, error_model: ErrorModel | None = None,
                 errors: str = "none", reads: str = "spike", sampler: str = "auto",
                 learn_scale: bool = True, device=None, dtype=None):
        if isinstance(padding, str):
            raise ValueError(f"NoisyConv2d needs numeric padding, got {padding!r}")
        nn.Conv2d.__init__(self, in_channels, out_channels, kernel_size, stride, padding, dilation, groups,
                           bias, padding_mode="zeros", device=device, dtype=dtype)
        self._init_synapse(error_model, errors, reads, sampler, learn_scale)

    def extra_repr(self) -> str:
        return f"{nn.Conv2d.extra_repr(self)}, {self.synapse_repr()}"

    def _conv(self, x: torch.Tensor, w: torch.Tensor, groups: int | None = None) -> torch.Tensor:
        return F.conv2d(x, w, None, self.stride, self.padding, self.dilation,
                        self.groups if groups is None else groups)

    def _per_row_conv(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """Convolve each batch row with its own kernel (B, C_out, C_in/g, kh, kw) via groups."""
        B = x.shape[0]
        y = self._conv(x.reshape(1, B * x.shape[1], *x.shape[2:]),
                       w.reshape(B * w.shape[1], *w.shape[2:]), groups=B * self.groups)
        return y.reshape(B, self.out_channels, *y.shape[2:])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"NoisyConv2d expects input (B, {self.in_channels}, H, W), got shape {tuple(x.shape)}")
        wq = self.quantized_weight()
        mode = self._mode()
        if mode == "clean":
            return self._finish(self._conv(x, wq))
        B = x.shape[0]
        if mode in ("frozen", "per_row"):
            reads = self._frozen_reads(wq, B) if mode == "frozen" else self.error_model.read(wq.detach(), B)
            return self._finish(self._with_reads(x, wq, reads, self._per_row_conv, self._conv))
        how = self._spike_sampler(x)
        if how == "gaussian":
            mean, var = self.error_model.read_moments(wq.detach())
            mean = wq + (mean - wq.detach())
            xv = x.abs() if _is_integer_valued(x) else x * x
            mu = self._conv(x, mean)
            y = mu + self._conv(xv, var).clamp_min(0).sqrt() * torch.randn_like(mu)
        elif how == "exact":
            y = _exact_spike_reads(self, x, wq, self._conv)
        else:
            y = self._brute(x, wq)
        return self._finish(y)

    def _brute(self, x: torch.Tensor, wq: torch.Tensor, chunk_elems: int = 2 ** 24) -> torch.Tensor:
        """Reference: an independent read per (batch, spike, tap, output position)."""
        B = x.shape[0]
        kh, kw = self.kernel_size
        cols = F.unfold(x, (kh, kw), self.dilation, self.padding, self.stride)  # (B, Cin*kh*kw, P)
        Ho = (x.shape[2] + 2 * self.padding[0] - self.dilation[0] * (kh - 1) - 1) // self.stride[0] + 1
        Wo = (x.shape[3] + 2 * self.padding[1] - self.dilation[1] * (kw - 1) - 1) // self.stride[1] + 1
        P = cols.shape[-1]
        g, cin_g, cout_g = self.groups, self.in_channels // self.groups, self.out_channels // self.groups
        cols = cols.reshape(B, g, cin_g * kh * kw, P)
        mx = float(x.detach().abs().max()) if x.numel() else 0.0
        reps = int(mx) if mx > 1 and _is_integer_valued(x.detach()) else 1
        sign, mag = cols.sign(), cols.abs()
        y = x.new_zeros(B, g, cout_g, P)
        per_row = g * cout_g * cin_g * kh * kw * P
        rows = max(1, chunk_elems // max(per_row, 1))
        for k in range(1, reps + 1):
            xk = cols if reps == 1 else sign * (mag >= k).to(x.dtype)
            for s in range(0, B, rows):
                e = min(B, s + rows)
                reads = self.error_model.read(wq.detach(), (e - s) * P)  # (nb*P, Cout, Cin/g, kh, kw)
                reads = reads.reshape(e - s, P, g, cout_g, cin_g * kh * kw)
                y[s:e] += torch.einsum("bgcp,bpgoc->bgop", xk[s:e], reads)
        y = y.reshape(B, self.out_channels, Ho, Wo)
        if wq.requires_grad and torch.is_grad_enabled():
            y = y + self._conv(x, wq - wq.detach())  # straight-through gradient to hidden weights
        return y


def _exact_spike_reads(layer: NoisySynapse, x: torch.Tensor, wq: torch.Tensor, op) -> torch.Tensor:
    """Exact per-spike dynamic reads without a per-read noise tensor.

    ``op(input, weight)`` is the layer's linear map (F.linear or the conv) for a weight holding a
    slice of the output channels. For each noisy level ``l`` the reads of that level are counted
    with one ``op`` against the 0/1 mask of the weights stored at ``l``; the summed error of ``n``
    iid reads of ``l`` is then drawn from exact convolution-power tables. Positive and negative
    spike counts are separate reads (subtracted). Output channels are processed in chunks so the
    temporaries stay within :data:`MEMORY_BUDGET` (or the clean call's own working set).
    """
    em = layer.error_model
    lv = em.discrete()
    assert lv is not None
    L = lv.values.numel()
    step = lv.step
    idx = torch.round((wq.detach() - float(lv.values[0])) / step).clamp_(0, L - 1).to(torch.int64)
    sums = em.sum_sampler()  # type: ignore[attr-defined]
    clean = op(x, wq)  # differentiable error-free part; the drawn error below is a constant
    err = torch.zeros_like(clean, requires_grad=False)
    parts = [(1.0, x.clamp_min(0))]
    if bool((x < 0).any()):
        parts.append((-1.0, (-x).clamp_min(0)))
    present = torch.bincount(idx.flatten(), minlength=L).tolist()
    noisy = [lvl for lvl in range(L) if present[lvl] and float(lv.confusion[lvl, lvl]) < 1.0]
    out_ch = wq.shape[0]
    per_ch = (wq[0].numel() * 4 + clean[:, :1].numel() * (4 + 3 * 8)) * len(parts)
    budget = MEMORY_BUDGET or (x.numel() + wq.numel() + clean.numel()) * x.element_size()
    chunk = out_ch if getattr(layer, "groups", 1) != 1 else max(1, min(out_ch, budget // max(per_ch, 1)))
    with torch.no_grad():
        for lvl in noisy:
            level = torch.tensor(lvl, device=x.device)
            for o0 in range(0, out_ch, chunk):
                mask = (idx[o0:o0 + chunk] == lvl).to(x.dtype)
                for sgn, xp in parts:
                    n = torch.round(op(xp, mask)).to(torch.int64)
                    drawn = sums.sample(level, n)
                    del n
                    err[:, o0:o0 + chunk].add_(drawn.to(x.dtype), alpha=sgn * step)
    return clean + err


# ----------------------------------------------------------------------------------------------
# whole-model helpers

def synapses(model: nn.Module) -> Iterator[NoisySynapse]:
    """All noisy synapses inside ``model`` (itself included)."""
    for m in model.modules():
        if isinstance(m, NoisySynapse):
            yield m


def new_inference(model: nn.Module) -> None:
    """Start a new inference for the synapses of ``model`` only: static draws are forgotten.

    Scoped to ``model`` (other networks keep their state, unlike a class-level registry).
    """
    for s in synapses(model):
        s.new_inference()


def configure(model: nn.Module, *, errors: str | None = None, reads: str | None = None,
              sampler: str | None = None, error_model: ErrorModel | None = None) -> nn.Module:
    """Set error options on every synapse of ``model`` (None keeps a layer's current value)."""
    found = False
    for s in synapses(model):
        s.set_errors(errors=errors, reads=reads, sampler=sampler, error_model=error_model)
        found = True
    if not found:
        raise ValueError(f"{type(model).__name__} has no noisy synapses; wrap it with spikenoise.convert first")
    return model


def _new_inference_hook(module: nn.Module, args: Any) -> None:
    new_inference(module)


_CONVERTIBLE = (nn.Linear, nn.Conv2d)


def _deepcopy(model: nn.Module) -> nn.Module:
    """Deep copy that tolerates neuron state left over from a forward pass (snnTorch keeps
    ``mem`` with a grad_fn, which ``copy.deepcopy`` refuses). The copy gets that state detached."""
    saved = []
    for m in model.modules():
        for store in (m.__dict__, m._buffers):
            for k, v in list(store.items()):
                if isinstance(v, torch.Tensor) and not v.is_leaf:
                    saved.append((store, k, v))
                    store[k] = v.detach()
    try:
        return copy.deepcopy(model)
    finally:
        for store, k, v in saved:
            store[k] = v


def convert(model: nn.Module, error_model: ErrorModel | None = None, *, errors: str = "static",
            reads: str = "spike", sampler: str = "auto", map_weights: bool = True,
            learn_scale: bool = True, inference: str = "forward", inplace: bool = False) -> nn.Module:
    """Replace every ``nn.Linear`` / ``nn.Conv2d`` of ``model`` by its noisy counterpart.

    Args:
        model: any PyTorch or snnTorch model.
        error_model: e.g. ``MultiLevelNVM.noise_level(2)`` (default: error-free 8-level NVM).
        errors, reads, sampler: see :mod:`spikenoise.synapse`.
        map_weights: map each layer's trained float weights onto the stored range: hidden weights
            ``w / s`` and ``scale = s`` with ``s = error_model.fit_scale(w)``, so the converted
            layer computes ``quantize(w / s) * s``. If False, hidden weights are ``w`` and scale 1.
        inference: ``"forward"``: every call of ``model(...)`` is one inference (a new inference
            starts automatically; right for models that loop over time inside forward);
            ``"manual"``: call :func:`spikenoise.new_inference(model)` yourself (models stepped
            one timestep per call).
        inplace: modify ``model`` itself instead of a deep copy.

    Returns:
        The converted model.
    """
    _check_choice("errors", errors, ERRORS)
    _check_choice("reads", reads, READS)
    _check_choice("sampler", sampler, SAMPLERS)
    _check_choice("inference", inference, ("forward", "manual"))
    if error_model is None:
        error_model = MultiLevelNVM()
    if not inplace:
        model = _deepcopy(model)

    def make(old: nn.Module) -> nn.Module:
        kw = dict(error_model=error_model, errors=errors, reads=reads, sampler=sampler, learn_scale=learn_scale)
        if isinstance(old, nn.Conv2d):
            if old.padding_mode != "zeros" or isinstance(old.padding, str):
                raise ValueError(f"cannot convert {old}: only numeric zero padding is supported")
            new: nn.Module = NoisyConv2d(old.in_channels, old.out_channels, old.kernel_size, old.stride,
                                         old.padding, old.dilation, old.groups, old.bias is not None,
                                         device=old.weight.device, dtype=old.weight.dtype, **kw)
        else:
            new = NoisyLinear(old.in_features, old.out_features, old.bias is not None,
                              device=old.weight.device, dtype=old.weight.dtype, **kw)
        with torch.no_grad():
            s = error_model.fit_scale(old.weight) if map_weights else 1.0
            new.weight.copy_(old.weight / s)
            new.scale.fill_(s)
            if old.bias is not None:
                new.bias.copy_(old.bias)
        new.train(old.training)
        return new

    def walk(parent: nn.Module) -> None:
        for name, child in list(parent.named_children()):
            if isinstance(child, NoisySynapse):
                continue
            if type(child) in _CONVERTIBLE:
                setattr(parent, name, make(child))
            else:
                walk(child)

    if type(model) in _CONVERTIBLE:
        model = make(model)
    else:
        walk(model)
    if not any(True for _ in synapses(model)):
        raise ValueError(f"{type(model).__name__} has no nn.Linear or nn.Conv2d layer to convert")
    if inference == "forward" and not getattr(model, "_spikenoise_hooked", False):
        model.register_forward_pre_hook(_new_inference_hook)
        model._spikenoise_hooked = True  # type: ignore[assignment]
    return model
