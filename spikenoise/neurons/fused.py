"""Whole-sequence light-GRU and SpikGRU layers with a hand-written backward pass (BPTT).

:func:`light_gru_sequence` and :func:`spikgru_sequence` run the recurrence of one layer over all
timesteps as one autograd node: the forward loop runs without autograd and keeps only what the
backward needs; the backward is one loop of a few fused ops per step, and the gradient of the
recurrent weights is one ``(T*B)``-row matmul after it. They compute exactly the step functions
of :mod:`.gru` iterated over time, with the recurrent synapse ``u = scale * (h_{t-1} R^T) + bias``
folded in; the zoo layers use them when the recurrent weights are the same at every step (no
errors, or a static draw) and gradients are needed.

``R`` is the stored weight matrix ``(2H, H)`` (gradients to it are returned as to ``weight``) or,
when ``reads`` is given, the read weights: ``(1, 2H, H)`` shared by the batch or ``(B, 2H, H)`` one
matrix per batch row. With ``reads``, the gradient to ``weight`` is straight-through (the read
weights' gradient summed over rows), as the synapse engine does; the value and the gradients to
the inputs and ``scale`` use the reads.

Layout: inputs ``wx`` ``(B, T, 2H)``, outputs ``(B, T, H)``; internally time-major, so that a
timestep is one contiguous ``(B, .)`` block.
"""
from __future__ import annotations

from typing import Any

import torch

from .surrogate import GAMMA, V_TH, SpikeGrad, spike

__all__ = ["light_gru_sequence", "spikgru_sequence"]


def _recurrent_matrix(weight: torch.Tensor, reads: torch.Tensor | None) -> torch.Tensor:
    """The matrix the recurrence multiplies by: ``(2H, H)`` shared or ``(B, 2H, H)`` per row."""
    if reads is None:
        return weight
    return reads[0] if reads.shape[0] == 1 else reads


class _Recurrent:
    """The recurrent product ``scale * (h R^T)`` for a shared or a per-row ``R``."""

    def __init__(self, R: torch.Tensor, scale: float, T: int, B: int):
        self.R, self.scale, self.per_row = R, scale, R.dim() == 3
        # per row: (B, 1, H) x (B, H, 2H) is a fast batched product; (B, 2H, H) x (B, H, 1) is a
        # slow batched matrix-vector product (about 10x on one CPU core)
        self.Rt = R.transpose(1, 2).contiguous() if self.per_row else R.t()
        # per row, u_t = h_{t-1} R_b^T is kept for the scale's gradient; shared, that comes from
        # the weight gradient (dL/dscale = <G, R>)
        self.u = R.new_zeros(T, B, R.shape[-2]) if self.per_row else None

    def pre(self, xb_t: torch.Tensor, h: torch.Tensor, t: int) -> torch.Tensor:
        """``xb_t + scale * (h R^T)``: the pre-activations of step ``t`` (``h`` the state before it)."""
        if not self.per_row:
            return torch.addmm(xb_t, h, self.Rt, alpha=self.scale)
        torch.bmm(h.unsqueeze(1), self.Rt, out=self.u[t].unsqueeze(1))
        return torch.add(xb_t, self.u[t], alpha=self.scale)

    def saved(self) -> torch.Tensor:
        """What the backward needs besides ``R``: ``u`` per row, else an empty tensor."""
        return self.u if self.per_row else self.R.new_empty(0)

    @staticmethod
    def backward(g: torch.Tensor, Rs: torch.Tensor, acc: torch.Tensor | None = None) -> torch.Tensor:
        """``g Rs`` (+ ``acc``), ``Rs`` = scale * R: the gradient to the recurrent input."""
        if Rs.dim() == 3:
            if acc is None:
                return torch.bmm(g.unsqueeze(1), Rs).squeeze(1)
            return torch.baddbmm(acc.unsqueeze(1), g.unsqueeze(1), Rs).squeeze(1)
        return g @ Rs if acc is None else torch.addmm(acc, g, Rs)


