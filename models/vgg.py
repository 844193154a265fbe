"""VGG-11/13/16/19 with batch norm (Simonyan & Zisserman; seed paper 001 uses A/B/D/E = 11/13/16/19).

Built on :class:`~spikenoise.synapse.NoisyConv2d` / :class:`~spikenoise.synapse.NoisyLinear`, so every
weight is read from memory through an error model; the default error model is an error-free
``BitFlip(0, dtype="float32")`` (weights stored exactly as float32).

Sizes are configurable so it runs on 67 x 40 KWS features (``in_channels=1, input_size=(67, 40)``)
as on small images (8 x 8 digits, 32 x 32 CIFAR). A 2 x 2 max-pool halves a spatial dimension only
while it is >= 2 (a 1-pixel dimension is not pooled), so deep configs fit small inputs.
``width`` multiplies every channel count (0.25 -> 16..128 channels) to keep CPU runs short.

Deployment: :func:`fold_batchnorm` folds each batch norm (eval statistics) into the preceding
layer's weights and bias, so *all* parameters of the deployed network are synapse weights and
biases that can be stored in (noisy) memory -- what the bit-flip study flips.
"""
from __future__ import annotations

from functools import partial

import torch
import torch.nn as nn

from spikenoise.noise.base import ErrorModel
from spikenoise.noise.bitflip import BitFlip
from spikenoise.synapse import NoisyConv2d, NoisyLinear, NoisySynapse, READS, new_inference

from .base import image_batch
from .registry import register_model

__all__ = ["VGG", "VGG_CONFIGS", "vgg", "fold_batchnorm"]

