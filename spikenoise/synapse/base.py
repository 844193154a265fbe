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
    rows of a call (per-minibatch noise injection; static and per-step reads only: under dynamic
    per-spike reads every spike is its own read, which :meth:`NoisySynapse.when_drawn` says).
``nonfinite``
    What a NaN/inf in the input or the hidden weights does: ``"raise"`` a ValueError naming the
    layer (one ``isfinite`` check per call), or ``"propagate"`` it as IEEE arithmetic does. None
    (default) follows the error model: ``"propagate"`` for ``BitFlip`` (exponent flips make
    inf/NaN by design), ``"raise"`` for the others. Either way a zero input is no read, so it
    never turns an inf/NaN read weight into NaN.

The stored weights (and what error models derive from them, e.g. per-weight read thresholds)
are computed once and cached until the hidden weights change (torch's version counter: an
optimizer step, ``copy_``/``load_state_dict`` under ``no_grad``; or a new tensor), the error
options change, or a new inference starts. In-place writes through ``weight.data`` bypass the
version counter (as they bypass autograd): call :func:`new_inference` after them.

A *pinned* draw (:meth:`NoisySynapse.pin`, :meth:`NoisySynapse.release`) replaces the static draw
for every call until released: one programmed chip (:func:`spikenoise.synapse.chips.programmed`).
"""
from __future__ import annotations

from typing import Any, Iterator

import torch
import torch.nn as nn

from ..noise.base import NONFINITE, ErrorModel, Reader, check_flag, error_model_from_config
from .. import native
from ..noise.native_reads import KeyedDraw
from ..noise.nvm import MultiLevelNVM
from .nonfinite import all_finite

__all__ = ["NoisySynapse", "ERRORS", "READS", "SAMPLERS", "DRAWS", "NONFINITE", "Draw", "check_choice",
           "check_model", "synapses", "new_inference", "configure", "name_synapses"]

ERRORS = ("none", "static", "dynamic")
READS = ("once", "step", "spike")
SAMPLERS = ("auto", "exact", "brute", "gaussian")
DRAWS = ("row", "batch")

#: A draw of a layer's weight errors for ``n`` rows (or chips): a tensor ``(n, *W.shape)`` (read
#: weights, engine layers) or a tuple of them (programming errors, analog layers).
Draw = Any


def check_choice(name: str, value: Any, choices: tuple[str, ...]) -> str:
    """``value`` if it is one of ``choices``, else ValueError naming ``name``."""
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")
    return value


def check_model(model: Any) -> Any:
    """``model`` if it is a ``torch.nn.Module``, else TypeError."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {model!r}")
    return model


