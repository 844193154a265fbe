"""Parameter, operation and spike-rate counters (seed paper 000, Fig. 2B).

The counters hook every noisy synapse (:class:`~spikenoise.synapse.NoisySynapse`) of a model and
look at what each one receives, so they work on the model zoo and on any model converted with
:func:`spikenoise.convert` (e.g. a user's snnTorch network) alike. All counts are *per
inference* (per input sample): summed over every call (timestep) of a forward, divided by the
batch size.

For each synapse, with fan-out = ``out_features`` (Linear) or ``out_channels / groups`` per input
channel and per (kernel tap, output position) it reaches (Conv2d):

``macs``
    Dense multiply-accumulates: every input element times its fan-out, whatever its value (what an
    ANN accelerator computes). Conv: every (input element, kernel tap, output position) that
    touches the real input; taps that fall on zero padding are no operation, so borders are
    counted exactly (a ones-mask convolved with a ones kernel).
``synops``
    Event-driven synaptic operations: only non-zero inputs count, each times its fan-out (what an
    event-driven SNN core computes: one accumulate per spike and target). An integer input ``c``
    is ``|c|`` events (``c`` spikes), a graded non-zero input one event, as in the synapse engine.
    Conv: the non-zero mask convolved with a ones kernel, exact at the borders.
``ops``
    The layer's operations as the paper counts them: ``synops`` for a synapse with
    ``reads="spike"`` (event-driven), ``macs`` otherwise (``"once"``: CNN, ``"step"``: RNN, and the
    graded-input layers of the SNNs).
``weight_reads``
    How many weight values are read from NVM: ``reads="once"``: every weight once per inference;
    ``"step"``: every weight at every call whose input (for that sample) is not all zero;
    ``"spike"``: one read per ``synops`` (each event reads the weights it uses).

:func:`spike_rates` reports, per synapse, the fraction of its input elements that are non-zero
per call, i.e. the firing rate (spikes per neuron per timestep) of the presynaptic layer (seed
000 Fig. 2B). Synapses whose input is graded are left out unless ``spiking_only=False``.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator

import torch
import torch.nn as nn
import torch.nn.functional as F

from .synapse import NoisyConv1d, NoisyConv2d, NoisyElementwise, NoisyLinear, NoisySynapse

__all__ = ["count_parameters", "count_operations", "spike_rates", "conv_fanout"]

_COUNT_KEYS = ("macs", "synops", "ops", "weight_reads")


def count_parameters(model: nn.Module, trainable_only: bool = False) -> dict[str, Any]:
    """Parameters of ``model``.

    Returns:
        ``{"total": int, "nvm_weights": int, "layers": {module_name: int}}``: all parameters
        (``requires_grad`` ones only if ``trainable_only``); the weights stored in NVM cells (one
        cell per weight of a noisy synapse); and the parameters owned directly by each module
        (the root module is named ``"model"``).
    """
    layers: dict[str, int] = {}
    for name, mod in model.named_modules():
        n = sum(p.numel() for p in mod.parameters(recurse=False) if p.requires_grad or not trainable_only)
        if n:
            layers[name or "model"] = n
    total = sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
    cells = sum(m.weight.numel() for m in model.modules() if isinstance(m, NoisySynapse))  # type: ignore[attr-defined]
    return {"total": int(total), "nvm_weights": int(cells), "layers": layers}


def conv_fanout(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """Per batch row: sum over input elements of ``x`` of the (tap, output position) pairs each reaches.

    ``x`` is ``(B, C_in, H, W)`` of per-element weights (events, or ones for dense counts); the
    result ``(B,)`` float64 is exact at padded borders (zero padding contributes nothing). Multiply
    by ``out_channels / groups`` for synaptic operations.
    """
    kh, kw = conv.kernel_size
    m = x.to(torch.float64).sum(dim=1, keepdim=True)  # every input channel has the same geometry
    ones = torch.ones(1, 1, kh, kw, dtype=torch.float64, device=x.device)
    y = F.conv2d(m, ones, None, conv.stride, conv.padding, conv.dilation)
    return y.sum(dim=(1, 2, 3))


class _Tally:
    """Per-synapse accumulators filled by a forward hook."""

    def __init__(self, name: str, layer: NoisySynapse):
        self.name = name
        self.layer = layer
        self.calls = 0
        self.macs = 0.0
        self.synops = 0.0
        self.step_reads = 0.0
        self.nonzero = 0.0
        self.elements = 0.0
        self.spiking = True
        self.input_shape: tuple[int, ...] | None = None

    def __call__(self, module: nn.Module, args: tuple, output: Any) -> None:
        x = args[0]
        if not isinstance(x, torch.Tensor):
            return
        # integer/bool spike tensors are counts; a Conv1d runs as a Conv2d of height 1
        x = x.detach() if x.is_floating_point() else x.detach().to(torch.float64)
        if isinstance(module, NoisyConv1d):
            x = x.unsqueeze(2)
        self.calls += 1
        self.input_shape = tuple(x.shape)
        integer = bool(torch.equal(x, torch.round(x)))
        self.spiking &= integer
        ev = x.abs().to(torch.float64) if integer else (x != 0).to(torch.float64)
        self.nonzero += float((x != 0).sum())
        self.elements += float(x.numel())
        if isinstance(module, NoisyConv2d):
            fan = module.out_channels // module.groups
            self.macs += float(conv_fanout(module, torch.ones_like(x, dtype=torch.float64)).sum()) * fan
            self.synops += float(conv_fanout(module, ev).sum()) * fan
            rows_active = (x.reshape(x.shape[0], -1) != 0).any(dim=1)
        elif isinstance(module, NoisyLinear):
            fan = module.out_features
            self.macs += float(x.numel()) * fan
            self.synops += float(ev.sum()) * fan
            rows = x.reshape(1, -1) if x.dim() == 1 else x.reshape(x.shape[0], -1)
            rows_active = (rows != 0).any(dim=1)
        elif isinstance(module, NoisyElementwise):  # one cell per input element
            self.macs += float(x.numel())
            self.synops += float(ev.sum())
            rows_active = (x.reshape(x.shape[0], -1) != 0).any(dim=1)
        else:  # a synapse type without a counting rule is not counted
            return
        self.step_reads += float(rows_active.sum()) * module.weight.numel()  # type: ignore[attr-defined]

    def result(self, batch: int) -> dict[str, Any]:
        reads = self.layer.reads
        n_w = self.layer.weight.numel()  # type: ignore[attr-defined]
        macs, synops = self.macs / batch, self.synops / batch
        if reads == "once":
            weight_reads = float(n_w) if self.calls else 0.0
        elif reads == "step":
            weight_reads = self.step_reads / batch
        else:
            weight_reads = synops
        return {"type": type(self.layer).__name__, "reads": reads, "calls": self.calls,
                "input_shape": self.input_shape, "macs": macs, "synops": synops,
                "ops": synops if reads == "spike" else macs, "weight_reads": weight_reads}


@contextmanager
def _hooked(model: nn.Module) -> Iterator[list[_Tally]]:
    tallies: list[_Tally] = []
    handles = []
    for name, mod in model.named_modules():
        if isinstance(mod, NoisySynapse):
            t = _Tally(name or "model", mod)
            tallies.append(t)
            handles.append(mod.register_forward_hook(t))
    if not tallies:
        raise ValueError(f"{type(model).__name__} has no noisy synapses; wrap it with spikenoise.convert first")
    try:
        yield tallies
    finally:
        for h in handles:
            h.remove()


def _run(model: nn.Module, x: Any, batch_size: int | None) -> tuple[list[_Tally], int]:
    if batch_size is None:
        if not isinstance(x, torch.Tensor) or x.dim() == 0:
            raise ValueError("pass batch_size= when x is not a tensor with the batch on dim 0")
        batch_size = int(x.shape[0])
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size!r}")
    with _hooked(model) as tallies, torch.no_grad():
        model(x)
    return tallies, batch_size


def count_operations(model: nn.Module, x: Any, *, batch_size: int | None = None) -> dict[str, Any]:
    """Operations per inference of ``model`` on input ``x`` (one forward, no gradients).

    Args:
        model: a model with noisy synapses (the zoo, or any :func:`spikenoise.convert` output).
            It is run as it is (errors, train/eval mode); spike counts depend on the input and,
            with errors, on the draw.
        x: the model's input; a batch averages the counts over its samples.
        batch_size: number of samples in ``x`` (default ``x.shape[0]``; give it for time-major
            inputs such as snnTorch's ``(T, B, ...)``).

    Returns:
        ``{"layers": {synapse_name: {"type", "reads", "calls", "input_shape", "macs", "synops",
        "ops", "weight_reads"}}, "total": {"macs", "synops", "ops", "weight_reads"}}``, counts
        per inference (see the module docstring for the definitions).
    """
    tallies, batch = _run(model, x, batch_size)
    layers = {t.name: t.result(batch) for t in tallies}
    total = {k: float(sum(r[k] for r in layers.values())) for k in _COUNT_KEYS}
    return {"layers": layers, "total": total}


def spike_rates(model: nn.Module, x: Any, *, batch_size: int | None = None,
                spiking_only: bool = True) -> dict[str, float]:
    """Fraction of non-zero inputs per call at each synapse (presynaptic firing rate per timestep).

    Averaged over the batch, the calls (timesteps) and the presynaptic neurons. Synapses whose
    input was graded (not integer-valued) in some call are left out when ``spiking_only``.
    A recurrent synapse also sees the all-zero initial state (one call of its ``T``).
    """
    tallies, _ = _run(model, x, batch_size)
    return {t.name: t.nonzero / t.elements for t in tallies
            if t.elements and (t.spiking or not spiking_only)}