def _inputs_with_bias(wx: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """``wx + bias`` time-major ``(T, B, 2H)``, contiguous."""
    x = wx.transpose(0, 1)
    if bias is None:
        return x.contiguous()
    # out= keeps the result time-major (x + bias alone would keep x's batch-major strides)
    return torch.add(x, bias, out=wx.new_empty(x.shape))


def _shifted(seq: torch.Tensor) -> torch.Tensor:
    """``seq`` (T, B, H) delayed by one step, zeros first: the state before each step."""
    return torch.cat([seq.new_zeros(1, *seq.shape[1:]), seq[:-1]])


def _common_grads(ctx: Any, dpre: torch.Tensor, prev_in: torch.Tensor, u: torch.Tensor, R: torch.Tensor,
                  scale: float):
    """Gradients to ``wx``, ``weight``, ``scale`` and ``bias`` from ``dpre`` (T, B, 2H) and the
    recurrent inputs ``prev_in`` (T, B, H); ``u`` as :meth:`_Recurrent.saved`."""
    T, B, H2 = dpre.shape
    need = ctx.needs_input_grad
    dwx = dpre.transpose(0, 1) if need[0] else None
    G = None
    if need[1] or (need[2] and R.dim() == 2):
        # one (2H, T*B) x (T*B, H) product for every timestep and batch row
        G = dpre.reshape(T * B, H2).t() @ prev_in.reshape(T * B, -1)
    dweight = G * scale if need[1] else None
    dscale = None
    if need[2]:
        dscale = ((dpre * u).sum() if R.dim() == 3 else (G * R).sum()).reshape(ctx.scale_shape)
    dbias = dpre.sum((0, 1)) if ctx.has_bias and need[3] else None
    return dwx, dweight, dscale, dbias


def _prepare(wx: torch.Tensor, weight: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor | None,
             reads: torch.Tensor | None) -> tuple:
    """What both sequence forwards start from: ``(B, T, H, scale value, R, recurrent product, x + bias)``."""
    B, T, H2 = wx.shape
    s = float(scale)
    R = _recurrent_matrix(weight, reads)
    return B, T, H2 // 2, s, R, _Recurrent(R, s, T, B), _inputs_with_bias(wx, bias)


class _LightGRUSequence(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, wx: torch.Tensor, weight: torch.Tensor, scale: torch.Tensor,  # type: ignore[override]
                bias: torch.Tensor | None, reads: torch.Tensor | None) -> torch.Tensor:
        B, T, H, s, R, rec, xb = _prepare(wx, weight, scale, bias, reads)
        hs = wx.new_empty(T, B, H)
        sigs = wx.new_empty(T, B, 2 * H)     # sigmoid(2a), update gate z
        local = wx.new_empty(T, B, 2, H)  # dh/da, dh/dzbar: the step's local derivatives
        # tanh(a) = 2 sigmoid(2a) - 1: one sigmoid for both halves (torch's CPU tanh costs ~7 sigmoids)
        twice = wx.new_ones(2 * H)
        twice[:H] = 2.0
        h = wx.new_zeros(B, H)
        for t in range(T):
            pre = rec.pre(xb[t], h, t) if t else xb[0]
            sig = torch.sigmoid(pre * twice, out=sigs[t])
            zt = sig[:, H:]
            c = torch.mul(sig[:, :H], 2.0).sub_(1.0)
            d = h - c
            h = torch.addcmul(c, zt, d, out=hs[t])  # z h + (1 - z) c
            # dh/da = (1 - z)(1 - c^2) = 4 (1 - z) sig_a (1 - sig_a), dh/dzbar = (h_prev - c) z (1 - z)
            q = torch.addcmul(sig, sig, sig, value=-1.0)  # sig (1 - sig), both halves
            qa = q[:, :H]
            torch.mul(torch.addcmul(qa, qa, zt, value=-1.0), 4.0, out=local[t, :, 0])
            torch.mul(d, q[:, H:], out=local[t, :, 1])
        ctx.save_for_backward(hs, sigs, local, rec.saved(), R)
        ctx.scale_value, ctx.scale_shape, ctx.has_bias = s, scale.shape, bias is not None
        return hs.transpose(0, 1).contiguous()

    @staticmethod
    def backward(ctx: Any, dhs: torch.Tensor):  # type: ignore[override]
        hs, sigs, local, u, R = ctx.saved_tensors
        s = ctx.scale_value
        T, B, H = hs.shape
        z = sigs[:, :, H:]
        dhs = dhs.transpose(0, 1)
        dpre = hs.new_empty(T, B, 2, H)
        Rs = R * s
        carry = None
        for t in range(T - 1, -1, -1):
            dh = dhs[t] if carry is None else dhs[t] + carry
            torch.mul(dh.unsqueeze(1), local[t], out=dpre[t])
            if t:
                carry = _Recurrent.backward(dpre[t].view(B, 2 * H), Rs, dh * z[t])
        dpre = dpre.view(T, B, 2 * H)
        prev = _shifted(hs)
        return (*_common_grads(ctx, dpre, prev, u, R, s), None)


def light_gru_sequence(wx: torch.Tensor, weight: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor | None,
                       reads: torch.Tensor | None = None) -> torch.Tensor:
    """Light-GRU hidden states ``(B, T, H)`` from zero state, as :func:`~.gru.light_gru_step` per step.

    Args:
        wx: input projections ``W x_t + b_W`` ``(B, T, 2H)``: candidate first, gate second.
        weight: recurrent weights ``(2H, H)`` (gradient: as to ``R``, or straight-through with reads).
        scale: 0-dim scale of the recurrent synapse; bias: ``(2H,)`` or None.
        reads: None (``R = weight``), or read weights ``(1 | B, 2H, H)`` (no gradient).
    """
    return _LightGRUSequence.apply(wx, weight, scale, bias, reads)


class _SpikGRUSequence(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, wx: torch.Tensor, weight: torch.Tensor, scale: torch.Tensor,  # type: ignore[override]
                bias: torch.Tensor | None, reads: torch.Tensor | None, alpha: torch.Tensor, threshold: float,
                gamma: float, spike_grad: SpikeGrad, detach_reset: bool) -> torch.Tensor:
        B, T, H, s, R, rec, xb = _prepare(wx, weight, scale, bias, reads)
        z = wx.new_empty(T, B, H)
        cur = wx.new_empty(T, B, H)     # i_t
        v = wx.new_empty(T, B, H)
        spikes = wx.new_empty(T, B, H)
        gate = wx.new_empty(T, B, H)    # dv/dzbar = (v_prev - i) z (1 - z)
        i_prev = v_prev = s_prev = wx.new_zeros(B, H)
        default = spike_grad is spike
        for t in range(T):
            pre = rec.pre(xb[t], s_prev, t) if t else xb[0]
            zt = torch.sigmoid(pre[:, :H], out=z[t])
            torch.addcmul(pre[:, H:], alpha, i_prev, out=cur[t])
            d = v_prev - cur[t]
            # z v_prev + (1 - z) i - V_th s_prev
            torch.addcmul(cur[t], zt, d, out=v[t]).sub_(s_prev, alpha=threshold)
            if default:
                torch.gt(v[t], threshold, out=spikes[t])  # v > V_th exactly when v - V_th > 0
            else:
                spikes[t] = spike_grad(v[t], threshold, gamma)
            torch.mul(d, torch.addcmul(zt, zt, zt, value=-1.0), out=gate[t])
            i_prev, v_prev, s_prev = cur[t], v[t], spikes[t]
        ctx.save_for_backward(z, cur, v, spikes, gate, rec.saved(), R, alpha)
        ctx.threshold, ctx.gamma, ctx.spike_grad, ctx.detach_reset = threshold, gamma, spike_grad, detach_reset
        ctx.scale_value, ctx.scale_shape, ctx.has_bias = s, scale.shape, bias is not None
        return spikes.transpose(0, 1).contiguous()

    @staticmethod
    def backward(ctx: Any, dspikes: torch.Tensor):  # type: ignore[override]
        z, cur, v, spikes, gate, u, R, alpha = ctx.saved_tensors
        s = ctx.scale_value
        T, B, H = z.shape
        dspikes = dspikes.transpose(0, 1)
        if ctx.spike_grad is spike:
            # SpikeFunction's surrogate 1 / (1 + gamma (v - V_th)^2), in place
            surrogate = (v - ctx.threshold).square_().mul_(ctx.gamma).add_(1.0).reciprocal_()
        else:
            with torch.enable_grad():
                # ds/dv of the injected spike function at every step at once (elementwise surrogate)
                vv = v.detach().requires_grad_(True)
                out = ctx.spike_grad(vv, ctx.threshold, ctx.gamma)
                (surrogate,) = torch.autograd.grad(out, vv, torch.ones_like(out))
        leak = 1 - z
        dpre = z.new_empty(T, B, 2 * H)
        Rs = R * s
        carry_s = carry_v = carry_i = None
        for t in range(T - 1, -1, -1):
            ds = dspikes[t] if carry_s is None else dspikes[t] + carry_s
            dv = ds * surrogate[t] if carry_v is None else torch.addcmul(carry_v, ds, surrogate[t])
            di = dpre[t, :, H:]
            if carry_i is None:
                torch.mul(dv, leak[t], out=di)
            else:
                torch.addcmul(carry_i, dv, leak[t], out=di)
            torch.mul(dv, gate[t], out=dpre[t, :, :H])
            if t:
                carry_v = dv * z[t]
                carry_i = di * alpha
                carry_s = _Recurrent.backward(dpre[t], Rs)
                if not ctx.detach_reset:  # dv_t / ds_{t-1} = -V_th
                    carry_s.sub_(dv, alpha=ctx.threshold)
        grads = _common_grads(ctx, dpre, _shifted(spikes), u, R, s)
        dalpha = (dpre[:, :, H:] * _shifted(cur)).sum((0, 1)) if ctx.needs_input_grad[5] else None
        return (*grads, None, dalpha, None, None, None, None)


def spikgru_sequence(wx: torch.Tensor, weight: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor | None,
                     reads: torch.Tensor | None, alpha: torch.Tensor, threshold: float = V_TH,
                     gamma: float = GAMMA, spike_grad: SpikeGrad = spike, detach_reset: bool = False) -> torch.Tensor:
    """SpikGRU spikes ``(B, T, H)`` from zero state, as :func:`~.gru.spikgru_step` per step.

    Args:
        wx: input projections ``(B, T, 2H)``: gate ``W_z x + b_z`` first, current ``W_i x + b_i`` second.
        weight, scale, bias, reads: the recurrent synapse, as :func:`light_gru_sequence`.
        alpha: current leak ``(H,)``, used as given (clamp it to [0, 1] before).
        threshold, gamma, spike_grad, detach_reset: as :func:`~.gru.spikgru_step`; ``spike_grad``
            must be elementwise (its surrogate derivative is taken at all timesteps at once).
    """
    return _SpikGRUSequence.apply(wx, weight, scale, bias, reads, alpha, float(threshold), float(gamma),
                                  spike_grad, bool(detach_reset))
