"""Where the time of a ``spikenoise compare`` run went, per model: training vs noisy evaluation.

    python scripts/compare_timing.py runs/compare

Reads ``train_log.jsonl`` (seconds per training epoch, validation included) and ``results.jsonl``
(seconds per (network, error type, noise level) row: N repetitions over the test set) of a run
folder and prints, per model, the seconds spent in error-agnostic training, error-aware
fine-tuning, clean evaluation and noisy evaluation with static and with dynamic errors, summed over
trainings. Seconds are task seconds: with ``--backend ray`` they overlap in wall time.
"""
from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path


def _rows(path: Path):
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def timing(run: Path) -> dict[str, dict[str, float]]:
    """model -> {agnostic, aware, clean, static, dynamic: seconds}."""
    out: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for rec in _rows(run / "train_log.jsonl"):
        out[rec["model"]]["agnostic" if rec["training"] == "agnostic" else "aware"] += rec["seconds"]
    for rec in _rows(run / "results.jsonl"):
        if "key" not in rec or "seconds" not in rec:
            continue
        key = rec["key"]
        kind = "clean" if key["level"] == 0 else key["errors"]
        out[key["model"]][kind] += rec["seconds"]
    return out


def main() -> None:
    run = Path(sys.argv[1] if len(sys.argv) > 1 else "runs/compare")
    table = timing(run)
    cols = ("agnostic", "aware", "clean", "static", "dynamic")
    print(f"{'model':6s} " + " ".join(f"{c:>9s}" for c in cols) + f" {'total':>9s}   (seconds)")
    sums = defaultdict(float)
    for model, t in table.items():
        print(f"{model:6s} " + " ".join(f"{t[c]:9.1f}" for c in cols) + f" {sum(t.values()):9.1f}")
        for c in cols:
            sums[c] += t[c]
    print(f"{'all':6s} " + " ".join(f"{sums[c]:9.1f}" for c in cols) + f" {sum(sums.values()):9.1f}")


if __name__ == "__main__":
    main()
