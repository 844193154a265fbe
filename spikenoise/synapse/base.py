"""The synapse core: options, hidden/stored weights and the draws of a noisy layer.

Every noisy layer keeps full-precision *hidden* weights (what the optimizer updates), stores
``error_model.quantize(hidden)`` in memory, and multiplies the pre-activation by a learnable
per-layer ``scale``: ``y = scale * (x (*) W_read) + bias``. When ``W_read`` is drawn, and for whom:

``errors``
    ``"none"``: ``W_read`` = stored weights. ``"static"``: one draw at the first read after a new
    inference, frozen for every later read of that inference. ``"dynamic"``: a fresh draw at
    every read.
``reads``
    ``"once"`` per inference (static and dynamic coincide), ``"step"`` once per call (timestep),
    ``"spike"`` once per incoming spike (see :mod:`spikenoise.synapse.layers`).
``draws``
    ``"row"`` (default): every batch row gets its own draw. ``"batch"``: one draw shared by all
    rows of a call (per-minibatch noise injection; static and per-step reads only).

A *pinned* draw (:meth:`NoisySynapse.pin`, :meth:`NoisySynapse.release`) replaces the static draw
for every call until released: one programmed chip (:func:`spikenoise.synapse.chips.programmed`).
"""
from __future__ import annotations

from typing import Any, Iterator

import torch
import torch.nn as nn

from ..noise.base import ErrorModel, error_model_from_config
from ..noise.nvm import MultiLevelNVM

__all__ = ["NoisySynapse", "ERRORS", "READS", "SAMPLERS", "DRAWS", "Draw", "check_choice", "synapses",
           "new_inference", "configure"]

ERRORS = ("none", "static", "dynamic")
READS = ("once", "step", "spike")
SAMPLERS = ("auto", "exact", "brute", "gaussian")
DRAWS = ("row", "batch")

#: A draw of a layer's weight errors for ``n`` rows (or chips): a tensor ``(n, *W.shape)`` (read
#: weights, engine layers) or a tuple of them (programming errors, analog layers).
Draw = Any


