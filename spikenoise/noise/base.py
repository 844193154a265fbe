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

import operator
import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

__all__ = ["ErrorModel", "DiscreteLevels", "Reader", "error_model_from_config", "check_probability", "check_flag",
           "check_reads", "check_nonnegative", "as_real", "NONFINITE"]

#: What a noisy synapse does with NaN/inf in its input or hidden weights: ``"raise"`` a ValueError
#: naming the layer, or ``"propagate"`` them as IEEE arithmetic does (bit-flip studies, whose
#: exponent flips produce inf/NaN by design).
NONFINITE = ("raise", "propagate")

_REGISTRY: dict[str, type["ErrorModel"]] = {}


def as_real(name: str, value: Any, expected: str) -> float:
    """``float(value)``, or ValueError ``"<name> must be <expected>, got <value>"``; bools and
    strings are refused, not coerced (``True`` or ``"0.5"`` as a parameter is a caller's mistake)."""
    if isinstance(value, (bool, str, bytes)):
        raise ValueError(f"{name} must be {expected}, got {value!r}")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be {expected}, got {value!r}") from None


def check_probability(name: str, p: float) -> float:
    """Return ``float(p)`` or raise ValueError naming the bad probability."""
    v = as_real(name, p, "a probability in [0, 1]")
    if not 0.0 <= v <= 1.0 or v != v:
        raise ValueError(f"{name} must be a probability in [0, 1], got {p!r}")
    return v


def check_nonnegative(name: str, value: Any, what: str = "") -> float:
    """Return ``float(value)`` or raise ValueError naming ``name`` (``what`` describes it, e.g. units)
    unless it is a finite number >= 0 (bools and strings are refused, not coerced)."""
    label = f"{name} ({what})" if what else name
    v = as_real(label, value, "a number >= 0")
    if not math.isfinite(v) or v < 0:
        raise ValueError(f"{label} must be finite and >= 0, got {value!r}")
    return v


def check_reads(n: Any) -> int:
    """``n`` (a number of reads) if it is an integer >= 0, else ValueError."""
    try:
        k = operator.index(n)  # ints, numpy ints, 0-d int tensors
    except TypeError:
        k = -1
    if isinstance(n, bool) or k < 0:
        raise ValueError(f"number of reads n must be an integer >= 0, got {n!r}")
    return k


def check_flag(name: str, value: Any) -> bool:
    """``value`` if it is a bool (numpy bools included), else TypeError naming ``name``."""
    if isinstance(value, bool) or type(value).__name__ == "bool_":
        return bool(value)
    raise TypeError(f"{name} must be True or False, got {value!r}")


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
    #: the synapse's NaN/inf policy (:data:`NONFINITE`) when none is given: reads of this model
    #: are finite, so a non-finite value is a bug upstream and raises
    default_nonfinite: ClassVar[str] = "raise"

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        # only a class that names its own kind: a subclass that inherits one (a test spy, a user's
        # variant) must not take over loading the parent's configs and checkpoints
        if cls.__dict__.get("kind"):
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

    def reader(self, stored: torch.Tensor) -> "Reader":
        """Repeated independent reads of fixed ``stored`` values (:class:`Reader`).

        A synapse keeps the reader while its stored weights hold, so a model can prepare
        per-weight state once (:class:`~spikenoise.noise.MultiLevelNVM` does). Default: :meth:`read`.
        """
        return Reader(self, stored)

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

    def has_read_moments(self) -> bool:
        """True when :meth:`read_moments` is implemented (``sampler="gaussian"`` then applies)."""
        try:
            self.read_moments(torch.zeros(1, dtype=torch.float64))
        except NotImplementedError:
            return False
        return True

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


class Reader:
    """Independent reads of fixed stored values ``stored`` of an error model (no gradient)."""

    def __init__(self, error_model: ErrorModel, stored: torch.Tensor):
        self.error_model = error_model
        self.stored = stored.detach()

    def read(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` independent reads of every stored value: shape ``(n, *stored.shape)``."""
        return self.error_model.read(self.stored, n, generator)

    def keyed(self) -> Any:
        """A :class:`~spikenoise.noise.native_reads.KeyedReads` of these values (reads addressed by a
        key, never materialized), or None where the error model or platform has none (default)."""
        return None

    def linear(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """``(B, out)``: row ``b`` of ``x`` ``(B, in)`` times its own fresh read of ``stored`` ``(out, in)``.

        Differentiable in ``x``. Default: one ``(B, out, in)`` read tensor and a batched product.
        """
        reads = self.read(x.shape[0], generator)
        return torch.bmm(reads, x.unsqueeze(-1)).squeeze(-1)


def error_model_from_config(cfg: dict[str, Any]) -> ErrorModel:
    """Rebuild an error model from :meth:`ErrorModel.config` output."""
    if not isinstance(cfg, dict):
        raise TypeError(f"cfg must be a dict from ErrorModel.config(), got {cfg!r}")
    cfg = dict(cfg)
    kind = cfg.pop("kind", None)
    if not isinstance(kind, str) or kind not in _REGISTRY:
        raise ValueError(f"unknown error model kind {kind!r} in cfg; known: {sorted(_REGISTRY)}")
    try:
        return _REGISTRY[kind].from_config(cfg)  # type: ignore[attr-defined]
    except KeyError as e:
        raise ValueError(f"cfg of kind {kind!r} lacks the key {e.args[0]!r}: {cfg!r}") from None
