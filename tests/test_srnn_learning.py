"""The SRNN's backward pass through 67 timesteps must not be dominated by the first steps.

With the reset term detached (snnTorch's default) and the SpikGRU surrogate at gamma = 10 the
recurrent spikes amplified the backward signal at every step (the gradient w.r.t. the input at
t = 0 was 2-3x that at t = 30..39, and grew further during training), and the SRNN barely
learned (38 % vs the RNN's 62 % on the embedded "tiny" set). The reset's own gradient (as in the
authors' code, now the default) is a negative feedback that removes the growth. The light-GRU
RNN's ratio is about 1. See scripts/srnn_gradient_flow.py and models/srnn.py.
"""
import torch
import torch.nn.functional as F

from spikenoise.models import build_model

BOUND = 1.5  # measured (3 seeds, this input): default (gamma 10, reset's gradient) 1.0-1.06,
#              gamma 30 detached 1.15-1.2, gamma 10 detached 2.0-2.8; RNN 1.0


def early_to_mid_gradient_ratio(name: str, seed: int, **kw) -> float:
    """``|dL/dx_0| / mean_t |dL/dx_t|`` for t = 30..39, 64-unit layers, inputs of std 2."""
    g = torch.Generator().manual_seed(0)
    x = (2.0 * torch.randn(32, 67, 40, generator=g)).requires_grad_(True)
    y = torch.arange(32) % 12
    torch.manual_seed(seed)
    model = build_model(name, n_classes=12, hidden=(64, 64), **kw)
    F.cross_entropy(model(x), y).backward()
    gx = x.grad.norm(dim=(0, 2))
    return float(gx[0] / gx[30:40].mean())


def test_srnn_gradient_does_not_explode_backwards_in_time():
    torch.set_num_threads(1)
    ratios = [early_to_mid_gradient_ratio("srnn", s) for s in range(3)]
    assert max(ratios) < BOUND, ratios
    assert min(ratios) > 0.5, ratios  # nor vanish: early steps still get a gradient


def test_the_gradient_flow_check_catches_the_detached_reset():
    torch.set_num_threads(1)
    old = [early_to_mid_gradient_ratio("srnn", s, gamma=10.0, detach_reset=True) for s in range(3)]
    assert min(old) > BOUND, old
    assert 0.7 < early_to_mid_gradient_ratio("rnn", 0) < 1.4
