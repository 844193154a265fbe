"""The model-zoo throughput measurement of ``spikenoise.bench`` run against another checkout.

    PYTHONPATH=OLD python scripts/zoo_throughput_checkout.py BENCH_PY MODELS ERRORS REPS OUT.json

Takes ``zoo_throughput`` from ``BENCH_PY`` (this checkout's ``spikenoise/bench.py``) and runs it
with whatever ``spikenoise`` is importable, e.g. a copy of commit 67ebf36 on ``PYTHONPATH``
(``git archive 67ebf36 | tar -x -C OLD``, then ``ln -s ../models OLD/spikenoise/models``, as the
installed package maps ``spikenoise.models`` to ``models/``). ``MODELS``/``ERRORS`` are
comma-separated (``rnn,srnn``, ``none,static,dynamic``); one thread. ``OUT.json`` is what
``python -m spikenoise.bench --models --old OUT.json`` reads. Run it next to (alternating with)
the same measurement of this checkout, so that load from other jobs hits both alike.
"""
import ast
import json
import statistics
import sys
import time

import torch
import torch.nn.functional as F

bench_py, models, errors, reps, out = sys.argv[1], sys.argv[2].split(","), sys.argv[3].split(","), int(sys.argv[4]), sys.argv[5]
torch.set_num_threads(1)
tree = ast.parse(open(bench_py).read())
fn = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "zoo_throughput")
ns = {"torch": torch, "F": F, "statistics": statistics, "time": time, "ZOO": (), "ZOO_ERRORS": ()}
exec(compile(ast.Module([fn], []), bench_py, "exec"), ns)

from spikenoise.models import build_model  # noqa: E402
try:
    from spikenoise.noise.nvm import MultiLevelNVM  # noqa: E402
except ImportError:  # older layouts
    from spikenoise.noise import MultiLevelNVM  # noqa: E402

rows = ns["zoo_throughput"](build_model, MultiLevelNVM.noise_level(2), models=models, errors=errors, reps=reps)
with open(out, "w") as fh:
    json.dump({"rows": rows}, fh, indent=2)
for r in rows:
    print(f"{r['model']:5s} {r['errors']:8s} train {r['train_clips_s']:8.3g} clips/s  eval {r['eval_clips_s']:8.3g} clips/s")
