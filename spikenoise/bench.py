"""Benchmark of the synapse engine: clean vs static vs dynamic per-spike reads.

Run ``python -m spikenoise.bench`` (``--device cuda`` on a GPU). Every variant of a layer is timed
in the same run, so the printed ratios compare like with like. Peak memory is measured per
variant in a fresh subprocess (CPU: growth of the peak resident set during the call, Linux
``VmHWM`` after resetting it; CUDA: ``max_memory_allocated``) and reported together with the
bytes of the layer's input and parameters.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

import torch

from .noise.nvm import MultiLevelNVM
from .synapse import NoisyConv2d, NoisyLinear

CASES = {
    "linear": "Linear 512->512, batch 128, spike rate 0.2",
    "conv": "Conv2d 32->64 k3 pad1 on 16x16, batch 128, spike rate 0.2",
}
# (label, errors, sampler, new inference before every call)
VARIANTS = [
    ("clean", "none", "auto", False),
    ("static (frozen read)", "static", "auto", False),
    ("static (new draw)", "static", "auto", True),
    ("dynamic/spike exact", "dynamic", "exact", False),
    ("dynamic/spike gaussian~", "dynamic", "gaussian", False),
    ("dynamic/spike brute", "dynamic", "brute", False),
]


def _setup(case: str, device: str, seed: int = 0):
    torch.manual_seed(seed)
    nvm = MultiLevelNVM.noise_level(2)
    if case == "linear":
        layer = NoisyLinear(512, 512, error_model=nvm, reads="spike")
        x = (torch.rand(128, 512) < 0.2).float()
    elif case == "conv":
        layer = NoisyConv2d(32, 64, 3, padding=1, error_model=nvm, reads="spike")
        x = (torch.rand(128, 32, 16, 16) < 0.2).float()
    else:
        raise ValueError(f"unknown case {case!r}; known: {sorted(CASES)}")
    return layer.to(device).eval(), x.to(device)


def _configure(layer, errors: str, sampler: str) -> None:
    layer.set_errors(errors=errors, sampler=sampler)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def time_variant(layer, x, errors: str, sampler: str, new_draw: bool, device: str,
                 min_time: float = 0.3, max_reps: int = 50) -> float:
    """Median seconds per call."""
    _configure(layer, errors, sampler)
    with torch.no_grad():
        layer(x)  # warm-up (and the static draw for the frozen variant)
        _sync(device)
        times: list[float] = []
        start = time.perf_counter()
        while len(times) < max_reps and (time.perf_counter() - start < min_time or len(times) < 3):
            if new_draw:
                layer.new_inference()
            t0 = time.perf_counter()
            layer(x)
            _sync(device)
            times.append(time.perf_counter() - t0)
            if errors == "dynamic" and sampler == "brute" and len(times) >= 1 and times[0] > 2.0:
                break  # the reference is slow; one timed call is enough
    return statistics.median(times)


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def peak_child(case: str, label: str, device: str) -> dict:
    """Run one variant once in this process and report its peak extra memory (bytes)."""
    errors, sampler, new_draw = next((e, s, n) for (lab, e, s, n) in VARIANTS if lab == label)
    layer, x = _setup(case, device)
    _configure(layer, errors, sampler)
    base = sum(p.numel() * p.element_size() for p in layer.parameters()) + x.numel() * x.element_size()
    with torch.no_grad():
        layer(x)  # warm-up: one-time sampler tables are not part of a call's working set
        layer.new_inference()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            before = torch.cuda.memory_allocated()
            layer(x)
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
            layer(x)
            extra = max(0, _status_kb("VmHWM") - before) * 1024
    return {"base": base, "extra": extra, "peak": base + extra}


def measure_peak(case: str, label: str, device: str) -> dict:
    cmd = [sys.executable, "-m", "spikenoise.bench", "--_peak", case, label, "--device", device]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def run(device: str = "cpu", cases: list[str] | None = None, memory: bool = True) -> list[dict]:
    rows = []
    for case in cases or list(CASES):
        layer, x = _setup(case, device)
        times = {}
        for label, errors, sampler, new_draw in VARIANTS:
            times[label] = time_variant(layer, x, errors, sampler, new_draw, device)
        for label, *_ in VARIANTS:
            row = {"case": case, "variant": label, "ms": times[label] * 1e3,
                   "x_clean": times[label] / times["clean"],
                   "brute_over_this": times["dynamic/spike brute"] / times[label]}
            if memory:
                pk = measure_peak(case, label, device)
                row["peak_MB"] = pk["peak"] / 2 ** 20
            rows.append(row)
        if memory:
            clean_peak = next(r["peak_MB"] for r in rows if r["case"] == case and r["variant"] == "clean")
            for r in rows:
                if r["case"] == case:
                    r["peak_x_clean"] = r["peak_MB"] / clean_peak
    return rows


def format_table(rows: list[dict]) -> str:
    cols = ["case", "variant", "ms", "x_clean", "brute_over_this", "peak_MB", "peak_x_clean"]
    cols = [c for c in cols if any(c in r for r in rows)]
    fmt = {"ms": "{:.2f}", "x_clean": "{:.2f}", "brute_over_this": "{:.1f}", "peak_MB": "{:.1f}",
           "peak_x_clean": "{:.2f}"}
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        lines.append("| " + " | ".join(fmt.get(c, "{}").format(r.get(c, "")) for c in cols) + " |")
    return "\n".join(lines)


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
    ap.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    ap.add_argument("--_peak", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args._peak:
        print(json.dumps(peak_child(args._peak[0], args._peak[1], args.device)))
        return 0
    rows = run(args.device, args.cases, memory=not args.no_memory)
    print(f"# spikenoise {__import__('spikenoise').__version__}, torch {torch.__version__}, {hardware(args.device)}")
    for c in args.cases:
        print(f"# {c}: {CASES[c]}")
    print(format_table(rows))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"hardware": hardware(args.device), "rows": rows}, fh, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
