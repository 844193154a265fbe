"""``spikenoise compare`` outputs: the table, Fig. 2A (accuracy), Fig. 3 (weights, scales, SNR), Fig. 2B (costs)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import torch

from ..scaffold import write_csv

__all__ = ["write_tables", "write_weight_analysis", "write_model_costs", "model_costs"]


def write_tables(summary: list[dict[str, Any]], store, out: Path, cfg: dict[str, Any]) -> str:
    """``table.txt``, ``results.csv``, ``summary.csv`` and ``accuracy.png``; returns the table."""
    from spikenoise import analysis

    table = analysis.format_table(summary)
    (out / "table.txt").write_text(table + "\n")
    store.write_csv("results.csv")
    write_csv(out / "summary.csv", [
        {"model": e["model"], "training": e["training"], "train_level": e["train_level"], "errors": e["errors"],
         "level": e["level"], "mean": f"{e['mean']:.6f}", "ci95": f"{e['ci']:.6f}", "n_trainings": e["n"],
         "per_training": " ".join(f"{a:.6f}" for a in e["accs"])} for e in summary])
    src = cfg["data"] if cfg["data"] != "embedded" else f"embedded ({cfg['embedded_preset']})"
    analysis.plot_accuracy(summary, out / "accuracy.png",
                           title=f"{src}: M={cfg['trainings']} trainings x N={cfg['repeats']} repetitions, 95% CI")
    return table


def write_weight_analysis(trainer, cfg: dict[str, Any], levels: list[int], out: Path) -> int:
    """Fig. 3B-D from the checkpoints: ``scales.png``, ``weight_levels.png``, ``level_snr.png``,
    ``analysis.json``; returns the number of missing checkpoints."""
    from spikenoise import analysis
    from spikenoise.train import load_checkpoint

    records, missing = [], 0
    for name in cfg["models"]:
        for seed in cfg["seeds"]:
            for tl in [0] + levels:
                p = trainer.checkpoint(name, tl, seed)
                if not p.exists():
                    missing += 1
                    continue
                m = trainer.new_model(name, seed)
                load_checkpoint(p, m, map_location=trainer.device)
                records.append({"model": name, "train_level": tl, "seed": seed, "stats": analysis.weight_stats(m)})
    if records:
        analysis.plot_scales(records, out / "scales.png")
        analysis.plot_weight_levels(records, out / "weight_levels.png")
    analysis.plot_level_snr(out / "level_snr.png", [1, 2, 3])
    (out / "analysis.json").write_text(json.dumps(
        {"networks": records, "levels": analysis.level_table([1, 2, 3])}, indent=1, default=str))
    return missing


def write_model_costs(trainer, cfg: dict[str, Any], x: torch.Tensor, out: Path) -> list[str]:
    """Fig. 2B: ``models.csv``; returns the printed lines."""
    rows = model_costs(cfg["models"], lambda name: trainer.checkpoint(name, 0, cfg["seeds"][0]), trainer.new_model,
                       x, trainer.device)
    if not rows:
        return []
    write_csv(out / "models.csv", rows)
    lines = ["", "model      parameters  NVM weights   ops/inference  weight reads/inference  (agnostic, error-free)"]
    for r in rows:
        lines.append(f"{r['model']:10s} {r['parameters']:>10,d}  {r['nvm_weights']:>11,d}  {r['ops']:>14,.0f}  "
                     f"{r['weight_reads']:>22,.0f}")
    return lines


def model_costs(models, ckpt_of: Callable[[str], Path], new_model, x, dev) -> list[dict[str, Any]]:
    """Parameters and operations per inference of each model (error-agnostic network of the first
    seed, error-free, on a few test clips: spike counts depend on the trained weights)."""
    from spikenoise.counters import count_operations, count_parameters
    from spikenoise.train import load_checkpoint

    rows = []
    for name in models:
        m = new_model(name, 0)
        p = ckpt_of(name)
        if p.exists():
            load_checkpoint(p, m, map_location=dev)
        m.eval()
        n = count_parameters(m)
        with torch.no_grad():
            ops = count_operations(m, x.to(dev))["total"]
        rows.append({"model": name, "parameters": int(n["total"]), "nvm_weights": int(n["nvm_weights"]),
                     "ops": float(ops["ops"]), "macs": float(ops["macs"]), "synops": float(ops["synops"]),
                     "weight_reads": float(ops["weight_reads"])})
    return rows
