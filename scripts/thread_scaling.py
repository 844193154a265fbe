"""Clips/s of one compare task at 1 vs 2 torch threads: does a second thread per task help on 2 cores?

    python scripts/thread_scaling.py

For each half-width model: training steps at batch 64 (Adam, random (64, 67, 40) inputs) and the
dynamic-error evaluation at noise level 2 on one batch of 512, each timed for 3 s after a warm-up,
with torch.set_num_threads(1) and then (2). Compare the ratio with the ~2x of two tasks at once
(``--backend ray``). Note the load average: other jobs on the cores change both.
"""
import time, torch
import torch.nn.functional as F
from spikenoise.models import build_model, WIDTHS
from spikenoise.evaluate import noisy_accuracy
from spikenoise.train import make_optimizer
for name in ("rnn", "scnn", "srnn", "cnn"):
    for threads in (1, 2):
        torch.set_num_threads(threads)
        torch.manual_seed(0)
        m = build_model(name, n_classes=12, **WIDTHS["half"].get(name, {}))
        opt = make_optimizer(m, 2e-3, 6e-2)
        x = torch.randn(64, 67, 40); y = torch.randint(0, 12, (64,))
        def step():
            loss = F.cross_entropy(m(x), y); opt.zero_grad(); loss.backward(); opt.step()
        step(); t = time.perf_counter(); n = 0
        while time.perf_counter() - t < 3:
            step(); n += 64
        tr = n / (time.perf_counter() - t)
        xe = torch.randn(512, 67, 40); ye = torch.randint(0, 12, (512,))
        noisy_accuracy(m, [(xe[:8], ye[:8])], "dynamic", 2, 0)
        t = time.perf_counter(); n = 0
        while time.perf_counter() - t < 3:
            noisy_accuracy(m, [(xe, ye)], "dynamic", 2, 0); n += 512
        ev = n / (time.perf_counter() - t)
        print(f"{name} threads {threads}: train {tr:.0f} clips/s, eval dynamic {ev:.0f} clips/s", flush=True)
