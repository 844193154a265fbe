"""Benchmark of the synapse engine against plain torch and a hand-written reference sampler.

Run ``python -m spikenoise.bench --threads 1`` (``--device cuda`` on a GPU). Every variant of a
case is timed in the same run, round-robin (one call of each variant in turn, repeated), so load
from other jobs hits all variants alike; the table shows the median per call. Cases:

* ``linear`` / ``conv``: one layer, fresh (``NoisyLinear`` init: hidden weights U(-1, 1), 3 of the
  8 levels in use) and ``trained`` (a float layer with ``N(0, 1)`` weights converted with
  :func:`spikenoise.convert`, as a trained layer: every level in use), next to the plain
  ``nn.Linear`` / ``nn.Conv2d`` call.
* ``snn``: a float snnTorch recurrent network 40 -> 128 (``RLeaky``, all-to-all) -> 12 (``Leaky``)
  over 67 timesteps, and its conversion.

``step reference`` is the hand-written exact Gaussian read of ``MultiLevelNVM``,
``clamp(round(level + sigma * randn))`` per batch row and call, as a careful user writes it
(level and sigma precomputed). ``brute`` draws every read of every weight per batch row with
the engine's samplers (native kernels when built); ``brute (torch)`` is the same with
``SPIKENOISE_NATIVE=0`` (``tbrute_over_this``: its time over each per-spike variant's). Peak memory is measured per variant in a fresh subprocess (CPU:
growth of the peak resident set during the call, Linux ``VmHWM``; CUDA: ``max_memory_allocated``)
with the same ``--threads``. ``--models`` measures training and evaluation clips/s of the model zoo.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any, Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from .noise.nvm import MultiLevelNVM
from .synapse import NoisyConv2d, NoisyLinear, convert, new_inference
from .synapse.base import synapses
from .synapse.chips import programmed
from .synapse.convert import replace_layers

CASES = {
    "linear": "Linear 512->512, batch 128, spike rate 0.2",
    "conv": "Conv2d 32->64 k3 pad1 on 16x16, batch 128, spike rate 0.2",
    "snn": "snnTorch 40 -> 128 (RLeaky) -> 12 (Leaky), 67 steps, batch 32, graded input",
}
INITS = ("fresh", "trained")
#: label -> (errors, reads, sampler, new inference before every call); None: not a NoisySynapse setting
LAYER_VARIANTS: dict[str, tuple | None] = {
    "torch": None,
    "clean": ("none", "spike", "auto", False),
    "chip (pinned draw)": ("static", "spike", "auto", False),
    "static (frozen read)": ("static", "spike", "auto", False),
    "static (new draw)": ("static", "spike", "auto", True),
    "dynamic/step exact": ("dynamic", "step", "auto", False),
    "dynamic/step reference": None,
    "dynamic/spike exact": ("dynamic", "spike", "exact", False),
    "dynamic/spike gaussian~": ("dynamic", "spike", "gaussian", False),
    "dynamic/spike brute": ("dynamic", "spike", "brute", False),
    # the same brute force with SPIKENOISE_NATIVE=0: every read drawn by torch ops
    "dynamic/spike brute (torch)": ("dynamic", "spike", "brute", False),
}
SNN_VARIANTS = ("torch", "clean", "static (new draw)", "dynamic/step exact", "dynamic/step reference")
NOISE = 2


# ----------------------------------------------------------------------------------------------
# the cases

def _spikes(shape, rate: float = 0.2) -> torch.Tensor:
    return (torch.rand(*shape) < rate).float()


def _layer_case(case: str, init: str, device: str):
    """(plain torch layer, noisy layer, input) of a layer case."""
    torch.manual_seed(0)
    nvm = MultiLevelNVM.noise_level(NOISE)
    if case == "linear":
        plain, x = nn.Linear(512, 512), _spikes((128, 512))
        fresh = lambda: NoisyLinear(512, 512, error_model=nvm)  # noqa: E731
    elif case == "conv":
        plain, x = nn.Conv2d(32, 64, 3, padding=1), _spikes((128, 32, 16, 16))
        fresh = lambda: NoisyConv2d(32, 64, 3, padding=1, error_model=nvm)  # noqa: E731
    else:
        raise ValueError(f"unknown layer case {case!r}")
    if init == "trained":
        nn.init.normal_(plain.weight)  # stands for a trained float layer: all levels populated
        noisy = convert(plain, nvm, errors="none", inference="manual")
    elif init == "fresh":
        noisy = fresh()
    else:
        raise ValueError(f"unknown init {init!r}; known: {INITS}")
    return plain.to(device).eval(), noisy.to(device).eval(), x.to(device)


class SnnNet(nn.Module):
    """Float snnTorch recurrent network: fc1 -> RLeaky (all-to-all) -> fc2 -> Leaky, summed membrane."""

    def __init__(self, n_in: int = 40, n_hidden: int = 128, n_out: int = 12):
        super().__init__()
        import snntorch as snn

        self.fc1 = nn.Linear(n_in, n_hidden)
        self.lif1 = snn.RLeaky(beta=0.9, linear_features=n_hidden)
        self.fc2 = nn.Linear(n_hidden, n_out)
        self.lif2 = snn.Leaky(beta=0.9)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        spk1, mem1 = self.lif1.init_rleaky()
        mem2 = self.lif2.init_leaky()
        out = 0.0
        for t in range(x.shape[1]):
            spk1, mem1 = self.lif1(self.fc1(x[:, t]), spk1, mem1)
            _, mem2 = self.lif2(self.fc2(spk1), mem2)
            out = out + mem2
        return out


def _snn_case(device: str):
    torch.manual_seed(0)
    net = SnnNet().to(device).eval()
    x = torch.randn(32, 67, 40, device=device)
    noisy = convert(net, MultiLevelNVM.noise_level(NOISE), errors="none", reads="step").eval()
    return net, noisy, x


# ----------------------------------------------------------------------------------------------
# the hand-written reference sampler

class ReferenceStepReads(nn.Module):
    """A noisy layer read per call and batch row with ``clamp(round(level + sigma * randn))``.

    The exact Gaussian read law of :class:`MultiLevelNVM` written by hand (level index and sigma
    per weight precomputed, as a careful user would), for timing against the engine.
    """

    def __init__(self, layer: nn.Module):
        super().__init__()
        em = layer.error_model
        self.layer = layer
        with torch.no_grad():
            self.level = em.level_index(layer.stored_weight()).to(layer.weight.dtype)
            self.sigma = em.sigma.to(layer.weight)[self.level.long()]
        self.v0, self.step, self.top = float(em.values[0]), em.step, em.n_levels - 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B = x.shape[0]
        r = torch.clamp(torch.round(self.level + self.sigma * torch.randn(B, *self.level.shape, device=x.device)),
                        0, self.top)
        w = self.v0 + self.step * r
        if isinstance(self.layer, nn.Conv2d):
            y = self.layer.row_op(x, w)
        else:
            y = torch.bmm(w, x.unsqueeze(-1)).squeeze(-1)
        return self.layer.scale_and_bias(y)


def with_reference_reads(model: nn.Module) -> nn.Module:
    """A copy of a converted model whose noisy layers read with :class:`ReferenceStepReads`."""
    import copy

    model = copy.deepcopy(model)
    if isinstance(model, (NoisyLinear, NoisyConv2d)):
        return ReferenceStepReads(model)
    return replace_layers(model, {NoisyLinear: ReferenceStepReads, NoisyConv2d: ReferenceStepReads})


# ----------------------------------------------------------------------------------------------
# timing

def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _configure(model: nn.Module, spec: tuple) -> None:
    errors, reads, sampler, _ = spec
    for s in synapses(model):
        s.set_errors(errors=errors, reads=reads, sampler=sampler)


def _calls(case: str, init: str, device: str, labels) -> tuple[dict[str, Callable], contextlib.ExitStack]:
    """One zero-argument callable per variant (each with its own copy of the model)."""
    import copy

    if case == "snn":
        plain, noisy, x = _snn_case(device)
    else:
        plain, noisy, x = _layer_case(case, init, device)
    stack = contextlib.ExitStack()
    calls: dict[str, Callable] = {}
    for label in labels:
        spec = LAYER_VARIANTS[label]
        if label == "torch":
            calls[label] = lambda m=plain: m(x)
            continue
        m = copy.deepcopy(noisy)
        if label == "dynamic/step reference":
            _configure(m, ("dynamic", "step", "auto", False))
            ref = with_reference_reads(m)
            calls[label] = lambda r=ref: r(x)
            continue
        if case == "snn" and spec[1] == "spike":
            spec = (spec[0], "step", spec[2], spec[3])  # the snn case keeps its per-step reads
        _configure(m, spec)
        if label.startswith("chip"):
            stack.enter_context(programmed(m, seed=0))
        if spec[3]:
            calls[label] = lambda m=m: (new_inference(m), m(x))
        else:
            calls[label] = lambda m=m: m(x)
        if label.endswith("(torch)"):
            calls[label] = _without_native(calls[label])
    return calls, stack


def _without_native(call: Callable) -> Callable:
    """``call`` run with the native kernels off (``SPIKENOISE_NATIVE=0``), the setting restored after."""
    def run() -> Any:
        old = os.environ.get("SPIKENOISE_NATIVE")
        os.environ["SPIKENOISE_NATIVE"] = "0"
        try:
            return call()
        finally:
            if old is None:
                del os.environ["SPIKENOISE_NATIVE"]
            else:
                os.environ["SPIKENOISE_NATIVE"] = old
    return run


def time_calls(calls: dict[str, Callable], device: str, min_time: float = 1.0, max_rounds: int = 30,
               slow: float = 0.2, fast_samples: int = 10) -> dict[str, float]:
    """Median seconds per call of each callable, timed round-robin (load from other jobs hits all
    alike). A variant slower than ``slow`` seconds is timed 3 times, the others at least
    ``fast_samples`` times."""
    times: dict[str, list[float]] = {k: [] for k in calls}
    enough = lambda v: len(v) >= (3 if v and v[0] > slow else fast_samples)  # noqa: E731
    with torch.no_grad():
        for f in calls.values():
            f()  # warm-up: one-time tables, the static draw of the frozen variant
        _sync(device)
        start = time.perf_counter()
        for _ in range(max_rounds):
            for k, f in calls.items():
                if times[k] and times[k][0] > slow and len(times[k]) >= 3:
                    continue
                t0 = time.perf_counter()
                f()
                _sync(device)
                times[k].append(time.perf_counter() - t0)
            if all(enough(v) for v in times.values()) and time.perf_counter() - start > min_time:
                break
    return {k: statistics.median(v) for k, v in times.items()}


# ----------------------------------------------------------------------------------------------
# memory

def _status_kb(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def peak_child(case: str, init: str, label: str, device: str) -> dict:
    """Run one variant once in this process and report its peak extra memory (bytes)."""
    calls, stack = _calls(case, init, device, [label])
    f = calls[label]
    with stack, torch.no_grad():
        f()  # warm-up: one-time sampler tables are not part of a call's working set
        if device.startswith("cuda"):
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            before = torch.cuda.memory_allocated()
            f()
            torch.cuda.synchronize()
            extra = torch.cuda.max_memory_allocated() - before
        else:
            # hand freed heap pages back to the OS (else the call reuses them unseen), then reset
            # the kernel's peak-RSS mark (VmHWM) so the peak is this call's alone
            import ctypes

            ctypes.CDLL("libc.so.6").malloc_trim(0)
            with open("/proc/self/clear_refs", "w") as fh:
                fh.write("5")
            before = _status_kb("VmRSS")
            f()
            extra = max(0, _status_kb("VmHWM") - before) * 1024
    return {"extra": extra}


def measure_peak(case: str, init: str, label: str, device: str, threads: int | None) -> dict:
    cmd = [sys.executable, "-m", "spikenoise.bench", "--_peak", case, init, label, "--device", device]
    if threads:
        cmd += ["--threads", str(threads)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def copy_bandwidth(nbytes: int, device: str) -> float:
    """Bytes per second of a plain torch copy of ``nbytes`` (bytes written per second)."""
    n = max(1, nbytes // 4)
    src = torch.rand(n, device=device)
    dst = torch.empty_like(src)
    best = float("inf")
    for _ in range(5):
        _sync(device)
        t0 = time.perf_counter()
        dst.copy_(src)
        _sync(device)
        best = min(best, time.perf_counter() - t0)
    return n * 4 / best


# ----------------------------------------------------------------------------------------------
# the table

def run(device: str = "cpu", cases: list[str] | None = None, memory: bool = True,
        threads: int | None = None) -> tuple[list[dict], list[str]]:
    rows: list[dict] = []
    notes: list[str] = []
    for case in cases or list(CASES):
        inits = ("trained",) if case == "snn" else INITS
        for init in inits:
            labels = list(SNN_VARIANTS) if case == "snn" else list(LAYER_VARIANTS)
            calls, stack = _calls(case, init, device, labels)
            with stack:
                times = time_calls(calls, device)
            base = {"case": case, "init": init}
            for label in labels:
                row = {**base, "variant": label, "ms": times[label] * 1e3,
                       "x_torch": times[label] / times["torch"], "x_clean": times[label] / times["clean"]}
                if "dynamic/spike brute" in times:
                    row["brute_over_this"] = times["dynamic/spike brute"] / times[label]
                if "dynamic/spike brute (torch)" in times and label.startswith("dynamic/spike"):
                    row["tbrute_over_this"] = times["dynamic/spike brute (torch)"] / times[label]
                if "dynamic/step reference" in times and label.startswith("dynamic/step"):
                    row["ref_over_this"] = times["dynamic/step reference"] / times[label]
                if memory and case != "snn":
                    row["peak_extra_MB"] = measure_peak(case, init, label, device, threads)["extra"] / 2 ** 20
                rows.append(row)
            if case != "snn":
                _, layer, x = _layer_case(case, init, device)
                read_bytes = x.shape[0] * layer.weight.numel() * 4
                bw = copy_bandwidth(read_bytes, device)
                floor = read_bytes / bw
                notes.append(f"{case}/{init}: one read tensor (batch x weights, float32) = {read_bytes / 2 ** 20:.0f} MiB; "
                             f"plain torch copy {bw / 1e9:.1f} GB/s -> writing it takes >= {floor * 1e3:.1f} ms "
                             f"= {floor / times['clean']:.1f}x clean (the floor of a static draw per inference)")
    return rows, notes


def format_table(rows: list[dict]) -> str:
    cols = ["case", "init", "variant", "ms", "x_torch", "x_clean", "brute_over_this", "tbrute_over_this", "ref_over_this",
            "peak_extra_MB"]
    cols = [c for c in cols if any(c in r for r in rows)]
    fmt = {"ms": "{:.2f}", "x_torch": "{:.2f}", "x_clean": "{:.2f}", "brute_over_this": "{:.1f}", "tbrute_over_this": "{:.1f}",
           "ref_over_this": "{:.2f}", "peak_extra_MB": "{:.1f}"}
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        lines.append("| " + " | ".join(fmt.get(c, "{}").format(r[c]) if c in r else "" for c in cols) + " |")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------
# the model zoo: training and evaluation throughput

ZOO = ("cnn", "rnn", "scnn", "srnn")
ZOO_ERRORS = ("none", "static", "dynamic")


def zoo_throughput(build_model, error_model, models=ZOO, errors=ZOO_ERRORS, batch: int = 32,
                   reps: int = 3, seed: int = 0) -> list[dict]:
    """Training and evaluation clips/s of each zoo model and error type (batch ``batch``).

    Only needs ``build_model(name, n_classes, error_model, errors)``, so it also runs against an
    older checkout (``PYTHONPATH``). Training: forward, cross-entropy, backward, Adam step.
    """
    rows = []
    torch.manual_seed(seed)
    x = torch.randn(batch, 67, 40)
    y = torch.randint(0, 12, (batch,))
    for name in models:
        for err in errors:
            torch.manual_seed(seed)
            model = build_model(name, n_classes=12, error_model=error_model, errors=err)
            opt = torch.optim.Adam(model.parameters(), lr=1e-3)

            def train_step():
                model.train()
                opt.zero_grad()
                F.cross_entropy(model(x), y).backward()
                opt.step()

            def eval_step():
                model.eval()
                with torch.no_grad():
                    model(x)

            row = {"model": name, "errors": err}
            for mode, f in (("train", train_step), ("eval", eval_step)):
                f()  # warm-up
                ts = []
                for _ in range(reps):
                    t0 = time.perf_counter()
                    f()
                    ts.append(time.perf_counter() - t0)
                row[f"{mode}_clips_s"] = batch / statistics.median(ts)
            rows.append(row)
    return rows


def format_zoo(rows: list[dict], old: list[dict] | None = None) -> str:
    old_of = {(r["model"], r["errors"]): r for r in old or []}
    cols = ["model", "errors", "train clips/s", "eval clips/s"]
    if old_of:
        cols += ["train x old", "eval x old"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        cells = [r["model"], r["errors"], f"{r['train_clips_s']:.3g}", f"{r['eval_clips_s']:.3g}"]
        o = old_of.get((r["model"], r["errors"]))
        if old_of:
            cells += [f"{r['train_clips_s'] / o['train_clips_s']:.1f}" if o else "",
                      f"{r['eval_clips_s'] / o['eval_clips_s']:.1f}" if o else ""]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------

def hardware(device: str) -> str:
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(0)
    model = "unknown CPU"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model}, {torch.get_num_threads()} threads"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m spikenoise.bench", description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--cases", nargs="+", choices=sorted(CASES), default=list(CASES))
    ap.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocesses")
    ap.add_argument("--json", help="also write the rows to this JSON file")
    ap.add_argument("--threads", type=int, help="torch CPU threads, also in the memory subprocesses")
    ap.add_argument("--models", action="store_true",
                    help="instead: training and evaluation clips/s of the model zoo (batch 32)")
    ap.add_argument("--quick", action="store_true", help="with --models: fewer repetitions")
    ap.add_argument("--zoo", nargs="+", choices=ZOO, default=list(ZOO), help="with --models: these models only")
    ap.add_argument("--zoo-errors", nargs="+", choices=ZOO_ERRORS, default=list(ZOO_ERRORS),
                    help="with --models: these error types only")
    ap.add_argument("--old", help="with --models: JSON of the same measurement on another checkout, "
                                  "shown as speed-up columns")
    ap.add_argument("--_peak", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args._peak:
        print(json.dumps(peak_child(*args._peak, args.device)))
        return 0
    head = f"# spikenoise {__import__('spikenoise').__version__}, torch {torch.__version__}, {hardware(args.device)}"
    if args.models:
        from spikenoise.models import build_model

        rows = zoo_throughput(build_model, MultiLevelNVM.noise_level(NOISE), models=args.zoo, errors=args.zoo_errors,
                              reps=1 if args.quick else 3)
        old = None
        if args.old:
            with open(args.old) as fh:
                old = json.load(fh)["rows"]
        print(head)
        print(f"# model zoo, batch 32, (B, 67, 40) inputs, noise level {NOISE}; clips per second")
        print(format_zoo(rows, old))
        if args.json:
            with open(args.json, "w") as fh:
                json.dump({"hardware": hardware(args.device), "rows": rows}, fh, indent=2)
        return 0
    rows, notes = run(args.device, args.cases, memory=not args.no_memory, threads=args.threads)
    print(head)
    for c in args.cases:
        print(f"# {c}: {CASES[c]}")
    print(format_table(rows))
    for n in notes:
        print(f"# {n}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"hardware": hardware(args.device), "rows": rows, "notes": notes}, fh, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
