"""Model conversion: one walker that swaps layers by class (:func:`convert`, :func:`tile`).

:func:`replace_layers` visits every child of a model and replaces it when its exact class is a
key of a ``factories`` map (``old layer -> new layer``); the maps of :func:`convert` and
:func:`tile` are the only difference between the two.
"""
from __future__ import annotations

import copy
from typing import Any, Callable

import torch
import torch.nn as nn

from ..noise.analog import DifferentialCells
from ..noise.base import NONFINITE, ErrorModel, check_flag
from ..noise.nvm import MultiLevelNVM
from .base import (ERRORS, READS, SAMPLERS, NoisySynapse, check_choice, check_model, name_synapses, new_inference,
                   synapses)
from .conv1d import NoisyConv1d
from .conv3d import NoisyConv3d
from .layers import NoisyConv2d, NoisyLinear
from .mapping import WeightMapping, layer_args
from .recurrent import NoisyGRU, NoisyGRUCell, NoisyLSTM, NoisyLSTMCell, NoisyRNN, NoisyRNNCell
from .snn_libraries import norse_factories, snntorch_factories
from .inventory import unmapped_parameters
from .tiled import AnalogSynapse, TiledConv2d, TiledLinear, check_analog_names

__all__ = ["convert", "tile", "set_analog", "replace_layers", "safe_deepcopy", "analog_layers"]

Factory = Callable[[nn.Module], nn.Module]


def safe_deepcopy(model: nn.Module) -> nn.Module:
    """Deep copy that tolerates neuron state left over from a forward pass (snnTorch keeps
    ``mem`` with a grad_fn, which ``copy.deepcopy`` refuses). The copy gets that state detached."""
    saved = []
    for m in model.modules():
        for store in (m.__dict__, m._buffers):
            for k, v in list(store.items()):
                if isinstance(v, torch.Tensor) and not v.is_leaf:
                    saved.append((store, k, v))
                    store[k] = v.detach()
    try:
        return copy.deepcopy(model)
    finally:
        for store, k, v in saved:
            store[k] = v


def replace_layers(model: nn.Module, factories: dict[type, Factory],
                   existing: Callable[[NoisySynapse], None] | None = None) -> nn.Module:
    """Replace ``model`` or its children whose exact class is in ``factories`` (in place).

    Other noisy synapses are passed to ``existing`` (if given) and not entered. Returns the
    model (a new object when ``model`` itself was replaced).
    """
    def walk(parent: nn.Module, prefix: str) -> None:
        for name, child in list(parent.named_children()):
            if type(child) in factories:
                try:
                    setattr(parent, name, factories[type(child)](child))
                except ValueError as e:  # say which layer a refused option belongs to
                    label = type(child).__name__ if parent is holder else prefix + name
                    raise ValueError(f"layer {label!r}: {e}") from None
            elif isinstance(child, NoisySynapse):
                if existing is not None:
                    existing(child)
            else:
                walk(child, f"{prefix}{name}.")

    holder = nn.ModuleList([model])
    for child in holder.children():
        if type(child) in factories or isinstance(child, NoisySynapse):
            walk(holder, "")  # the model itself is a layer: its name is ""
        else:
            walk(child, "")
    return holder[0]


@torch.no_grad()
def _move_weights(old: nn.Module, new: nn.Module, scale: float | None) -> nn.Module:
    """Hidden weights ``w / scale`` and ``scale`` (None: copy hidden weights and scale of a synapse)."""
    if scale is None:
        new.weight.copy_(old.weight)
        new.scale.copy_(old.scale)
    else:
        new.weight.copy_(old.weight / scale)
        new.scale.fill_(scale)
    if old.bias is not None:
        new.bias.copy_(old.bias)
    new.train(old.training)
    return new


def _new_inference_hook(module: nn.Module, args: Any) -> None:
    new_inference(module)


def _hook_inferences(model: nn.Module) -> None:
    """Every call of ``model`` starts a new inference (registered once per model)."""
    if not getattr(model, "_spikenoise_hooked", False):
        model.register_forward_pre_hook(_new_inference_hook)
        model._spikenoise_hooked = True  # type: ignore[assignment]


def _check_error_model(error_model: Any) -> None:
    if error_model is not None and not isinstance(error_model, ErrorModel):
        raise TypeError(f"error_model must be an ErrorModel (e.g. MultiLevelNVM) or None, got {error_model!r}")


