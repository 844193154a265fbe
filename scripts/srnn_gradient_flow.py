"""Gradient flow through time of the SRNN vs the RNN (issue 13, "an SRNN that learns").

    python scripts/srnn_gradient_flow.py [--hidden 64,64] [--gammas 1,10,30,100] [--checkpoint PATH]

Prints, per surrogate sharpness gamma and input scale, ``|dL/dx_0| / mean_t |dL/dx_t|`` over
t = 30..39 (how much more the first timestep weighs in the gradient than the middle of the clip;
about 1 for the light-GRU RNN) on random 67 x 40 inputs, for 3 initialisation seeds. With
``--checkpoint`` (a state dict or a spikenoise training checkpoint of an SRNN of that width) the
trained network is measured instead, and the mean cosine between the weight gradients of 4 real
training batches (embedded "tiny" data) is printed too: near 0 means every batch pulls elsewhere.
One thread, a few seconds per line.
"""
import argparse

import torch
import torch.nn.functional as F

from spikenoise.models import build_model


def ratio(model, x, y) -> float:
    x = x.clone().requires_grad_(True)
    model.zero_grad()
    F.cross_entropy(model(x), y).backward()
    gx = x.grad.norm(dim=(0, 2))
    return float(gx[0] / gx[30:40].mean())


def batch_cosine(model, batches) -> float:
    gs = []
    for x, y in batches:
        model.zero_grad()
        F.cross_entropy(model(x), y).backward()
        gs.append(torch.cat([p.grad.flatten() for n, p in model.named_parameters() if n.endswith("weight")]))
    cos = [F.cosine_similarity(gs[a], gs[b], dim=0).item() for a in range(len(gs)) for b in range(a + 1, len(gs))]
    return sum(cos) / len(cos)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--hidden", default="64,64")
    p.add_argument("--gammas", default="1,10,30,100")
    p.add_argument("--checkpoint")
    a = p.parse_args()
    torch.set_num_threads(1)
    hidden = tuple(int(h) for h in a.hidden.split(","))
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(32, 67, 40, generator=g)
    y = torch.arange(32) % 12
    batches = None
    if a.checkpoint:
        from spikenoise.data import load_kws, make_loaders

        data = load_kws("embedded", preset="tiny", seed=0, progress=False)
        batches = [b for _, b in zip(range(4), make_loaders(data, batch_size=32, seed=0)[0])]
    for name, gamma in [("rnn", None)] + [("srnn", float(v)) for v in a.gammas.split(",")]:
        for scale in (1.0, 2.0):
            rs, cos = [], None
            for seed in range(3):
                torch.manual_seed(seed)
                kw = {} if gamma is None else {"gamma": gamma}
                m = build_model(name, n_classes=12, hidden=hidden, **kw)
                if a.checkpoint:
                    if name == "rnn":
                        break
                    state = torch.load(a.checkpoint, weights_only=False)
                    m.load_state_dict(state.get("model", state))
                rs.append(ratio(m, x0 * scale, y))
            if not rs:
                continue
            if batches is not None and scale == 1.0:
                cos = batch_cosine(m, batches)
            label = "rnn" if gamma is None else f"srnn gamma={gamma:g}"
            extra = "" if cos is None else f"; batch-gradient cosine {cos:.3f}"
            print(f"{label:18s} input x{scale:g}: |dL/dx_0| / |dL/dx_30..39| = "
                  + " ".join(f"{r:.2g}" for r in rs) + extra, flush=True)


if __name__ == "__main__":
    main()