def check_choice(name: str, value: Any, choices: tuple[str, ...]) -> str:
    """``value`` if it is one of ``choices``, else ValueError naming ``name``."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")
    return value


def is_integer_valued(x: torch.Tensor) -> bool:
    x = x.detach()
    return bool(torch.equal(x, torch.round(x)))


def _check_error_model(error_model: Any) -> ErrorModel:
    if not isinstance(error_model, ErrorModel):
        raise ValueError(f"error_model must be an ErrorModel (e.g. MultiLevelNVM), got {error_model!r}")
    return error_model


class NoisySynapse:
    """Mixin holding the NVM state of a layer. Use :class:`~spikenoise.synapse.layers.NoisyLinear` /
    :class:`~spikenoise.synapse.layers.NoisyConv2d`."""

    # set by the torch layer this mixin is combined with (nn.Linear / nn.Conv2d)
    weight: nn.Parameter
    bias: nn.Parameter | None
    training: bool
    # set by init_synapse
    scale: nn.Parameter
    error_model: ErrorModel
    errors: str
    reads: str
    sampler: str
    draws: str

    def init_synapse(self, error_model: ErrorModel | None, errors: str, reads: str, sampler: str,
                     learn_scale: bool, draws: str = "row") -> None:
        """Set up the synapse state; a layer type calls it after its torch layer's ``__init__``."""
        self.error_model = _check_error_model(MultiLevelNVM() if error_model is None else error_model)
        self.errors = check_choice("errors", errors, ERRORS)
        self.reads = check_choice("reads", reads, READS)
        self.sampler = check_choice("sampler", sampler, SAMPLERS)
        self.draws = check_choice("draws", draws, DRAWS)
        fan_in = self.weight[0].numel()
        self.scale = nn.Parameter(torch.tensor(fan_in ** -0.5), requires_grad=learn_scale)
        self._draw: Draw | None = None
        self._pinned: Draw | None = None
        self.reset_hidden_parameters()

    def reset_hidden_parameters(self) -> None:
        """Paper init: hidden weights U(-1, 1), bias U(-1/sqrt(k), 1/sqrt(k)), scale 1/sqrt(k)."""
        fan_in = self.weight[0].numel()
        with torch.no_grad():
            self.weight.uniform_(-1.0, 1.0)
            if self.bias is not None:
                self.bias.uniform_(-fan_in ** -0.5, fan_in ** -0.5)
            self.scale.fill_(fan_in ** -0.5)

    # -- options ---------------------------------------------------------------------------
    def new_inference(self) -> None:
        """Forget the static draw: the next read starts a new inference (a pinned draw stays)."""
        self._draw = None

    def set_errors(self, errors: str | None = None, reads: str | None = None, sampler: str | None = None,
                   error_model: ErrorModel | None = None, draws: str | None = None) -> None:
        """Change when/how errors are drawn (also starts a new inference)."""
        if errors is not None:
            self.errors = check_choice("errors", errors, ERRORS)
        if reads is not None:
            self.reads = check_choice("reads", reads, READS)
        if sampler is not None:
            self.sampler = check_choice("sampler", sampler, SAMPLERS)
        if draws is not None:
            self.draws = check_choice("draws", draws, DRAWS)
        if error_model is not None:
            self.error_model = _check_error_model(error_model)
        self.new_inference()

    def get_extra_state(self) -> dict[str, Any]:
        return {"errors": self.errors, "reads": self.reads, "sampler": self.sampler, "draws": self.draws,
                "error_model": self.error_model.config()}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self.set_errors(errors=state["errors"], reads=state["reads"], sampler=state["sampler"],
                        draws=state.get("draws", self.draws),
                        error_model=error_model_from_config(state["error_model"]))

    @property
    def read_mode(self) -> str:
        """``"clean"`` (no errors), ``"frozen"`` (static draw), ``"per_row"`` (a draw per call) or
        ``"per_spike"`` (a draw per incoming spike)."""
        if self.errors == "none" or self.error_model.noiseless:
            return "clean"
        if self.errors == "static" or self.reads == "once":
            return "frozen"
        if self.reads == "step":
            return "per_row"
        return "per_spike"

    def when_drawn(self) -> str:
        """Plain-words description of when errors are drawn, and for whom."""
        if self._pinned is not None:
            return "one programming (chip) pinned for every call until release()"
        mode = self.read_mode
        who = "per batch row" if self.draws == "row" else "shared by the whole batch"
        if mode == "clean":
            return "no errors"
        if mode == "frozen":
            return f"one draw {who}, frozen until new_inference()"
        if mode == "per_row":
            approx = (", gaussian approximation" if self.sampler == "gaussian" and self.draws == "row"
                      and isinstance(self, nn.Linear) else "")
            return f"fresh draw {who} at every call (timestep){approx}"
        return f"fresh draw at every incoming spike (sampler={self.sampler})"

    def synapse_repr(self) -> str:
        return (f"errors={self.errors!r}, reads={self.reads!r}, error_model={self.error_model!r}, "
                f"noise: {self.when_drawn()}")

    # -- weights ---------------------------------------------------------------------------
    def quantized_weight(self) -> torch.Tensor:
        """Stored weights, with a clipped straight-through gradient to the hidden weights."""
        w = self.weight
        q = self.error_model.quantize(w.detach())
        rng = self.error_model.ste_range()
        wc = w if rng is None else w.clamp(rng[0], rng[1])
        return wc + (q - wc).detach()

    def scale_and_bias(self, y: torch.Tensor) -> torch.Tensor:
        """``scale * y + bias`` (bias on dim 1 for convolutions, on the last dim otherwise)."""
        y = y * self.scale
        if self.bias is not None:
            shape = [1] * y.dim()
            shape[1 if isinstance(self, nn.Conv2d) else -1] = -1
            y = y + self.bias.view(shape)
        return y

    # -- draws -----------------------------------------------------------------------------
    def sample_draw(self, stored: torch.Tensor, n: int, generator: torch.Generator | None = None) -> Draw:
        """``n`` independent draws for ``stored`` weights: here the read weights ``(n, *W.shape)``."""
        return self.error_model.read(stored.detach(), n, generator)

    def draw_reads(self, stored: torch.Tensor, draw: Draw) -> torch.Tensor:
        """The read weights ``(n, *W.shape)`` (no gradient) of ``draw``."""
        return draw

    def draw_rows(self, draw: Draw) -> int:
        """How many rows (chips) ``draw`` holds."""
        return draw.shape[0]

    def draw_for(self, stored: torch.Tensor, batch: int) -> Draw:
        """The draw a call with ``batch`` rows uses: the pinned one, this inference's static draw
        (drawn at its first read) or, per call, a fresh one. ``draws="batch"``: one row shared."""
        if self._pinned is not None:
            return self._pinned
        n = batch if self.draws == "row" else 1
        if self.read_mode != "frozen":
            return self.sample_draw(stored, n)
        if self._draw is None:
            self._draw = self.sample_draw(stored, n)
        elif self.draw_rows(self._draw) != n:
            raise ValueError(
                f"{type(self).__name__}: static errors were drawn for a batch of {self.draw_rows(self._draw)} "
                f"but this read has batch {batch}; call spikenoise.new_inference(model) between inferences")
        return self._draw

    @property
    def draw(self) -> Draw | None:
        """The draw in use: the pinned one, else this inference's static draw (None before its first read)."""
        return self._pinned if self._pinned is not None else self._draw

    @property
    def pinned(self) -> bool:
        """True while a draw is pinned."""
        return self._pinned is not None

    def pin(self, draw: Draw) -> None:
        """Use ``draw`` (from :meth:`sample_draw`) for every call until :meth:`release`: one chip.

        Needs static errors (``errors="static"`` or ``reads="once"``).
        """
        if self.read_mode != "frozen":
            raise ValueError("a pinned draw (a programmed chip) needs static errors (errors='static' or "
                             f"reads='once'), got errors={self.errors!r}, reads={self.reads!r} in "
                             f"{type(self).__name__}")
        self._pinned = draw

    def release(self) -> None:
        """Forget the pinned draw and start a new inference."""
        self._pinned = None
        self.new_inference()


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
              sampler: str | None = None, error_model: ErrorModel | None = None,
              draws: str | None = None) -> nn.Module:
    """Set error options on every synapse of ``model`` (None keeps a layer's current value)."""
    found = False
    for s in synapses(model):
        s.set_errors(errors=errors, reads=reads, sampler=sampler, error_model=error_model, draws=draws)
        found = True
    if not found:
        raise ValueError(f"{type(model).__name__} has no noisy synapses; wrap it with spikenoise.convert first")
    return model
