"""Weights owned by snnTorch and Norse neurons, read through the noisy engine.

* snnTorch ``RLeaky`` / ``RSynaptic``: with ``all_to_all=True`` the recurrent weights are an
  ``nn.Linear`` / ``nn.Conv2d`` child that :func:`convert` maps like any other. With
  ``all_to_all=False`` the neuron multiplies its output spikes by a per-neuron (or shared) weight
  ``V``: it becomes a :class:`NoisyElementwise` synapse, one NVM cell per neuron (and the neuron's
  own reference to ``V`` is removed, so no stale clean copy stays behind).
* Norse recurrent cells (``LIFRecurrentCell``, ``LSNNRecurrent``, ``LIFAdExRecurrentCell``, ...)
  and ``LILinearCell`` read ``input_weights`` / ``recurrent_weights`` with
  ``torch.nn.functional.linear(x, W)`` at every step. Each becomes a :class:`NoisyLinearWeight`:
  a :class:`NoisyLinear` that stands in for the weight tensor, so Norse's own step functions run
  unchanged and every ``linear(x, W)`` call is one noisy read of the layer (one call per timestep,
  same static/dynamic semantics as any noisy layer; spikes in ``x`` read per spike). Any other use
  of such a weight raises (it would otherwise bypass the noise).

Autapse-free Norse cells (``autapses=False``, Norse's default) keep the diagonal of the hidden
recurrent weights at 0 before every forward (Norse zeroes those gradients; a trained diagonal would
otherwise grow autapses in fine-tuning). The stored zeros are still read with the device's errors,
like any zero-valued cell of the array.
"""
from __future__ import annotations

import inspect
import sys
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from .base import NoisySynapse, is_integer_valued
from .layers import NoisyLinear
from .mapping import WeightMapping
from .sampling import gaussian_reads, with_reads

__all__ = ["NoisyElementwise", "NoisyLinearWeight", "snntorch_factories", "norse_factories",
           "NORSE_WEIGHT_NAMES"]

#: The Parameters of Norse cells that hold synaptic weights.
NORSE_WEIGHT_NAMES = ("input_weights", "recurrent_weights")


