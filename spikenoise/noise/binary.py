"""Binary (+-1) weights with bit errors (seed paper 002): a 2-level NVM cell.

A BNN weight is one RRAM cell in LRS or HRS; a bit error reads -1 as +1 or +1 as -1. That is exactly
a 2-level :class:`~spikenoise.noise.nvm.MultiLevelNVM` with values ``(-1, +1)`` and confusion
``[[1 - p_mp, p_mp], [p_pm, 1 - p_pm]]``, so the synapse engine (static/dynamic, per-spike exact
sampler, error-aware training) applies unchanged. No new error-model class is needed.
"""
from __future__ import annotations

from .base import check_probability
from .nvm import MultiLevelNVM

__all__ = ["binary_weights", "bit_error_rate"]


def binary_weights(ber: float = 0.0, *, p_minus_to_plus: float | None = None,
                   p_plus_to_minus: float | None = None) -> MultiLevelNVM:
    """Binary weights (-1, +1) whose reads flip with bit error rate ``ber`` (each direction).

    ``p_minus_to_plus`` / ``p_plus_to_minus`` override one direction (asymmetric RRAM errors).
    Stored value: ``-1`` for a hidden weight < 0, ``+1`` for > 0 (a hidden weight of exactly 0 is
    stored as -1: MultiLevelNVM rounds the tie to the lower level).
    """
    ber = check_probability("ber", ber)
    mp = ber if p_minus_to_plus is None else check_probability("p_minus_to_plus", p_minus_to_plus)
    pm = ber if p_plus_to_minus is None else check_probability("p_plus_to_minus", p_plus_to_minus)
    return MultiLevelNVM.from_confusion([[1.0 - mp, mp], [pm, 1.0 - pm]], values=[-1.0, 1.0])


def bit_error_rate(model: MultiLevelNVM) -> tuple[float, float]:
    """``(p_minus_to_plus, p_plus_to_minus)`` of a binary-weight error model."""
    if not isinstance(model, MultiLevelNVM) or model.n_levels != 2:
        raise ValueError(f"not a binary-weight model: {model!r}")
    P = model.confusion
    return float(P[0, 1]), float(P[1, 0])
