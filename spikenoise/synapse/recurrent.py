"""Noisy ``nn.RNN`` / ``nn.GRU`` / ``nn.LSTM`` and their cells: every gate matrix is a noisy synapse.

The recurrence runs in Python over time. Per layer and direction, ``W_ih`` (all gates stacked,
``(G*H, in)``) and ``W_hh`` (``(G*H, H)``) are each a :class:`NoisyLinear` called once per
timestep, so the static/dynamic semantics are those of the engine: a static draw is frozen for
the whole sequence (one inference), a dynamic one is fresh at every step (``reads="step"``) or
every incoming spike/value (``reads="spike"``; the hidden state is graded, so it is one read
weighted by its value). Gate equations and weight layout are torch's (gates ``r, z, n`` for GRU,
``i, f, g, o`` for LSTM), so a converted module with errors off equals the torch module with
quantized weights. The single-step cells (``nn.RNNCell``, ``nn.GRUCell``, ``nn.LSTMCell``: one
call per timestep, e.g. inside snnTorch's ``SLSTM``) read ``W_ih`` and ``W_hh`` once per call.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .layers import NoisyLinear
from .mapping import WeightMapping

__all__ = ["NoisyRNN", "NoisyGRU", "NoisyLSTM", "NoisyRNNCell", "NoisyGRUCell", "NoisyLSTMCell"]

_GATES = {"RNN_TANH": 1, "RNN_RELU": 1, "GRU": 3, "LSTM": 4}


def _rnn_step(mode: str, gi, gh, h):
    return torch.tanh(gi + gh) if mode == "RNN_TANH" else torch.relu(gi + gh)


def _gru_step(gi, gh, h):
    ir, iz, i_n = gi.chunk(3, -1)
    hr, hz, h_n = gh.chunk(3, -1)
    r = torch.sigmoid(ir + hr)
    z = torch.sigmoid(iz + hz)
    n = torch.tanh(i_n + r * h_n)
    return (1 - z) * n + z * h


def _lstm_step(gi, gh, state):
    h, c = state
    i, f, g, o = (gi + gh).chunk(4, -1)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c), c


class _NoisyRecurrent(nn.Module):
    """Shared recurrence; use :class:`NoisyRNN`, :class:`NoisyGRU` or :class:`NoisyLSTM`."""

    mode = "RNN_TANH"

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False, **synapse):
        super().__init__()
        for name, v in (("input_size", input_size), ("hidden_size", hidden_size), ("num_layers", num_layers)):
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        if not 0.0 <= dropout <= 1.0:
            raise ValueError(f"dropout must be in [0, 1], got {dropout!r}")
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.bias, self.batch_first, self.dropout = bias, batch_first, float(dropout)
        self.bidirectional = bool(bidirectional)
        G, D = _GATES[self.mode], 2 if bidirectional else 1
        # index layer * D + direction, as torch's h_n
        self.ih = nn.ModuleList(NoisyLinear(input_size if k < D else D * hidden_size, G * hidden_size, bias,
                                            **synapse) for k in range(num_layers * D))
        self.hh = nn.ModuleList(NoisyLinear(hidden_size, G * hidden_size, bias, **synapse)
                                for _ in range(num_layers * D))

    def extra_repr(self) -> str:
        return (f"{self.input_size}, {self.hidden_size}, num_layers={self.num_layers}, bias={self.bias}, "
                f"batch_first={self.batch_first}, bidirectional={self.bidirectional}")

    @classmethod
    def from_torch(cls, old: nn.RNNBase, mapping: WeightMapping) -> "_NoisyRecurrent":
        """The noisy twin of a trained torch recurrent module (each gate matrix mapped by ``mapping``)."""
        if getattr(old, "proj_size", 0):
            raise ValueError(f"cannot convert {old}: LSTM with proj_size > 0 is not supported")
        w = old.weight_ih_l0
        kw = {} if old.mode in ("GRU", "LSTM") else {"nonlinearity": old.nonlinearity}
        new = cls(old.input_size, old.hidden_size, old.num_layers, old.bias, old.batch_first, old.dropout,
                  old.bidirectional, device=w.device, dtype=w.dtype, **kw, **mapping.synapse_kwargs())
        D = 2 if old.bidirectional else 1
        for layer in range(old.num_layers):
            for d in range(D):
                sfx = f"_l{layer}" + ("_reverse" if d else "")
                k = layer * D + d
                for part, mods in (("ih", new.ih), ("hh", new.hh)):
                    mapping.fill(mods[k], getattr(old, f"weight_{part}{sfx}"),
                                 getattr(old, f"bias_{part}{sfx}") if old.bias else None, old.training)
        new.train(old.training)
        return new

    def cell(self, gi: torch.Tensor, gh: torch.Tensor, state):
        """One step from the gate pre-activations ``gi = W_ih x + b_ih``, ``gh = W_hh h + b_hh``."""
        raise NotImplementedError

    def forward(self, input: torch.Tensor, hx=None):
        """``input`` ``(T, B, in)`` (``(B, T, in)`` if batch_first, or unbatched ``(T, in)``);
        returns ``(output, h_n)`` (LSTM: ``(output, (h_n, c_n))``) shaped as torch's."""
        if isinstance(input, nn.utils.rnn.PackedSequence):
            raise ValueError(f"{type(self).__name__} does not take a PackedSequence; pad the sequences instead")
        if input.dim() not in (2, 3) or input.shape[-1] != self.input_size:
            raise ValueError(f"{type(self).__name__} expects input (T, B, {self.input_size}) "
                             f"(batch_first: (B, T, {self.input_size})), got shape {tuple(input.shape)}")
        dtype = self.ih[0].weight.dtype
        out_dtype = input.dtype if input.is_floating_point() else dtype
        batched = input.dim() == 3
        x = input.to(dtype) if batched else input.to(dtype).unsqueeze(1)
        if batched and self.batch_first:
            x = x.transpose(0, 1)
        T, B = x.shape[0], x.shape[1]
        D, H = (2 if self.bidirectional else 1), self.hidden_size
        lstm = self.mode == "LSTM"
        if hx is None:
            zeros = x.new_zeros(self.num_layers * D, B, H)
            hx = (zeros, zeros) if lstm else zeros
        elif not batched:
            hx = tuple(h.unsqueeze(1) for h in hx) if lstm else hx.unsqueeze(1)
        h0 = hx[0] if lstm else hx
        if h0.shape != (self.num_layers * D, B, H):
            raise ValueError(f"hx must have shape {(self.num_layers * D, B, H)}, got {tuple(h0.shape)}")
        seq = list(x.unbind(0))
        h_n, c_n = [], []
        for layer in range(self.num_layers):
            outs = []
            for d in range(D):
                k = layer * D + d
                state = (hx[0][k].to(dtype), hx[1][k].to(dtype)) if lstm else hx[k].to(dtype)
                ys: list[torch.Tensor] = [x.new_empty(0)] * T
                for t in (range(T - 1, -1, -1) if d else range(T)):
                    h = state[0] if lstm else state
                    state = self.cell(self.ih[k](seq[t]), self.hh[k](h), state)
                    ys[t] = state[0] if lstm else state
                outs.append(ys)
                h_n.append(state[0] if lstm else state)
                if lstm:
                    c_n.append(state[1])
            seq = [torch.cat([o[t] for o in outs], -1) if D == 2 else outs[0][t] for t in range(T)]
            if self.dropout and self.training and layer < self.num_layers - 1:
                seq = [F.dropout(s, self.dropout, True) for s in seq]
        out = torch.stack(seq, 0)
        if self.batch_first and batched:
            out = out.transpose(0, 1)
        hn = torch.stack(h_n, 0)
        cn = torch.stack(c_n, 0) if lstm else None
        if not batched:
            out, hn = out.squeeze(1), hn.squeeze(1)
            cn = cn.squeeze(1) if lstm else None
        out, hn = out.to(out_dtype), hn.to(out_dtype)
        return (out, (hn, cn.to(out_dtype))) if lstm else (out, hn)