def _check_finite_weights(model: nn.Module, kinds: tuple[type, ...]) -> None:
    """ValueError naming the first layer of a type in ``kinds`` with a NaN/inf parameter."""
    for name, m in model.named_modules():
        if type(m) in kinds:
            for pname, t in m.named_parameters(recurse=False):
                if t.is_floating_point() and not bool(torch.isfinite(t).all()):
                    raise ValueError(
                        f"layer {name or type(m).__name__!r}: {pname} contains {int((~torch.isfinite(t)).sum())} "
                        "NaN/inf value(s); fix the model, or pass nonfinite='propagate' to keep them")


def convert_factories(mapping: WeightMapping) -> dict[type, Factory]:
    """The class -> factory map of :func:`convert` (one line per layer type)."""
    factories: dict[type, Factory] = {
        nn.Linear: lambda old: mapping.twin(NoisyLinear, old),
        nn.Conv2d: lambda old: mapping.twin(NoisyConv2d, old),
        nn.Conv1d: lambda old: NoisyConv1d.from_torch(old, mapping),
        nn.Conv3d: lambda old: NoisyConv3d.from_torch(old, mapping),
        nn.RNN: lambda old: NoisyRNN.from_torch(old, mapping),
        nn.GRU: lambda old: NoisyGRU.from_torch(old, mapping),
        nn.LSTM: lambda old: NoisyLSTM.from_torch(old, mapping),
        nn.RNNCell: lambda old: NoisyRNNCell.from_torch(old, mapping),
        nn.GRUCell: lambda old: NoisyGRUCell.from_torch(old, mapping),
        nn.LSTMCell: lambda old: NoisyLSTMCell.from_torch(old, mapping),
    }
    def convert_children(module: nn.Module) -> nn.Module:
        for name, child in list(module.named_children()):
            setattr(module, name, replace_layers(child, factories))
        return module

    factories.update(snntorch_factories(mapping, convert_children))
    factories.update(norse_factories(mapping))
    return factories


def _check_keep_clean(model: nn.Module, keep_clean) -> tuple[str, ...]:
    if isinstance(keep_clean, str):
        raise ValueError(f"keep_clean must be a list of module paths, got the string {keep_clean!r}")
    keep = tuple(keep_clean or ())
    paths = {name for name, _ in model.named_modules()}
    bad = [k for k in keep if not isinstance(k, str) or k not in paths]
    if bad:
        some = ", ".join(sorted(p for p in paths if p)[:12])
        raise ValueError(f"keep_clean names no module of {type(model).__name__}: {bad!r}; module paths are e.g. "
                         f"{some}")
    return keep


