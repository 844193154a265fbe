"""One registry for every model of the zoo: ``@register_model(name)`` and :func:`build_model`.

Adding a model is one new file in ``models/`` whose class (or factory) carries
``@register_model("name")``, plus its import line in ``models/__init__.py``.
"""
from __future__ import annotations

from typing import Any, Callable

import torch.nn as nn

__all__ = ["MODELS", "KWS_MODELS", "WIDTHS", "register_model", "build_model", "model_names"]

#: Model widths. "full": the paper's (CNN/SCNN channels 16-32-64, RNN/SRNN 2 x 128 units);
#: "half": half the channels / units (about 1/4 of the weights; same topologies and read
#: semantics) so that the quick preset fits on a laptop CPU; "tiny" is for tests only.
WIDTHS: dict[str, dict[str, dict[str, Any]]] = {
    "full": {},
    "half": {"cnn": {"channels": [8, 16, 32]}, "scnn": {"channels": [8, 16, 32]},
             "cnn_pixel": {"channels": [8, 16, 32]}, "rnn": {"hidden": [64, 64]}, "srnn": {"hidden": [64, 64]}},
    "tiny": {"cnn": {"channels": [4, 8, 8]}, "scnn": {"channels": [4, 8, 8], "timesteps": 3},
             "cnn_pixel": {"channels": [4, 8, 8]}, "rnn": {"hidden": [16, 16]}, "srnn": {"hidden": [16, 16]}},
}

#: name -> class or factory returning an ``nn.Module``
MODELS: dict[str, Callable[..., nn.Module]] = {}
#: names of the keyword-spotting models (input ``(B, 67, 40)``, ``n_classes`` argument)
KWS_MODELS: list[str] = []


def register_model(name: str, factory: Callable[..., nn.Module] | None = None, *, kws: bool = False):
    """Register ``factory`` under ``name``; used as ``@register_model("name")`` or called directly.

    ``kws=True`` marks a keyword-spotting model (listed in ``MODEL_NAMES``). Registering a name
    twice is an error.
    """
    def add(f: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in MODELS:
            raise ValueError(f"model name {name!r} is already registered (by {MODELS[name]!r})")
        MODELS[name] = f
        if kws:
            KWS_MODELS.append(name)
        return f

    return add if factory is None else add(factory)


def model_names(kws_only: bool = False) -> tuple[str, ...]:
    """Registered names (all, or the keyword-spotting models only)."""
    return tuple(KWS_MODELS) if kws_only else tuple(MODELS)


def build_model(name: str, *args: Any, **kwargs: Any) -> nn.Module:
    """Build a registered model by name; arguments go to its class (see each class).

    Keyword-spotting models (``"cnn" | "rnn" | "scnn" | "srnn" | "cnn_pixel"``) take
    ``n_classes=12, error_model=None, errors="none"`` and model-specific options (``reads``,
    ``sampler``, ``input_reads``, ``hidden``, ``channels``, ``timesteps``, ``input_shape``, ...).
    Others: ``vgg11 .. vgg19``, ``binary_mlp``, ``binary_cnn``, ``resilience_mlp``,
    ``resilience_cnn``, ``resilience_rnn``.
    """
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of {tuple(MODELS)}")
    return MODELS[name](*args, **kwargs)
