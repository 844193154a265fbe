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
from ..noise.base import ErrorModel
from ..noise.nvm import MultiLevelNVM
from .base import ERRORS, READS, SAMPLERS, NoisySynapse, check_choice, new_inference, synapses
from .layers import NoisyConv2d, NoisyLinear
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
    def walk(parent: nn.Module) -> None:
        for name, child in list(parent.named_children()):
            if type(child) in factories:
                setattr(parent, name, factories[type(child)](child))
            elif isinstance(child, NoisySynapse):
                if existing is not None:
                    existing(child)
            else:
                walk(child)

    holder = nn.ModuleList([model])
    walk(holder)
    return holder[0]


def _layer_args(old: nn.Module, verb: str) -> tuple:
    """Positional constructor arguments of a noisy/tiled layer shaped like ``old``."""
    if isinstance(old, nn.Conv2d):
        if old.padding_mode != "zeros" or isinstance(old.padding, str):
            raise ValueError(f"cannot {verb} {old}: only numeric zero padding is supported")
        return (old.in_channels, old.out_channels, old.kernel_size, old.stride, old.padding, old.dilation,
                old.groups, old.bias is not None)
    assert isinstance(old, nn.Linear)
    return old.in_features, old.out_features, old.bias is not None


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


def convert(model: nn.Module, error_model: ErrorModel | None = None, *, errors: str = "static",
            reads: str = "spike", sampler: str = "auto", map_weights: bool = True,
            learn_scale: bool = True, inference: str = "forward", inplace: bool = False) -> nn.Module:
    """Replace every ``nn.Linear`` / ``nn.Conv2d`` of ``model`` by its noisy counterpart.

    Args:
        model: any PyTorch or snnTorch model.
        error_model: e.g. ``MultiLevelNVM.noise_level(2)`` (default: error-free 8-level NVM).
        errors, reads, sampler: see :mod:`spikenoise.synapse`.
        map_weights: map each layer's trained float weights onto the stored range: hidden weights
            ``w / s`` and ``scale = s`` with ``s = error_model.fit_scale(w)``, so the converted
            layer computes ``quantize(w / s) * s``. If False, hidden weights are ``w`` and scale 1.
        inference: ``"forward"``: every call of ``model(...)`` is one inference (a new inference
            starts automatically; right for models that loop over time inside forward);
            ``"manual"``: call :func:`spikenoise.new_inference(model)` yourself (models stepped
            one timestep per call).
        inplace: modify ``model`` itself instead of a deep copy.

    Returns:
        The converted model.
    """
    check_choice("errors", errors, ERRORS)
    check_choice("reads", reads, READS)
    check_choice("sampler", sampler, SAMPLERS)
    check_choice("inference", inference, ("forward", "manual"))
    em = MultiLevelNVM() if error_model is None else error_model
    kw = dict(error_model=em, errors=errors, reads=reads, sampler=sampler, learn_scale=learn_scale)

    def factory(cls: type) -> Factory:
        def make(old: nn.Module) -> nn.Module:
            new = cls(*_layer_args(old, "convert"), device=old.weight.device, dtype=old.weight.dtype, **kw)
            return _move_weights(old, new, em.fit_scale(old.weight) if map_weights else 1.0)
        return make

    model = replace_layers(model if inplace else safe_deepcopy(model),
                           {nn.Linear: factory(NoisyLinear), nn.Conv2d: factory(NoisyConv2d)})
    if not any(True for _ in synapses(model)):
        raise ValueError(f"{type(model).__name__} has no nn.Linear or nn.Conv2d layer to convert")
    if inference == "forward":
        _hook_inferences(model)
    return model


def analog_layers(model: nn.Module) -> list[AnalogSynapse]:
    """All tiled layers inside ``model`` (itself included), in module order."""
    return [m for m in model.modules() if isinstance(m, AnalogSynapse)]


def tile(model: nn.Module, error_model: ErrorModel | None = None, *, errors: str | None = None,
         reads: str | None = None, inplace: bool = False, **analog: Any) -> nn.Module:
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
        **analog: fields of :class:`~spikenoise.synapse.tiled.AnalogOptions`; left out: keep (tiled
            layers) or the :class:`TiledLinear` defaults (others).

    A model that had no synapses gets a forward pre-hook: every call is one inference.
    """
    check_analog_names(analog)
    had_synapses = any(True for _ in synapses(model))

    def factory(cls: type) -> Factory:
        def make(old: nn.Module) -> nn.Module:
            noisy = isinstance(old, NoisySynapse)
            em = error_model or (old.error_model if noisy else DifferentialCells())
            kw: dict[str, Any] = dict(
                error_model=em, errors=errors or (old.errors if noisy else "none"),
                reads=reads or (old.reads if noisy else "once"), sampler=old.sampler if noisy else "auto",
                learn_scale=bool(old.scale.requires_grad) if noisy else True, **analog)
            new = cls(*_layer_args(old, "tile"), device=old.weight.device, dtype=old.weight.dtype, **kw)
            return _move_weights(old, new, None if noisy else em.fit_scale(old.weight))
        return make

    def update(layer: NoisySynapse) -> None:
        if isinstance(layer, AnalogSynapse):
            layer.set_analog(**analog)
            if error_model is not None or errors is not None or reads is not None:
                layer.set_errors(errors=errors, reads=reads, error_model=error_model)

    factories = {nn.Linear: factory(TiledLinear), NoisyLinear: factory(TiledLinear),
                 nn.Conv2d: factory(TiledConv2d), NoisyConv2d: factory(TiledConv2d)}
    model = replace_layers(model if inplace else safe_deepcopy(model), factories, update)
    if not analog_layers(model):
        raise ValueError(f"{type(model).__name__} has no linear or conv layer to tile")
    if not had_synapses:
        _hook_inferences(model)
    return model


def set_analog(model: nn.Module, **options: Any) -> nn.Module:
    """Set tile options on every tiled layer of ``model`` (fields of ``AnalogOptions``)."""
    layers = analog_layers(model)
    if not layers:
        raise ValueError(f"{type(model).__name__} has no tiled layers; use spikenoise.synapse.tile first")
    for layer in layers:
        layer.set_analog(**options)
    return model
