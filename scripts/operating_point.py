"""Clean accuracy vs epochs per model, with the training code ``spikenoise compare`` uses (issue 13 item 3).

    python scripts/operating_point.py --models cnn,rnn --sizes 4000,500,500 --epochs 12 --out runs/op/a.jsonl

Builds each network as ``compare`` does (:func:`spikenoise.studies.compare.protocol.new_model`, its
loaders and seeds) and trains it error-agnostic with :func:`spikenoise.train.fit` (Adam, two
parameter groups, cosine annealing over ``--epochs``). After every epoch it measures the clean
validation accuracy (``fit``'s own) and the clean test accuracy, and appends one JSON line per epoch
to ``--out``: model, seed, options, epoch, train/val/test accuracy (fractions), the epoch's training
seconds, wall and CPU (validation included, the test pass excluded; on a loaded machine the CPU
seconds of one thread estimate the light-load wall time), cumulative training seconds, test-pass
seconds and the 1-minute load average (``os.getloadavg``) -- timings mean little without the load.
``--save-dir`` keeps the trained state dicts (e.g. to time the noisy evaluation on trained networks).

The cosine schedule depends on ``--epochs``: the accuracy after epoch 8 of a 12-epoch run is not
that of an 8-epoch run. Measure a candidate epoch count with its own run; use a long run for the
converged accuracy. One thread per process by default (``--threads``): the CPU is shared.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch


def _ints(text: str) -> list[int]:
    return [int(t) for t in text.split(",") if t]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="cnn,rnn,scnn,srnn")
    p.add_argument("--data", default="embedded", choices=("embedded", "fsdd"))
    p.add_argument("--root", default=None, help="FSDD folder (--data fsdd)")
    p.add_argument("--embedded-preset", default="quick")
    p.add_argument("--sizes", type=_ints, default=[4000, 500, 500], help="train,val,test clips")
    p.add_argument("--width", default="half")
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--weight-lr", type=float, default=3e-2)
    p.add_argument("--seed", type=int, default=0, help="training seed (compare's --seed)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", required=True, help="JSON-lines file (appended)")
    p.add_argument("--save-dir", default=None, help="write each trained state dict there as MODEL_sSEED.pt")
    a = p.parse_args()
    torch.set_num_threads(a.threads)

    from spikenoise.evaluate import accuracy, cache_batches
    from spikenoise.models import WIDTHS
    from spikenoise.studies.compare import protocol
    from spikenoise.train import derive_seed, fit

    cfg = dict(data=a.data, root=a.root, embedded_preset=a.embedded_preset, sizes=a.sizes, data_seed=0,
               progress=False, model_kwargs=WIDTHS[a.width])
    data = protocol.load_data(cfg)
    test = cache_batches(protocol.loaders(data, max(a.batch_size, 128), 0)[2])
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    opts = dict(data=a.data, sizes=a.sizes, width=a.width, epochs=a.epochs, batch_size=a.batch_size, lr=a.lr,
                weight_lr=a.weight_lr, threads=a.threads)
    for name in a.models.split(","):
        train_loader, val_loader, _ = protocol.loaders(data, a.batch_size, a.seed)
        model = protocol.new_model(cfg, len(data.classes), name, a.seed, torch.device("cpu"))
        total = 0.0
        cpu_mark = time.process_time()

        def log(rec, name=name):
            nonlocal total, cpu_mark
            total += rec["seconds"]
            cpu = time.process_time() - cpu_mark
            t0 = time.perf_counter()
            test_acc = accuracy(model, test)
            model.train()
            row = dict(model=name, seed=a.seed, **opts, epoch=rec["epoch"], train_acc=rec["train_acc"],
                       val_acc=rec["val_acc"], test_acc=test_acc, seconds=rec["seconds"], cpu_seconds=cpu,
                       train_seconds=total, test_seconds=time.perf_counter() - t0, load1=os.getloadavg()[0])
            cpu_mark = time.process_time()
            with open(out, "a") as fh:
                fh.write(json.dumps(row) + "\n")
            print(f"{name} ep {rec['epoch']:3d} train {rec['train_acc']*100:5.1f} val {rec['val_acc']*100:5.1f} "
                  f"test {test_acc*100:5.1f}  {rec['seconds']:.1f}s cpu {cpu:.1f}s (total {total:.0f}s, load {row['load1']:.1f})",
                  flush=True)

        fit(model, train_loader, val_loader, epochs=a.epochs, lr=a.lr, weight_lr=a.weight_lr,
            seed=derive_seed(a.seed, name, "agnostic"), progress=False, log=log)
        if a.save_dir:
            Path(a.save_dir).mkdir(parents=True, exist_ok=True)
            torch.save(model.state_dict(), Path(a.save_dir) / f"{name}_s{a.seed}.pt")


if __name__ == "__main__":
    main()