def _elementwise(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    return x * w


class NoisyElementwise(NoisySynapse, nn.Module):
    """One NVM cell per neuron: ``y = scale * x * W_read`` with ``W`` broadcast over ``x``'s
    trailing dims (snnTorch's one-to-one recurrent weight ``V``).

    Args:
        shape: weight shape (e.g. ``(n,)`` for ``n`` neurons; ``(1,)`` for one shared weight).
        error_model, errors, reads, sampler, learn_scale, draws: as :class:`NoisyLinear`.

    Shapes: input ``(B, *)`` broadcastable with the weight; output the input's shape. A per-spike
    read of an integer input ``c`` is the sum of ``|c|`` independent reads of that neuron's cell
    (drawn one by one: every sampler is exact here, ``"gaussian"`` matches mean and variance).
    """

    def __init__(self, shape, *, error_model=None, errors: str = "none", reads: str = "spike",
                 sampler: str = "auto", learn_scale: bool = True, draws: str = "row", device=None, dtype=None):
        nn.Module.__init__(self)
        shape = tuple(shape) or (1,)
        self.weight = nn.Parameter(torch.empty(shape, device=device, dtype=dtype))
        self.register_parameter("bias", None)
        self.init_synapse(error_model, errors, reads, sampler, learn_scale, draws)

    def extra_repr(self) -> str:
        return f"shape={tuple(self.weight.shape)}, {self.synapse_repr()}"

    @classmethod
    def from_snntorch(cls, old: nn.Module, mapping: WeightMapping) -> "NoisyElementwise":
        """From snnTorch's ``RecurrentOneToOne`` (its ``V``: a Parameter or a buffer)."""
        V = torch.as_tensor(old.V)
        new = cls(V.shape, device=V.device, dtype=V.dtype if V.is_floating_point() else None,
                  **mapping.synapse_kwargs())
        return mapping.fill(new, V, None, old.training)

    def _rows(self, reads: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Draw ``(R, *W.shape)`` broadcast against ``x`` ``(B, *)``."""
        middle = x.dim() - 1 - self.weight.dim()
        if middle < 0:
            raise ValueError(f"NoisyElementwise with weight {tuple(self.weight.shape)} needs inputs with a "
                             f"batch dim and >= {self.weight.dim()} more dims, got shape {tuple(x.shape)}")
        return reads.reshape(reads.shape[0], *([1] * middle), *self.weight.shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out_dtype = x.dtype if x.is_floating_point() else self.weight.dtype
        x = x.to(self.weight.dtype)
        wq = self.quantized_weight()
        mode = self.read_mode
        if mode == "clean":
            y = x * wq
        elif mode in ("frozen", "per_row"):
            reads = self._rows(self.draw_reads(wq, self.draw_for(wq, x.shape[0])), x)
            y = with_reads(x, wq, reads, _elementwise, _elementwise)
        elif self.sampler == "gaussian":
            y = gaussian_reads(self.error_model, x, wq.expand(x.shape[1:]), _elementwise)
        else:
            y = self._per_spike(x, wq)
        return self.scale_and_bias(y).to(out_dtype)

    def _per_spike(self, x: torch.Tensor, wq: torch.Tensor) -> torch.Tensor:
        """Every spike an independent read of its neuron's cell; an integer ``c`` is ``|c|`` reads."""
        reps = int(x.detach().abs().max()) if is_integer_valued(x) and x.numel() else 1
        stored = wq.detach().expand(x.shape[1:])
        y = torch.zeros_like(x)
        for k in range(1, max(reps, 1) + 1):
            xk = x if reps <= 1 else x.sign() * (x.abs() >= k).to(x.dtype)
            y = y + xk * self.error_model.read(stored, x.shape[0])
        return with_reads(x, wq, y, lambda _x, reads: reads, _elementwise)


class NoisyLinearWeight(NoisyLinear):
    """A :class:`NoisyLinear` standing in for a weight tensor ``W`` ``(out, in)`` that library code
    reads as ``torch.nn.functional.linear(x, W)`` (Norse's step functions): that call becomes
    ``self(x)``, one noisy read. Any other torch function on it raises ``TypeError``."""

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is F.linear and len(args) >= 2 and isinstance(args[1], cls) and not isinstance(args[0], cls):
            bias = args[2] if len(args) > 2 else kwargs.get("bias")
            y = args[1](args[0])
            return y if bias is None else y + bias
        name = getattr(func, "__name__", repr(func))
        raise TypeError(f"a weight converted by spikenoise ({cls.__name__}) can only be read as "
                        f"torch.nn.functional.linear(x, W); the model called {name} on it. Keep that module "
                        "error-free with convert(..., keep_clean=[path]) or wrap the computation in a "
                        "supported layer")

    @classmethod
    def from_weight(cls, weight: torch.Tensor, mapping: WeightMapping, training: bool = True
                    ) -> "NoisyLinearWeight":
        """The noisy stand-in for a float ``weight`` ``(out, in)``."""
        if weight.dim() != 2:
            raise ValueError(f"a linear weight must be (out, in), got shape {tuple(weight.shape)}")
        new = cls(weight.shape[1], weight.shape[0], bias=False, device=weight.device, dtype=weight.dtype,
                  **mapping.synapse_kwargs())
        return mapping.fill(new, weight, None, training)


def _zero_diagonal(module: nn.Module, args) -> None:
    """Forward pre-hook: no autapses, the hidden recurrent weights' diagonal stays 0."""
    with torch.no_grad():
        # only when needed: an in-place write would invalidate graphs of earlier steps
        if bool(module.weight.diagonal().any()):
            module.weight.fill_diagonal_(0.0)


def snntorch_factories(mapping: WeightMapping, convert_children: Callable[[nn.Module], nn.Module]
                       ) -> dict[type, Callable[[nn.Module], nn.Module]]:
    """Factories for snnTorch's weight-owning neurons (``RLeaky``, ``RSynaptic``)."""
    if "snntorch" not in sys.modules:  # a model holding snnTorch neurons has imported it
        return {}
    try:
        import snntorch
        from snntorch._neurons import rleaky, rsynaptic
    except ImportError:  # snntorch absent: nothing of it to convert
        return {}
    one_to_one = tuple(c for c in (getattr(rleaky, "RecurrentOneToOne", None),
                                   getattr(rsynaptic, "RecurrentOneToOne", None)) if c is not None)

    def neuron(old: nn.Module) -> nn.Module:
        convert_children(old)
        if isinstance(old.recurrent, NoisyElementwise) and ("V" in old._parameters or "V" in old._buffers):
            # the neuron keeps V only to build `recurrent`; a clean copy left there would be unused
            delattr(old, "V")
        return old

    out: dict[type, Callable[[nn.Module], nn.Module]] = {c: neuron for c in (snntorch.RLeaky, snntorch.RSynaptic)}
    # LeakyParallel runs its leak (beta on the diagonal of an nn.RNN's weight_hh) and its input
    # weights inside one nn.RNN: converting that RNN would put the leak into NVM and drop the
    # diagonal mask, so it is left as is and its weights are reported by convert
    if hasattr(snntorch, "LeakyParallel"):
        out[snntorch.LeakyParallel] = lambda old: old
    out.update({c: (lambda old: NoisyElementwise.from_snntorch(old, mapping)) for c in one_to_one})
    return out


def norse_factories(mapping: WeightMapping) -> dict[type, Callable[[nn.Module], nn.Module]]:
    """Factories for Norse's weight-owning cells (every recurrent cell/module and ``LILinearCell``);
    empty when Norse is not imported (a model holding Norse cells has imported it; importing it
    here would cost seconds for every conversion)."""
    if "norse" not in sys.modules:
        return {}
    try:
        import norse.torch as norse
        from norse.torch.module.snn import SNNRecurrent, SNNRecurrentCell
    except ImportError:
        return {}

    def cell(old: nn.Module) -> nn.Module:
        for name in NORSE_WEIGHT_NAMES:
            w = old._parameters.get(name)
            if w is not None:
                del old._parameters[name]
                new = NoisyLinearWeight.from_weight(w, mapping, old.training)
                if name == "recurrent_weights" and not getattr(old, "autapses", True):
                    new.register_forward_pre_hook(_zero_diagonal)
                setattr(old, name, new)
        return old

    classes = [c for _, c in inspect.getmembers(norse, inspect.isclass)
               if issubclass(c, (SNNRecurrent, SNNRecurrentCell)) and c.__name__ != "CobaLIFCell"]
    classes.append(norse.LILinearCell)
    return {c: cell for c in classes}
