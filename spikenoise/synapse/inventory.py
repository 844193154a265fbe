"""What a converted model holds: :func:`summary` (a table of every synapse) and
:func:`unmapped_parameters` (weights left outside any noisy synapse; :func:`convert` raises on them).

A parameter counts as *covered* when it belongs to a noisy synapse (hidden weights, scale, bias),
to a normalization layer (its affine parameters are digital periphery, folded into thresholds or
biases on a chip), or is a neuron's own state parameter named in :data:`NEURON_PARAMETERS`
(``beta``, ``threshold``, ...) and not a ``*weight*``. Every other floating-point parameter is
reported.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

import torch
import torch.nn as nn

from .base import NoisySynapse

__all__ = ["summary", "SynapseTable", "unmapped_parameters", "NEURON_PARAMETERS", "DIGITAL_TYPES"]

#: Parameter names of neuron dynamics (snnTorch, Norse, the zoo): decay, threshold, reset,
#: time constants, surrogate slopes. They are not synaptic weights.
NEURON_PARAMETERS = frozenset({
    "beta", "alpha", "threshold", "graded_spikes_factor", "reset", "tau", "tau_mem", "tau_syn", "tau_adapt",
    "tau_mem_inv", "tau_syn_inv", "tau_adapt_inv", "v_th", "v_leak", "v_reset", "decay", "leak", "slope",
    "a", "b", "beta_adapt", "delta_T", "rho", "gamma",
})

#: Module types whose parameters are digital periphery (not NVM synapses).
DIGITAL_TYPES: tuple[type, ...] = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)


def _is_neuron_parameter(name: str) -> bool:
    return "weight" not in name.lower() and name in NEURON_PARAMETERS


def unmapped_parameters(model: nn.Module, keep_clean: Iterable[str] = (),
                        mapped_types: tuple[type, ...] = ()) -> list[str]:
    """Floating-point parameters of ``model`` outside any noisy synapse, as
    ``"path (shape) in ModuleType"`` lines; modules at ``keep_clean`` paths (and below) are skipped,
    and so are modules whose exact type is in ``mapped_types`` (about to become synapses)."""
    keep = tuple(keep_clean)
    found = []
    seen: set[int] = set()
    for path, module in model.named_modules(remove_duplicate=False):
        if isinstance(module, NoisySynapse):
            seen.update(id(p) for p in module.parameters())
    for path, module in model.named_modules():
        if isinstance(module, NoisySynapse) or isinstance(module, DIGITAL_TYPES) or type(module) in mapped_types:
            continue
        if any(path == k or path.startswith(k + ".") for k in keep):
            continue
        for name, p in module.named_parameters(recurse=False):
            if not p.is_floating_point() or id(p) in seen or _is_neuron_parameter(name):
                continue
            seen.add(id(p))
            full = f"{path}.{name}" if path else name
            found.append(f"{full} {tuple(p.shape)} in {type(module).__name__}")
    return found


@dataclass
class SynapseTable:
    """Rows of :func:`summary`; prints as a table (``print(sn.summary(net))``)."""

    rows: list[dict[str, Any]] = field(default_factory=list)

    COLUMNS = ("path", "type", "fan_in", "fan_out", "errors", "reads", "sampler", "levels_used")

    def __len__(self) -> int:
        return len(self.rows)

    def __str__(self) -> str:
        cells = [list(self.COLUMNS)] + [[str(r[c]) for c in self.COLUMNS] for r in self.rows]
        widths = [max(len(row[i]) for row in cells) for i in range(len(self.COLUMNS))]
        lines = ["  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip() for row in cells]
        lines.insert(1, "  ".join("-" * w for w in widths))
        return "\n".join(lines)

    __repr__ = __str__


def _levels_used(s: NoisySynapse) -> str:
    """Histogram of stored levels ``value:count``; ``-`` for a model without discrete levels."""
    lv = s.error_model.discrete()
    if lv is None:
        return "-"
    with torch.no_grad():
        q = s.error_model.quantize(s.weight.detach())
        idx = torch.round((q.double() - float(lv.values[0])) / lv.step).clamp(0, lv.values.numel() - 1).long()
        counts = torch.bincount(idx.flatten().cpu(), minlength=lv.values.numel()).tolist()
    return " ".join(f"{float(v):g}:{c}" for v, c in zip(lv.values.tolist(), counts) if c)


def summary(model: nn.Module) -> SynapseTable:
    """A table of every noisy synapse of ``model``: module path, layer type, fan-in (inputs per
    output), fan-out (outputs per input cell row), errors, reads, sampler and the stored levels in
    use (``level:count``)."""
    table = SynapseTable()
    for path, m in model.named_modules():
        if not isinstance(m, NoisySynapse):
            continue
        w = m.weight
        fan_in = w[0].numel() if w.dim() > 1 else 1
        table.rows.append(dict(path=path or "(model)", type=type(m).__name__, fan_in=fan_in,
                               fan_out=w.shape[0] if w.dim() > 1 else 1, errors=m.errors, reads=m.reads,
                               sampler=m.sampler, levels_used=_levels_used(m)))
    return table