def is_integer_valued(x: torch.Tensor) -> bool:
    """True when every element of ``x`` is a finite integer (a spike count)."""
    x = x.detach()
    return all_finite(x) and bool(torch.equal(x, torch.round(x)))


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
    nonfinite: str | None
    #: the layer's name in its model (set by ``convert``/``configure``; "" until then)
    layer_name: str = ""

    def init_synapse(self, error_model: ErrorModel | None, errors: str, reads: str, sampler: str,
                     learn_scale: bool, draws: str = "row", nonfinite: str | None = None) -> None:
        """Set up the synapse state; a layer type calls it after its torch layer's ``__init__``."""
        self.error_model = _check_error_model(MultiLevelNVM() if error_model is None else error_model)
        self.errors = check_choice("errors", errors, ERRORS)
        self.reads = check_choice("reads", reads, READS)
        self.sampler = check_choice("sampler", sampler, SAMPLERS)
        self.draws = check_choice("draws", draws, DRAWS)
        self.nonfinite = None if nonfinite is None else check_choice("nonfinite", nonfinite, NONFINITE)
        check_flag("learn_scale", learn_scale)
        self.check_sampler()
        fan_in = self.weight[0].numel()
        self.scale = nn.Parameter(torch.tensor(fan_in ** -0.5), requires_grad=learn_scale)
        self._draw: Draw | None = None
        self._pinned: Draw | None = None
        self._stored: _StoredCache | None = None
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
        """Forget the static draw: the next read starts a new inference (a pinned draw stays).

        Also recomputes the cached stored weights at their next use.
        """
        self._draw = None
        self._stored = None
        self._clean_map = None
        self._finite_key = None

    def describe(self) -> str:
        """The layer in error messages: its name in the model (when known), type and size."""
        w = self.weight
        size = f"{w.shape[1] * (getattr(self, 'groups', 1))}->{w.shape[0]}"
        what = f"{type(self).__name__} {size}"
        return f"layer {self.layer_name!r} ({what})" if self.layer_name else what

    @property
    def nonfinite_policy(self) -> str:
        """``nonfinite`` resolved: the option, else the error model's ``default_nonfinite``."""
        return self.nonfinite or self.error_model.default_nonfinite

    def check_input(self, x: Any) -> None:
        """TypeError for a non-tensor ``x``; with ``nonfinite_policy == "raise"``, ValueError naming
        this layer when ``x`` or the hidden weights hold NaN/inf (one fused check per call)."""
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{self.describe()}: input must be a torch.Tensor, got {type(x).__name__}")
        if self.nonfinite_policy != "raise" or not x.is_floating_point():
            return
        if all_finite(x) and self.hidden_weights_finite():
            return
        for what, t in (("input", x), ("hidden weights", self.weight)):
            bad = ~torch.isfinite(t.detach())
            if bool(bad.any()):
                first = t.detach()[bad][0].item()
                raise ValueError(
                    f"{self.describe()}: {what} {'contains' if what == 'input' else 'contain'} {int(bad.sum())} non-finite value(s) (e.g. {first}) of "
                    f"{t.numel()}; fix the source, or pass nonfinite='propagate' to convert/configure to let "
                    "NaN/inf flow through as IEEE arithmetic does")

    def hidden_weights_finite(self) -> bool:
        """True when the hidden weights hold no NaN/inf; checked once per weight version."""
        w = self.weight
        key = (w._version, w.data_ptr(), w.dtype, tuple(w.shape))
        if getattr(self, "_finite_key", None) == key:
            return True
        ok = all_finite(w)
        self._finite_key = key if ok else None
        return ok

    def check_sampler(self) -> None:
        """ValueError when ``sampler`` cannot work with ``error_model`` (caught when set, not at forward)."""
        em = self.error_model
        if self.sampler == "gaussian" and not em.has_read_moments():
            alt = "'exact', 'brute' or 'auto'" if em.discrete() is not None else "'brute' or 'auto'"
            raise ValueError(f"{self.describe()}: sampler='gaussian' needs the read mean and variance, which "
                             f"{em!r} has not; use sampler={alt}")
        if self.sampler == "exact" and em.discrete() is None:
            alt = "'brute', 'gaussian' or 'auto'" if em.has_read_moments() else "'brute' or 'auto'"
            raise ValueError(f"{self.describe()}: sampler='exact' needs a discrete error model (MultiLevelNVM, "
                             f"binary_weights), got {em!r}; use sampler={alt}")

    def set_errors(self, errors: str | None = None, reads: str | None = None, sampler: str | None = None,
                   error_model: ErrorModel | None = None, draws: str | None = None,
                   nonfinite: str | None = None) -> None:
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
        if nonfinite is not None:
            self.nonfinite = check_choice("nonfinite", nonfinite, NONFINITE)
        self.check_sampler()
        self.new_inference()

    def get_extra_state(self) -> dict[str, Any]:
        return {"errors": self.errors, "reads": self.reads, "sampler": self.sampler, "draws": self.draws,
                "nonfinite": self.nonfinite, "error_model": self.error_model.config()}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self.set_errors(errors=state["errors"], reads=state["reads"], sampler=state["sampler"],
                        draws=state.get("draws", self.draws),
                        error_model=error_model_from_config(state["error_model"]))
        self.nonfinite = state.get("nonfinite")

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
        shared = "; draws='batch' does not apply: every spike is its own read" if self.draws == "batch" else ""
        return f"fresh draw at every incoming spike (sampler={self.sampler}{shared})"

    def synapse_repr(self) -> str:
        return (f"errors={self.errors!r}, reads={self.reads!r}, error_model={self.error_model!r}, "
                f"noise: {self.when_drawn()}")

    # -- weights ---------------------------------------------------------------------------
    def stored_cache(self) -> "_StoredCache":
        """The cache of the stored weights, rebuilt when the hidden weights or the error model changed."""
        w = self.weight
        key = (w._version, w.data_ptr(), w.dtype, w.device, tuple(w.shape), id(self.error_model))
        cache = getattr(self, "_stored", None)
        if cache is None or cache.key != key:
            cache = self._stored = _StoredCache(key, w, self.error_model)
        return cache

    def stored_weight(self) -> torch.Tensor:
        """``error_model.quantize(weight)``: the stored weights (no gradient), cached."""
        return self.stored_cache().stored

    def reader(self) -> Reader:
        """The error model's :class:`~spikenoise.noise.Reader` of the stored weights, cached with them."""
        return self.stored_cache().reader()

    def quantized_weight(self) -> torch.Tensor:
        """Stored weights, with a clipped straight-through gradient to the hidden weights.

        The value is exactly the cached stored weights; with gradients enabled the gradient is
        that of ``clamp(weight, *ste_range)`` (1 inside the range, bounds included, else 0).
        """
        cache = self.stored_cache()
        w = self.weight
        if not (torch.is_grad_enabled() and w.requires_grad):
            return cache.stored
        mask = cache.derived.get("ste_mask")
        if mask is None:
            rng = self.error_model.ste_range()
            hidden = cache.hidden
            mask = torch.ones_like(hidden) if rng is None else ((hidden >= rng[0]) & (hidden <= rng[1])).to(hidden.dtype)
            cache.derived["ste_mask"] = mask
        # the clamp's gradient (1 inside the STE range, bounds included) from a mask computed once:
        # a recurrent layer called every timestep no longer builds a clamp and its backward per step
        return _StraightThrough.apply(w, cache.stored, mask)

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
        cache = getattr(self, "_stored", None)
        if cache is not None and stored.detach().data_ptr() == cache.stored.data_ptr() \
                and stored.shape == cache.stored.shape:
            return cache.reader().read(n, generator)
        return self.error_model.read(stored.detach(), n, generator)

    def draw_reads(self, stored: torch.Tensor, draw: Draw) -> torch.Tensor:
        """The read weights ``(n, *W.shape)`` (no gradient) of ``draw``."""
        return draw.materialize() if isinstance(draw, KeyedDraw) else draw

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
        d = self._pinned if self._pinned is not None else self._draw
        return d.materialize() if isinstance(d, KeyedDraw) else d

    def keyed_draw(self, x: torch.Tensor) -> KeyedDraw | None:
        """This inference's static draw held as a key (one read per weight and batch row; see
        :class:`~spikenoise.noise.native_reads.KeyedDraw`), drawn at its first read; None where the
        reader has no keyed sampler (torch path), or when this inference already holds a tensor draw."""
        if self._pinned is not None or self.draws != "row":
            return None
        if self._draw is None:
            keyed = self.reader().keyed()
            if keyed is None or not keyed.usable(x):
                return None
            self._draw = KeyedDraw(keyed, native.key_from(), x.shape[0], self.stored_weight().dtype)
        if not isinstance(self._draw, KeyedDraw) or self._draw.rows != x.shape[0] or not self._draw.reads.usable(x):
            return None  # draw_for materializes it, or names the batch mismatch
        return self._draw

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
        shape = tuple(self.weight.shape)
        try:
            reads = self.draw_reads(self.weight.detach(), draw)
            ok = isinstance(reads, torch.Tensor) and tuple(reads.shape[1:]) == shape and reads.shape[0] >= 1
        except (TypeError, AttributeError, IndexError, RuntimeError):
            ok = False
        if not ok:
            raise ValueError(f"{self.describe()}: draw must come from sample_draw (reads shaped (n, *{shape})), "
                             f"got {type(draw).__name__} {tuple(getattr(draw, 'shape', ())) or ''}")
        self._pinned = draw

    def release(self) -> None:
        """Forget the pinned draw and start a new inference."""
        self._pinned = None
        self.new_inference()