#: depth -> channels per conv ("M": 2 x 2 max-pool); seed 001's A, B, D, E
VGG_CONFIGS: dict[int, list] = {
    11: [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    13: [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    16: [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    19: [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"],
}


class VGG(nn.Module):
    """VGG with batch norm.

    Args:
        depth: 11, 13, 16 or 19.
        num_classes: output classes.
        in_channels: input channels (1 for KWS features / grey images, 3 for RGB).
        input_size: ``(H, W)`` of the input (fixes the classifier size).
        width: channel multiplier (>0).
        hidden: classifier hidden units (default ``512 * width``); ``classifier_layers`` 3 (VGG:
            two hidden fc layers with dropout) or 1 (a single linear layer, CIFAR-style).
        dropout: classifier dropout probability.
        error_model, errors, reads: synapse options (default: exact float32 storage, no errors,
            weights read once per inference).

    Shapes: ``(B, C, H, W)``, or ``(B, H, W)`` when ``in_channels == 1`` -> logits ``(B, num_classes)``.
    Every forward is one inference (static errors are redrawn per call).
    """

    def __init__(self, depth: int = 11, num_classes: int = 10, in_channels: int = 3,
                 input_size: tuple[int, int] = (32, 32), width: float = 1.0, hidden: int | None = None,
                 classifier_layers: int = 3, dropout: float = 0.5, *, error_model: ErrorModel | None = None,
                 errors: str = "none", reads: str = "once"):
        super().__init__()
        if depth not in VGG_CONFIGS:
            raise ValueError(f"depth must be one of {sorted(VGG_CONFIGS)}, got {depth!r}")
        if not (isinstance(width, (int, float)) and width > 0):
            raise ValueError(f"width must be a positive number, got {width!r}")
        if classifier_layers not in (1, 3):
            raise ValueError(f"classifier_layers must be 1 or 3, got {classifier_layers!r}")
        if reads not in READS:
            raise ValueError(f"reads must be one of {READS}, got {reads!r}")
        h, w = (int(input_size[0]), int(input_size[1]))
        if h < 1 or w < 1:
            raise ValueError(f"input_size must be positive, got {input_size!r}")
        self.depth, self.num_classes, self.in_channels, self.input_size = depth, num_classes, in_channels, (h, w)
        em = BitFlip(0.0, dtype="float32") if error_model is None else error_model
        syn = dict(error_model=em, errors=errors, reads=reads)
        layers: list[nn.Module] = []
        c = in_channels
        for v in VGG_CONFIGS[depth]:
            if v == "M":
                kh, kw = (2 if h >= 2 else 1), (2 if w >= 2 else 1)
                if kh * kw > 1:
                    layers.append(nn.MaxPool2d((kh, kw)))
                    h, w = h // kh, w // kw
                continue
            out = max(1, int(round(v * width)))
            layers += [NoisyConv2d(c, out, 3, padding=1, **syn), nn.BatchNorm2d(out), nn.ReLU()]
            c = out
        self.features = nn.Sequential(*layers)
        self.feature_shape = (c, h, w)
        flat = c * h * w
        hid = max(1, int(round(512 * width))) if hidden is None else int(hidden)
        if classifier_layers == 3:
            self.classifier = nn.Sequential(
                NoisyLinear(flat, hid, **syn), nn.BatchNorm1d(hid), nn.ReLU(), nn.Dropout(dropout),
                NoisyLinear(hid, hid, **syn), nn.BatchNorm1d(hid), nn.ReLU(), nn.Dropout(dropout),
                NoisyLinear(hid, num_classes, **syn))
        else:
            self.classifier = nn.Sequential(nn.Dropout(dropout), NoisyLinear(flat, num_classes, **syn))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = image_batch(x, self.in_channels, self.input_size, "VGG")
        new_inference(self)  # one forward = one inference
        return self.classifier(self.features(x).flatten(1))


def vgg(depth: int, **kwargs) -> VGG:
    """Shorthand: ``vgg(11, num_classes=10, in_channels=1, input_size=(8, 8), width=0.25)``."""
    return VGG(depth, **kwargs)


for _depth in VGG_CONFIGS:  # "vgg11" .. "vgg19"
    register_model(f"vgg{_depth}", partial(VGG, _depth))


@torch.no_grad()
def _fold_pair(layer: nn.Linear | nn.Conv2d, bn: nn.modules.batchnorm._BatchNorm) -> None:
    g = bn.weight / torch.sqrt(bn.running_var + bn.eps) if bn.affine else 1.0 / torch.sqrt(bn.running_var + bn.eps)
    beta = bn.bias if bn.affine else torch.zeros_like(bn.running_mean)
    if isinstance(layer, NoisySynapse):
        # the layer computes scale * quantize(hidden); fold into the effective weight, scale 1
        w_eff = layer.error_model.quantize(layer.weight) * layer.scale
        layer.scale.fill_(1.0)
    else:
        w_eff = layer.weight.detach().clone()
    shape = [-1] + [1] * (w_eff.dim() - 1)
    layer.weight.copy_(w_eff * g.view(shape))
    b = layer.bias if layer.bias is not None else torch.zeros_like(bn.running_mean)
    new_b = (b - bn.running_mean) * g + beta
    if layer.bias is None:
        layer.bias = nn.Parameter(new_b.clone())
    else:
        layer.bias.copy_(new_b)


def fold_batchnorm(model: nn.Module) -> int:
    """Fold every batch norm that directly follows a conv / linear layer in a ``nn.Sequential`` into it.

    Uses the running statistics (inference); the batch norm becomes ``nn.Identity``. Works on plain
    and noisy layers (a noisy layer's ``scale`` is folded into its weights and set to 1; the weights
    must be stored exactly, e.g. ``BitFlip(0, dtype="float32")``, or the fold inherits their
    rounding). In place; returns the number of folded pairs. Call on a trained model in eval mode.
    """
    n = 0
    for seq in [m for m in model.modules() if isinstance(m, nn.Sequential)]:
        for i in range(len(seq) - 1):
            a, b = seq[i], seq[i + 1]
            ok = (isinstance(a, nn.Conv2d) and isinstance(b, nn.BatchNorm2d)) or \
                 (isinstance(a, nn.Linear) and isinstance(b, nn.BatchNorm1d))
            if ok and b.track_running_stats and b.running_mean is not None:
                _fold_pair(a, b)
                seq[i + 1] = nn.Identity()
                n += 1
    return n