def convert(model: nn.Module, error_model: ErrorModel | None = None, *, errors: str = "static",
            reads: str = "spike", sampler: str = "auto", map_weights: bool = True,
            learn_scale: bool = True, inference: str = "forward", inplace: bool = False,
            keep_clean: list[str] | tuple[str, ...] = (), nonfinite: str | None = None) -> nn.Module:
    """Put every synaptic weight of ``model`` into noisy NVM synapses.

    Maps ``nn.Linear``, ``nn.Conv1d``, ``nn.Conv2d``, ``nn.Conv3d``, ``nn.RNN``/``nn.GRU``/``nn.LSTM`` and
    their cells (every gate matrix), snnTorch's ``RLeaky``/``RSynaptic`` recurrent weights (all-to-all and
    one-to-one) and Norse's weight-owning cells (``input_weights``/``recurrent_weights``). Nothing
    is skipped silently: a floating-point parameter left outside a noisy synapse (other than
    normalization layers and neuron parameters such as ``beta``; see
    :func:`spikenoise.synapse.inventory.unmapped_parameters`) raises ``ValueError`` naming it.

    Args:
        model: any PyTorch, snnTorch or Norse model.
        error_model: e.g. ``MultiLevelNVM.noise_level(2)`` (default: error-free 8-level NVM).
        errors, reads, sampler: see :mod:`spikenoise.synapse`.
        map_weights: map each layer's trained float weights onto the stored range: hidden weights
            ``w / s`` and ``scale = s`` with ``s = error_model.fit_scale(w)``, so the converted
            layer computes ``quantize(w / s) * s``. If False, hidden weights are ``w`` and scale 1.
        inference: ``"forward"``: every call of ``model(...)`` is one inference (a new inference
            starts automatically; right for models that loop over time inside forward);
            ``"manual"``: call :func:`spikenoise.new_inference(model)` yourself (models stepped
            one timestep per call).
        inplace: modify ``model`` itself instead of a deep copy (on an error the model may be
            partly converted).
        keep_clean: module paths (as in ``model.named_modules()``) to leave error-free on purpose.
        nonfinite: ``"raise"`` (NaN/inf in weights or inputs is an error naming the layer) or
            ``"propagate"``; None: the error model's default (``"propagate"`` for ``BitFlip``).

    A model that already holds noisy synapses is refused (its options would silently stay):
    change them with :func:`~spikenoise.synapse.base.configure`, or convert the float model.

    Returns:
        The converted model.
    """
    check_model(model)
    _check_error_model(error_model)
    check_choice("errors", errors, ERRORS)
    check_choice("reads", reads, READS)
    check_choice("sampler", sampler, SAMPLERS)
    check_choice("inference", inference, ("forward", "manual"))
    if nonfinite is not None:
        check_choice("nonfinite", nonfinite, NONFINITE)
    for flag, v in (("map_weights", map_weights), ("learn_scale", learn_scale), ("inplace", inplace)):
        check_flag(flag, v)
    done = [name or type(m).__name__ for name, m in model.named_modules() if isinstance(m, NoisySynapse)]
    if done:
        raise ValueError(f"{type(model).__name__} is already converted (noisy synapses: {', '.join(map(repr, done[:3]))}"
                         f"{', ...' if len(done) > 3 else ''}); change its options with spikenoise.configure"
                         "(model, ...) or convert the original float model")
    keep = _check_keep_clean(model, keep_clean)
    em = MultiLevelNVM() if error_model is None else error_model
    mapping = WeightMapping(em, errors, reads, sampler, learn_scale, map_weights)
    if (nonfinite or em.default_nonfinite) == "raise":
        _check_finite_weights(model, tuple(convert_factories(mapping)))
    model = model if inplace else safe_deepcopy(model)
    kept = {id(m) for path, m in model.named_modules()
            if any(path == k or path.startswith(k + ".") for k in keep)}
    factories = {cls: (lambda make: lambda old: old if id(old) in kept else make(old))(make)
                 for cls, make in convert_factories(mapping).items()}
    model = replace_layers(model, factories)
    missing = unmapped_parameters(model, keep)
    if not missing and not any(True for _ in synapses(model)):
        raise ValueError(f"{type(model).__name__} has no nn.Linear, nn.Conv1d/2d/3d, nn.RNN/GRU/LSTM, snnTorch "
                         "RLeaky/RSynaptic or Norse cell with weights to convert")
    if missing:
        raise ValueError(
            f"convert could not put {len(missing)} weight parameter(s) of {type(model).__name__} into noisy "
            "synapses; they would stay error-free:\n  " + "\n  ".join(missing) +
            "\nReplace those modules by supported layers, or pass keep_clean=[<module path>, ...] to leave "
            "them error-free on purpose.")
    if nonfinite is not None:
        for s in synapses(model):
            s.set_errors(nonfinite=nonfinite)
    name_synapses(model)
    if inference == "forward":
        _hook_inferences(model)
    return model


def analog_layers(model: nn.Module) -> list[AnalogSynapse]:
    """All tiled layers inside ``model`` (itself included), in module order."""
    return [m for m in model.modules() if isinstance(m, AnalogSynapse)]


