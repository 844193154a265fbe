"""Energy per inference from per-operation costs (seed paper 004, section III.C and Table III).

The estimate counts, in one forward pass of one input, for every synapse layer
(:class:`~spikenoise.synapse.NoisySynapse`, ``nn.Linear``, ``nn.Conv2d``; every call counts, so a
weight matrix re-used ``t`` times costs ``t`` VMMs):

* ``macs``: cells read = rows x columns of every vector-matrix multiply (VMM); with
  ``count_bias=True`` the bias is one more row (as in seed 004's "785x300" layouts);
  a convolution is one VMM per output position (``C_in/g * kh * kw`` rows, ``C_out`` columns);
* ``activations``: output neurons = output elements of every synapse call (hidden neurons
  and logits);
* ``adc``: column conversions, ``2 * C_out`` per VMM and row tile (two columns per signed
  weight; tiled layers use their array rows, others one tile);
* ``dac``: driven rows, one per input per VMM and column tile (one column tile for untiled layers).

and ``energy = macs * mac + activations * activation + adc * adc_cost + dac * dac_cost`` with
the costs of an :class:`OpCosts`, in joules.

Default costs (:data:`RERAM`, :data:`SONOS`) come from seed 004 Table III, whose numbers are

=============  ================  ==========  =====================
system         total / inference  VMM         neuron activation
=============  ================  ==========  =====================
MLP ReRAM      4.24 nJ            4.22 nJ     15 pJ
RNN ReRAM (t=7) 35.6 nJ           35.5 nJ     66 pJ
CNN ReRAM      480 nJ             479 nJ      358 pJ
MLP SONOS      6.04 nJ            6.02 nJ     15 pJ
RNN SONOS (t=7) 42.7 nJ           42.7 nJ     66 pJ
CNN SONOS      2.084 uJ           2.084 uJ    358 pJ
=============  ================  ==========  =====================

The table gives totals per system, not per operation, so we derive per-operation costs from its
MLP row (784-128-10, 101,770 cells incl. bias rows, 138 activations): ReRAM 41.47 fJ per cell
read (4.22 nJ / 101,770), SONOS 59.15 fJ; 108.7 fJ per activation (15 pJ / 138). The seed's
own cost model (CrossSim + a CMOS ReLU circuit) includes ADCs and drivers in its VMM energy; so
do ours (``adc = dac = 0`` by default). :func:`spikenoise.studies.resilience.seed004_check` compares this model with the whole
table (the RNN row is reproduced within a few percent; the CNN row is not -- see its docstring).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn as nn

from .synapse import NoisySynapse

__all__ = ["OpCosts", "RERAM", "SONOS", "EnergyReport", "count_ops", "estimate_energy",
           "SEED004_TABLE3"]

#: seed 004 Table III, joules: system -> (total, VMM, activation)
SEED004_TABLE3 = {
    ("mlp", "reram"): (4.24e-9, 4.22e-9, 15e-12),
    ("rnn", "reram"): (35.6e-9, 35.5e-9, 66e-12),
    ("cnn", "reram"): (480e-9, 479e-9, 358e-12),
    ("mlp", "sonos"): (6.04e-9, 6.02e-9, 15e-12),
    ("rnn", "sonos"): (42.7e-9, 42.7e-9, 66e-12),
    ("cnn", "sonos"): (2.084e-6, 2.084e-6, 358e-12),
}
_MLP_CELLS = 785 * 128 + 129 * 10  # 101,770: seed 004 MLP parameters = cells incl. bias rows
_MLP_NEURONS = 128 + 10


@dataclass(frozen=True)
class OpCosts:
    """Energy of one elementary operation, in joules.

    Attributes:
        mac: one cell read in a VMM (multiply-accumulate, incl. its share of the periphery).
        activation: one neuron activation.
        adc: one column conversion (default 0: included in ``mac``).
        dac: one driven input row (default 0: included in ``mac``).
        name: label.
    """

    mac: float
    activation: float
    adc: float = 0.0
    dac: float = 0.0
    name: str = "custom"

    def __post_init__(self) -> None:
        for k in ("mac", "activation", "adc", "dac"):
            v = getattr(self, k)
            if not (isinstance(v, (int, float)) and v >= 0):
                raise ValueError(f"{k} must be an energy >= 0 in joules, got {v!r}")


#: ReRAM costs derived from seed 004 Table III (MLP row)
RERAM = OpCosts(mac=4.22e-9 / _MLP_CELLS, activation=15e-12 / _MLP_NEURONS, name="ReRAM (seed 004 Table III)")
#: SONOS costs derived from seed 004 Table III (MLP row)
SONOS = OpCosts(mac=6.02e-9 / _MLP_CELLS, activation=15e-12 / _MLP_NEURONS, name="SONOS (seed 004 Table III)")


@dataclass
class EnergyReport:
    """Operation counts and energy of one inference (joules)."""

    macs: int
    activations: int
    adc: int
    dac: int
    vmm_J: float
    activation_J: float
    total_J: float
    costs: OpCosts
    layers: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["costs"] = asdict(self.costs)
        return d


def _layer_ops(mod: nn.Module, x: torch.Tensor, y: torch.Tensor, count_bias: bool) -> dict[str, int]:
    bias = int(count_bias and getattr(mod, "bias", None) is not None)
    array = getattr(mod, "array", None)
    if isinstance(mod, nn.Conv2d):
        k = mod.in_channels // mod.groups * mod.kernel_size[0] * mod.kernel_size[1]
        out = mod.out_channels
        vmms = y.shape[-1] * y.shape[-2]
        groups = mod.groups
    else:
        k, out = mod.in_features, mod.out_features  # type: ignore[assignment]
        vmms = y[0].numel() // out if y.dim() > 1 else 1
        groups = 1
    rows = k + bias
    row_tiles = 1 if array is None else -(-rows // array[0])
    col_tiles = 1 if array is None else -(-2 * (out // groups) // array[1])
    return {"macs": vmms * rows * out, "activations": vmms * out,
            "adc": vmms * 2 * out * row_tiles, "dac": vmms * rows * groups * col_tiles}


@torch.no_grad()
def count_ops(model: nn.Module, example: torch.Tensor, count_bias: bool = True) -> list[dict[str, Any]]:
    """Per-layer operation counts of one inference of ``example[:1]`` (every call counts)."""
    rows: list[dict[str, Any]] = []
    names = {m: n for n, m in model.named_modules()}
    handles = []

    def hook(mod: nn.Module, args: Any, out: torch.Tensor) -> None:
        ops = _layer_ops(mod, args[0], out, count_bias)
        rows.append({"layer": names.get(mod, type(mod).__name__), "type": type(mod).__name__, **ops})

    for m in model.modules():
        if isinstance(m, (NoisySynapse, nn.Linear, nn.Conv2d)):
            handles.append(m.register_forward_hook(hook))
    was_training = model.training
    model.eval()
    try:
        model(example[:1])
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    if not rows:
        raise ValueError(f"{type(model).__name__} has no linear/conv synapse layers to count")
    return rows


def estimate_energy(model: nn.Module, example: torch.Tensor, costs: OpCosts = RERAM,
                    count_bias: bool = True) -> EnergyReport:
    """Energy of one inference of ``model`` on one input (``example[:1]``), in joules.

    Args:
        model: any network of synapse layers (noisy, tiled or plain torch).
        example: a batch of inputs (only the first is run).
        costs: per-operation costs (:data:`RERAM`, :data:`SONOS` or your own :class:`OpCosts`).
        count_bias: count the bias as one more row of cells (seed 004 convention).
    """
    layers = count_ops(model, example, count_bias)
    tot = {k: sum(r[k] for r in layers) for k in ("macs", "activations", "adc", "dac")}
    vmm = tot["macs"] * costs.mac + tot["adc"] * costs.adc + tot["dac"] * costs.dac
    act = tot["activations"] * costs.activation
    for r in layers:
        r["energy_J"] = (r["macs"] * costs.mac + r["adc"] * costs.adc + r["dac"] * costs.dac
                         + r["activations"] * costs.activation)
    return EnergyReport(tot["macs"], tot["activations"], tot["adc"], tot["dac"], vmm, act, vmm + act, costs, layers)
