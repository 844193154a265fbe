"""Compare spikenoise's DriftingPCM with IBM aihwkit's PCMLikeNoiseModel, cell by cell.

For each target conductance (uS) and time after programming, draw ``--samples`` cells with
aihwkit's own functions (programming noise, drift coefficients, drift + accumulated read noise)
and print the mean and std of the conductance next to DriftingPCM's exact values (numerical
integration) and its own Monte Carlo. ``--out`` writes the numbers as JSON (the repository keeps
them in tests/data/aihwkit_drift_reference.json, checked by tests/test_drift.py without aihwkit).

aihwkit is not a dependency of spikenoise. Install it for this script with::

    .venv/bin/python -m pip install --no-deps aihwkit==1.1.0

Only ``aihwkit.inference.noise.pcm`` is used (pure torch); aihwkit's C++ tile is not needed.

Run: ``python scripts/compare_aihwkit_drift.py --out tests/data/aihwkit_drift_reference.json``
"""
from __future__ import annotations

import argparse
import json
import math
import sys

import torch

from spikenoise.noise.drift import DAY, HOUR, YEAR, DriftingPCM

TARGETS = [0.0, 2.0, 6.25, 12.5, 18.75, 25.0]  # uS: the RESET cell, a low state, the levels 1..4 of -4..+3
TIMES = {"programmed": None, "1 s": 1.0, "1 h": HOUR, "1 day": DAY, "1 year": YEAR}


def _se(x: torch.Tensor) -> tuple[float, float, float, float]:
    """mean, std and their standard errors (the std's by the delta method on the 4th moment)."""
    x = x.double()
    n = x.numel()
    m = float(x.mean())
    c = x - m
    var = float((c * c).mean())
    m4 = float((c ** 4).mean())
    sd = math.sqrt(var)
    se_sd = math.sqrt(max(m4 - var * var, 0.0) / n) / (2 * sd) if sd > 0 else 0.0
    return m, sd, sd / math.sqrt(n), se_sd


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=200000, help="cells drawn per target (default 200000)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", help="write the table as JSON here")
    args = ap.parse_args(argv)
    try:
        import aihwkit
        from aihwkit.inference.noise.pcm import PCMLikeNoiseModel
    except ImportError as e:  # pragma: no cover - optional tool
        print(f"aihwkit is needed for this script ({e}); install: pip install --no-deps aihwkit==1.1.0")
        return 2
    torch.manual_seed(args.seed)
    noise = PCMLikeNoiseModel(g_max=25.0)  # defaults: t_0 = 20 s, t_read = 250 ns, Nandakumar et al. 2019
    ours = DriftingPCM()
    gen = torch.Generator().manual_seed(args.seed + 1)
    rows = []
    head = f"{'target uS':>9} {'time':>10} | {'aihwkit mean':>12} {'std':>7} | {'ours exact':>10} {'std':>7} | {'ours MC':>8} {'std':>7} | z(mean) z(std)"
    print(head)
    print("-" * len(head))
    for g in TARGETS:
        g_t = torch.full((args.samples,), g, dtype=torch.float32)
        g_prog = noise.apply_programming_noise_to_conductance(g_t.clone())
        nu = noise.generate_drift_coefficients(g_t.clone())
        for label, t in TIMES.items():
            if t is None:
                ref = g_prog
                ex = ours.cell_moments(g, programmed_only=True)
                mc = None
            else:
                ref = noise.apply_drift_noise_to_conductance(g_prog, nu, t)
                ex = ours.cell_moments(g, t)
                mc = ours.cell_conductance(torch.tensor([g], dtype=torch.float64), args.samples, gen, t=t)[:, 0]
            m, sd, se_m, se_sd = _se(ref)
            zm = (ex[0] - m) / se_m if se_m > 0 else 0.0
            zs = (ex[1] - sd) / se_sd if se_sd > 0 else 0.0
            mc_m, mc_sd = (float(mc.mean()), float(mc.std())) if mc is not None else (float("nan"), float("nan"))
            print(f"{g:9.2f} {label:>10} | {m:12.4f} {sd:7.4f} | {ex[0]:10.4f} {ex[1]:7.4f} | {mc_m:8.4f} {mc_sd:7.4f} "
                  f"| {zm:+6.2f} {zs:+6.2f}")
            rows.append({"g_target_uS": g, "time": label, "t_inference_s": t, "aihwkit_mean": m, "aihwkit_std": sd,
                         "aihwkit_se_mean": se_m, "aihwkit_se_std": se_sd, "ours_mean": ex[0], "ours_std": ex[1],
                         "ours_mc_mean": mc_m, "ours_mc_std": mc_sd})
    if args.out:
        doc = {"aihwkit_version": aihwkit.__version__, "torch_version": torch.__version__,
               "model": "aihwkit.inference.noise.pcm.PCMLikeNoiseModel(g_max=25.0), float32 cells",
               "command": "python scripts/compare_aihwkit_drift.py " + " ".join(argv if argv is not None else sys.argv[1:]),
               "samples": args.samples, "seed": args.seed,
               "note": "t_inference_s = aihwkit's t_inference (s after programming; drift reference t_0 = 20 s); "
                       "'programmed' = g_prog before drift and read noise",
               "rows": rows}
        with open(args.out, "w") as fh:
            json.dump(doc, fh, indent=1)
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
