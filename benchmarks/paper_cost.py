"""Per-clip costs of the paper preset's work, measured on this machine's CPU (one thread per task).

``python benchmarks/paper_cost.py [--batch 64] [--eval-batch 32]``: for each model at full width, the
CPU seconds per clip of an error-agnostic training step, an error-aware (static errors, level 2) step,
and an evaluation pass error-free / static / dynamic at level 2, on random 67 x 40 inputs (the
costs do not depend on the values). Prints one JSON line per model; the README extrapolates them
to GSCD and the paper's protocol.
"""
from __future__ import annotations

import argparse
import json
import time

import torch
import torch.nn.functional as F


def _per_clip(fn, n_clips: int, repeat: int) -> float:
    """CPU seconds per clip (process time: on a shared, loaded machine wall time overstates the cost
    on a dedicated core; with one thread the two agree on an idle machine)."""
    fn()  # warm-up
    t = time.process_time()
    for _ in range(repeat):
        fn()
    return (time.process_time() - t) / (repeat * n_clips)


def measure(name: str, batch: int, eval_batch: int, repeat: int) -> dict:
    from spikenoise.models import build_model
    from spikenoise.noise.nvm import MultiLevelNVM
    from spikenoise.synapse import configure
    from spikenoise.train import make_optimizer

    torch.manual_seed(0)
    model = build_model(name, n_classes=12)
    x, y = torch.randn(batch, 67, 40), torch.randint(0, 12, (batch,))
    xe = torch.randn(eval_batch, 67, 40)
    opt = make_optimizer(model)

    def step():
        model.train()
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()

    @torch.no_grad()
    def infer():
        model.eval()
        model(xe)

    em = MultiLevelNVM.noise_level(2)
    out = {"model": name, "threads": torch.get_num_threads(), "batch": batch, "eval_batch": eval_batch}
    configure(model, errors="none")
    out["train_agnostic"] = _per_clip(step, batch, repeat)
    out["eval_clean"] = _per_clip(infer, eval_batch, repeat)
    configure(model, errors="static", error_model=em)
    out["train_aware"] = _per_clip(step, batch, repeat)
    out["eval_static"] = _per_clip(infer, eval_batch, repeat)
    configure(model, errors="dynamic", error_model=em)
    out["eval_dynamic"] = _per_clip(infer, eval_batch, repeat)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="cnn,rnn,scnn,srnn")
    p.add_argument("--batch", type=int, default=128, help="training batch (paper: 128)")
    p.add_argument("--eval-batch", type=int, default=32)
    p.add_argument("--repeat", type=int, default=2)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    for name in a.models.split(","):
        print(json.dumps(measure(name, a.batch, a.eval_batch, a.repeat)), flush=True)


if __name__ == "__main__":
    main()