class NoisyRNN(_NoisyRecurrent):
    """``nn.RNN`` (tanh or relu) with noisy ``W_ih``/``W_hh``; arguments as ``nn.RNN`` plus the
    synapse options of :class:`NoisyLinear` (``error_model``, ``errors``, ``reads``, ...)."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False, *,
                 nonlinearity: str = "tanh", **synapse):
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
        self.mode = "RNN_TANH" if nonlinearity == "tanh" else "RNN_RELU"
        self.nonlinearity = nonlinearity
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional, **synapse)

    def cell(self, gi, gh, h):
        return _rnn_step(self.mode, gi, gh, h)


class NoisyGRU(_NoisyRecurrent):
    """``nn.GRU`` with noisy ``W_ih``/``W_hh`` (arguments as :class:`NoisyRNN`, no nonlinearity)."""

    mode = "GRU"

    def cell(self, gi, gh, h):
        return _gru_step(gi, gh, h)


class NoisyLSTM(_NoisyRecurrent):
    """``nn.LSTM`` (no ``proj_size``) with noisy ``W_ih``/``W_hh`` (arguments as :class:`NoisyGRU`)."""

    mode = "LSTM"

    def cell(self, gi, gh, state):
        return _lstm_step(gi, gh, state)


class _NoisyCell(nn.Module):
    """One timestep per call; use :class:`NoisyRNNCell`, :class:`NoisyGRUCell`, :class:`NoisyLSTMCell`."""

    gates = 1

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, **synapse):
        super().__init__()
        for name, v in (("input_size", input_size), ("hidden_size", hidden_size)):
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        self.input_size, self.hidden_size, self.bias = input_size, hidden_size, bias
        self.ih = NoisyLinear(input_size, self.gates * hidden_size, bias, **synapse)
        self.hh = NoisyLinear(hidden_size, self.gates * hidden_size, bias, **synapse)

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}, bias={self.bias}"

    @classmethod
    def from_torch(cls, old: nn.RNNCellBase, mapping: WeightMapping) -> "_NoisyCell":
        """The noisy twin of a trained torch cell (``W_ih``, ``W_hh`` mapped by ``mapping``)."""
        w = old.weight_ih
        kw = {"nonlinearity": old.nonlinearity} if isinstance(old, nn.RNNCell) else {}
        new = cls(old.input_size, old.hidden_size, old.bias, device=w.device, dtype=w.dtype, **kw,
                  **mapping.synapse_kwargs())
        for part, mod in (("ih", new.ih), ("hh", new.hh)):
            mapping.fill(mod, getattr(old, f"weight_{part}"), getattr(old, f"bias_{part}") if old.bias else None,
                         old.training)
        new.train(old.training)
        return new

    def step(self, gi, gh, state):
        raise NotImplementedError

    def forward(self, input: torch.Tensor, hx=None):
        """``input`` ``(B, in)`` or ``(in,)``; ``hx`` as the torch cell's (None: zeros)."""
        if input.dim() not in (1, 2) or input.shape[-1] != self.input_size:
            raise ValueError(f"{type(self).__name__} expects input (B, {self.input_size}), got shape "
                             f"{tuple(input.shape)}")
        dtype = self.ih.weight.dtype
        out_dtype = input.dtype if input.is_floating_point() else dtype
        batched = input.dim() == 2
        x = input.to(dtype) if batched else input.to(dtype).unsqueeze(0)
        lstm = self.gates == 4
        if hx is None:
            zeros = x.new_zeros(x.shape[0], self.hidden_size)
            hx = (zeros, zeros) if lstm else zeros
        elif not batched:
            hx = tuple(h.unsqueeze(0) for h in hx) if lstm else hx.unsqueeze(0)
        state = tuple(h.to(dtype) for h in hx) if lstm else hx.to(dtype)
        h = state[0] if lstm else state
        if h.shape != (x.shape[0], self.hidden_size):
            raise ValueError(f"hx must have shape {(x.shape[0], self.hidden_size)}, got {tuple(h.shape)}")
        out = self.step(self.ih(x), self.hh(h), state)
        outs = out if lstm else (out,)
        outs = tuple((o if batched else o.squeeze(0)).to(out_dtype) for o in outs)
        return outs if lstm else outs[0]


class NoisyRNNCell(_NoisyCell):
    """``nn.RNNCell`` with noisy ``W_ih``/``W_hh`` (synapse options as :class:`NoisyLinear`)."""

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, *, nonlinearity: str = "tanh",
                 **synapse):
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
        self.nonlinearity = nonlinearity
        super().__init__(input_size, hidden_size, bias, **synapse)

    def step(self, gi, gh, h):
        return _rnn_step("RNN_TANH" if self.nonlinearity == "tanh" else "RNN_RELU", gi, gh, h)


class NoisyGRUCell(_NoisyCell):
    """``nn.GRUCell`` with noisy ``W_ih``/``W_hh``."""

    gates = 3

    def step(self, gi, gh, h):
        return _gru_step(gi, gh, h)


class NoisyLSTMCell(_NoisyCell):
    """``nn.LSTMCell`` with noisy ``W_ih``/``W_hh``; returns ``(h, c)``."""

    gates = 4

    def step(self, gi, gh, state):
        return _lstm_step(gi, gh, state)