def tile(model: nn.Module, error_model: ErrorModel | None = None, *, errors: str | None = None,
         reads: str | None = None, inplace: bool = False, keep_clean: list[str] | tuple[str, ...] = (),
         **analog: Any) -> nn.Module:
    """Put every synapse of ``model`` on tiled analog arrays.

    * ``nn.Linear`` / ``nn.Conv2d`` become :class:`TiledLinear` / :class:`TiledConv2d` with their
      weights mapped as :func:`convert` does (hidden ``w / s``, ``scale = s``,
      ``s = error_model.fit_scale(w)``).
    * ``NoisyLinear`` / ``NoisyConv2d`` become tiled layers with the same hidden weights, bias,
      scale and error options.
    * Tiled layers get the given options (:meth:`AnalogSynapse.set_analog`).

    Args:
        error_model: error model of every layer (None: keep; plain layers get ``DifferentialCells()``).
        errors, reads: None keeps each synapse's value (plain layers: ``"none"``, ``"once"``).
        inplace: modify ``model`` itself instead of a deep copy.
        keep_clean: module paths (as in ``model.named_modules()``) to leave off the tiles on purpose.
        **analog: fields of :class:`~spikenoise.synapse.tiled.AnalogOptions`; left out: keep (tiled
            layers) or the :class:`TiledLinear` defaults (others).

    A model that had no synapses gets a forward pre-hook: every call is one inference.
    Weights that cannot go on tiles (``nn.Conv1d``, recurrent layers, Norse cells, or noisy synapses
    of those types) raise ``ValueError`` naming them, unless their module is in ``keep_clean``.
    """
    check_model(model)
    _check_error_model(error_model)
    if errors is not None:
        check_choice("errors", errors, ERRORS)
    if reads is not None:
        check_choice("reads", reads, READS)
    check_flag("inplace", inplace)
    check_analog_names(analog)
    keep = _check_keep_clean(model, keep_clean)
    had_synapses = any(True for _ in synapses(model))

    def factory(cls: type) -> Factory:
        def make(old: nn.Module) -> nn.Module:
            noisy = isinstance(old, NoisySynapse)
            em = error_model or (old.error_model if noisy else DifferentialCells())
            kw: dict[str, Any] = dict(
                error_model=em, errors=errors or (old.errors if noisy else "none"),
                reads=reads or (old.reads if noisy else "once"), sampler=old.sampler if noisy else "auto",
                nonfinite=old.nonfinite if noisy else None,
                learn_scale=bool(old.scale.requires_grad) if noisy else True, **analog)
            new = cls(*layer_args(old, "tile"), device=old.weight.device, dtype=old.weight.dtype, **kw)
            return _move_weights(old, new, None if noisy else em.fit_scale(old.weight))
        return make

    def update(layer: NoisySynapse) -> None:
        if isinstance(layer, AnalogSynapse):
            layer.set_analog(**analog)
            if error_model is not None or errors is not None or reads is not None:
                layer.set_errors(errors=errors, reads=reads, error_model=error_model)

    factories = {nn.Linear: factory(TiledLinear), NoisyLinear: factory(TiledLinear),
                 nn.Conv2d: factory(TiledConv2d), NoisyConv2d: factory(TiledConv2d)}
    model = model if inplace else safe_deepcopy(model)
    kept = {id(m) for path, m in model.named_modules()
            if any(path == k or path.startswith(k + ".") for k in keep)}
    factories = {cls: (lambda make: lambda old: old if id(old) in kept else make(old))(make)
                 for cls, make in factories.items()}
    # what would stay off the tiles, checked before anything is replaced (inplace leaves no half-tiled model)
    off = [f"{p} ({type(m).__name__})" for p, m in model.named_modules()
           if isinstance(m, NoisySynapse) and type(m) not in factories and not isinstance(m, AnalogSynapse)
           and id(m) not in kept and not any(p.startswith(q + ".") for q in keep)]
    plain = unmapped_parameters(model, keep, mapped_types=tuple(factories))
    if off or plain:
        raise ValueError(
            f"tile cannot put {len(off) + len(plain)} weight(s) of {type(model).__name__} on analog tiles (only "
            "nn.Linear/nn.Conv2d and their noisy layers); they would stay off the tiles:\n  "
            + "\n  ".join(off + plain) + "\nRecurrent layers: convert(model) first (their gates become noisy Linear layers, which tile). "
            "Pass keep_clean=[<module path>, ...] to leave weights off the tiles on purpose.")
    model = replace_layers(model, factories, update)
    if not analog_layers(model):
        raise ValueError(f"{type(model).__name__} has no linear or conv layer to tile")
    name_synapses(model)
    if not had_synapses:
        _hook_inferences(model)
    return model


def set_analog(model: nn.Module, **options: Any) -> nn.Module:
    """Set tile options on every tiled layer of ``model`` (fields of ``AnalogOptions``)."""
    layers = analog_layers(check_model(model))
    if not layers:
        raise ValueError(f"{type(model).__name__} has no tiled layers; use spikenoise.synapse.tile first")
    for layer in layers:
        layer.set_analog(**options)
    return model