class _StraightThrough(torch.autograd.Function):
    """Value ``stored``, gradient ``grad * mask`` to the hidden weights ``w``."""

    @staticmethod
    def forward(ctx: Any, w: torch.Tensor, stored: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(mask)
        return stored.clone()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor):  # type: ignore[override]
        (mask,) = ctx.saved_tensors
        return grad * mask, None, None


class _StoredCache:
    """Stored weights of one version of the hidden weights, and what is derived from them.

    Holds a detached alias of the hidden weights so their memory cannot be reused by a new
    tensor while the cache lives (the key compares addresses).
    """

    def __init__(self, key: tuple, weight: torch.Tensor, error_model: ErrorModel):
        self.key = key
        self.hidden = weight.detach()
        self.error_model = error_model
        self.stored = error_model.quantize(self.hidden)
        self._reader: Reader | None = None
        #: anything else a sampler derives from these stored weights (level indices, masks)
        self.derived: dict = {}

    def reader(self) -> Reader:
        if self._reader is None:
            self._reader = self.error_model.reader(self.stored)
        return self._reader


# ----------------------------------------------------------------------------------------------
# whole-model helpers

def synapses(model: nn.Module) -> Iterator[NoisySynapse]:
    """All noisy synapses inside ``model`` (itself included)."""
    for m in check_model(model).modules():
        if isinstance(m, NoisySynapse):
            yield m


def name_synapses(model: nn.Module) -> None:
    """Give every synapse of ``model`` its name in the model (for error messages)."""
    for name, m in check_model(model).named_modules():
        if isinstance(m, NoisySynapse) and name:
            m.layer_name = name


def new_inference(model: nn.Module) -> None:
    """Start a new inference for the synapses of ``model`` only: static draws are forgotten.

    Scoped to ``model`` (other networks keep their state, unlike a class-level registry).
    Raises ValueError, as :func:`configure` does, when ``model`` has no noisy synapses.
    """
    found = False
    for s in synapses(model):
        s.new_inference()
        found = True
    if not found:
        raise ValueError(f"{type(model).__name__} has no noisy synapses, so there is no inference to start; "
                         "wrap it with spikenoise.convert first")


def configure(model: nn.Module, *, errors: str | None = None, reads: str | None = None,
              sampler: str | None = None, error_model: ErrorModel | None = None,
              draws: str | None = None, nonfinite: str | None = None) -> nn.Module:
    """Set error options on every synapse of ``model`` (None keeps a layer's current value).

    ``nonfinite``: ``"raise"`` or ``"propagate"`` (module docstring).
    """
    found = False
    name_synapses(model)
    for s in synapses(model):
        s.set_errors(errors=errors, reads=reads, sampler=sampler, error_model=error_model, draws=draws,
                     nonfinite=nonfinite)
        found = True
    if not found:
        raise ValueError(f"{type(model).__name__} has no noisy synapses; wrap it with spikenoise.convert first")
    return model
