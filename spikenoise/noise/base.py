"""The interface every error model implements.

An error model answers three questions for the synapse engine (:mod:`spikenoise.synapse`):

1. *Storage*: which value is written to memory for a full-precision hidden weight
   (:meth:`ErrorModel.quantize`), and over which range the straight-through gradient passes
   (:meth:`ErrorModel.ste_range`).
2. *One read*: what value an independent read of a stored weight returns (:meth:`ErrorModel.read`).
3. *Cells*: how a stored signed weight sits on a pair of cells in two columns (:meth:`ErrorModel.cells`,
   :attr:`ErrorModel.dg`), and how a programming draw is kept and applied
   (:meth:`ErrorModel.draw_errors`, :meth:`ErrorModel.weights_with`, :meth:`ErrorModel.cells_with`), so
   that analog layers never ask which model they hold.
4. Optional shortcuts: the exact level structure (:meth:`ErrorModel.discrete`) that enables the fast
   exact per-spike sampler, and the read mean/variance (:meth:`ErrorModel.read_moments`) for the
   labelled-approximate Gaussian sampler.

*When* a read happens (once per inference, per timestep, per spike) and whether it is frozen
(static) or fresh (dynamic) is decided by the synapse, never by the error model.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch

__all__ = ["ErrorModel", "DiscreteLevels", "error_model_from_config", "check_probability"]

_REGISTRY: dict[str, type["ErrorModel"]] = {}


def check_probability(name: str, p: float) -> float:
    """Return ``float(p)`` or raise ValueError naming the bad probability."""
    try:
        v = float(p)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a probability in [0, 1], got {p!r}") from None
    if not 0.0 <= v <= 1.0 or v != v:
        raise ValueError(f"{name} must be a probability in [0, 1], got {p!r}")
    return v


@dataclass(frozen=True)
class DiscreteLevels:
    """Stored values sit on equally spaced levels and a read returns one of them.

    Attributes:
        values: (L,) float64, the digital value of each level, increasing, spacing ``step``.
        confusion: (L, L) float64, ``confusion[i, j]`` = P(level i is read as level j); rows sum to 1.
    """

    values: torch.Tensor
    confusion: torch.Tensor

    @property
    def step(self) -> float:
        return float(self.values[1] - self.values[0]) if self.values.numel() > 1 else 1.0


class ErrorModel:
    """Base class of all error models. Subclasses set ``kind`` and implement the hooks."""

    kind: ClassVar[str] = ""

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.kind:
            _REGISTRY[cls.kind] = cls

    # -- storage ---------------------------------------------------------------------------
    def quantize(self, w: torch.Tensor) -> torch.Tensor:
        """Value stored for hidden weights ``w`` (no error, no gradient), same shape."""
        raise NotImplementedError

    def ste_range(self) -> tuple[float, float] | None:
        """Hidden-weight range where the straight-through gradient passes (None: everywhere)."""
        return None

    def fit_scale(self, w: torch.Tensor) -> float:
        """Layer scale ``s`` so that ``w / s`` fits the stored range (used by :func:`convert`)."""
        return 1.0

    # -- reading ---------------------------------------------------------------------------
    def read(self, stored: torch.Tensor, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` independent reads of every stored value: shape ``(n, *stored.shape)``."""
        raise NotImplementedError

    @property
    def noiseless(self) -> bool:
        """True when a read always returns the stored value (the engine then skips sampling)."""
        return False

    def discrete(self) -> DiscreteLevels | None:
        """Level structure for the exact fast per-spike sampler, or None if not discrete."""
        return None

    def sum_sampler(self):
        """Exact sampler of the summed error of ``n`` reads per level (the fast per-spike path).

        Built from :meth:`discrete` and cached; only called when :meth:`discrete` is not None.
        """
        if getattr(self, "_sum_of_reads", None) is None:
            from ._tables import SumOfReads

            levels = self.discrete()
            if levels is None:
                raise ValueError(f"{type(self).__name__} is not discrete: no exact per-spike sampler")
            self._sum_of_reads = SumOfReads(levels.confusion.numpy())
        return self._sum_of_reads

    def read_moments(self, stored: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and variance of one read of each stored value (for ``sampler="gaussian"``)."""
        raise NotImplementedError(f"{type(self).__name__} has no read moments; use sampler='exact'")

    # -- cells and programming draws (analog layers) ----------------------------------------
    @property
    def dg(self) -> float:
        """Weight 1 in conductance units of ``G_max``: ``weight = (G+ - G-) / dg`` (ideal cells: 1)."""
        return 1.0

    def cells(self, stored: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Conductances ``(G+, G-)`` (units of ``G_max``) holding signed weights ``stored``, same shape.

        Default: two ideal cells with ``G_min = 0`` (``G+ = max(w, 0)``, ``G- = max(-w, 0)``).
        Differentiable in ``stored``.
        """
        return stored.clamp_min(0), (-stored).clamp_min(0)

    def draw_errors(self, stored: torch.Tensor, n: int,
                    generator: torch.Generator | None = None) -> tuple[torch.Tensor, ...]:
        """``n`` independent draws of the errors of ``stored`` (no gradient), each ``(n, *stored.shape)``.

        Default: one tensor, the error of a read in weight units. A model whose cells err one by
        one (:class:`~spikenoise.noise.analog.DifferentialCells`) returns one tensor per cell.
        """
        w = stored.detach()
        return (self.read(w, n, generator) - w,)

    def weights_with(self, stored: torch.Tensor, errors: tuple[torch.Tensor, ...] | None) -> torch.Tensor:
        """Signed weights ``(n, *stored.shape)`` of a draw (``n = 1`` when ``errors`` is None).

        Differentiable in ``stored`` (the errors are constants).
        """
        w = stored.unsqueeze(0)
        return w if errors is None else w + errors[0]

    def cells_with(self, stored: torch.Tensor,
                   errors: tuple[torch.Tensor, ...] | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Conductances ``(G+, G-)``, each ``(n, *stored.shape)``, of a draw (units of ``G_max``)."""
        return self.cells(self.weights_with(stored, errors))

    # -- configuration ---------------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        """JSON-serialisable description; ``error_model_from_config(m.config())`` rebuilds ``m``."""
        raise NotImplementedError

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ErrorModel) and self.config() == other.config()

    def __hash__(self) -> int:
        return hash(repr(sorted(self.config().items())))


def error_model_from_config(cfg: dict[str, Any]) -> ErrorModel:
    """Rebuild an error model from :meth:`ErrorModel.config` output."""
    cfg = dict(cfg)
    kind = cfg.pop("kind", None)
    if kind not in _REGISTRY:
        raise ValueError(f"unknown error model kind {kind!r}; known: {sorted(_REGISTRY)}")
    return _REGISTRY[kind].from_config(cfg)  # type: ignore[attr-defined]
