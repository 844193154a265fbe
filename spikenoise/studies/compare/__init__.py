"""``spikenoise compare``: seed paper 000 end to end -- train, sweep, table, figures.

:mod:`.options` (presets, flags), :mod:`.protocol` (data, training, sweep, rows), :mod:`.figures`
(tables and plots).

Trains (or loads from the checkpoints in ``--out``) the KWS models, error-agnostic and then
error-aware (fine-tuned from the agnostic network with static errors), evaluates them under static
and dynamic NVM errors at noise levels 0-3 (M trainings x N noisy test repetitions), and writes

``results.jsonl`` / ``results.csv``
    one row per (model, training, training level, seed, error type, noise level), written as soon
    as it is computed; ``config.json`` holds the configuration and the environment.
``summary.csv``, ``table.txt``
    mean and 95% CI over the trainings (the printed table).
``claims.txt``, ``claims.csv``
    seed 000's claims as paired differences with 95% CIs and verdicts (:mod:`spikenoise.claims`, printed).
``accuracy.png``
    Fig. 2A: accuracy vs noise level, static / dynamic x agnostic / aware.
``scales.png``, ``weight_levels.png``, ``level_snr.png``, ``analysis.json``
    Fig. 3B-D: learned scale per layer, weights per NVM level, per-level SNR and error magnitude.
``models.csv``
    Fig. 2B: parameters, operations and NVM weight reads per inference.
``checkpoints/``, ``train_log.jsonl``, ``run.json``
    training state (resumable), per-epoch log, the resolved options.

Re-running the same command resumes: finished trainings are loaded, finished conditions skipped.
``--fresh`` starts over (deletes what an earlier run wrote there). Trainings and sweep cells are
tasks of :mod:`spikenoise.studies.executor`: ``--backend ray`` runs them on a Ray cluster, the driver
writing every output.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from ..executor import make_executor
from ..scaffold import fmt_seconds, open_store, output_folder, set_threads
from .options import PRESETS, VISIBLE_PRESETS, WIDTHS, add_arguments, resolve

__all__ = ["PRESETS", "VISIBLE_PRESETS", "WIDTHS", "EVAL_BATCH", "add_arguments", "main", "resolve"]

#: clips per call in the noisy sweep
EVAL_BATCH = 512


def _header(cfg, out: Path) -> str:
    per_model = ", ".join(f"{m} {e}" for m, e in cfg.get("model_epochs", {}).items() if m in cfg["models"])
    epochs = f"{cfg['epochs']} epochs" + (f" ({per_model})" if per_model else "")
    return (f"spikenoise compare: preset {cfg['preset']}, models {','.join(cfg['models'])} ({cfg['width']} width), "
            f"levels {cfg['levels']}, M={cfg['trainings']} x N={cfg['repeats']}, {epochs} + "
            f"{cfg['finetune_epochs']} aware (aware: {cfg['aware']}), backend {cfg['backend']}, out {out}")


def main(args: argparse.Namespace) -> int:
    """Run the study (raises :class:`~spikenoise.studies.scaffold.StudyError` on bad input)."""
    args.progress = getattr(args, "progress", True)
    cfg = resolve(args)
    cfg["progress"] = args.progress
    args.backend = cfg["backend"]  # the preset's choice unless --backend was given
    t_start, cpu_start = time.perf_counter(), time.process_time()
    with make_executor(args) as executor:  # Ray starts here (or joins --address)
        t_ray = time.perf_counter() - t_start
        return _run(args, cfg, executor, t_start, cpu_start, t_ray)


def _run(args, cfg, executor, t_start: float, cpu_start: float, t_ray: float) -> int:
    from spikenoise import claims
    from spikenoise.evaluate import cache_batches

    from . import figures, protocol

    set_threads(cfg["threads"])
    out = output_folder(cfg["out"])
    if args.fresh:
        protocol.remove_outputs(out)
        for name in claims.OUTPUTS:
            (out / name).unlink(missing_ok=True)
    print(_header(cfg, out))
    t0 = time.perf_counter()
    data = protocol.load_data(cfg)
    t_data = time.perf_counter() - t0
    print(f"data: {data.summary()} ({fmt_seconds(t_data)})")
    (out / "run.json").write_text(json.dumps({**cfg, "data_info": data.info}, indent=2, default=str))
    store = open_store(out, protocol.store_config(cfg, data))
    trainer = protocol.Trainer(cfg, out, data, torch.device(cfg["device"]))
    # evaluation in large batches: the per-timestep overhead of the recurrent models and the SCNN
    # is per call (dynamic errors: 1.2-1.5x the clips/s of batch 128 at half width); the error
    # draws depend on the batching, their distribution does not
    test_batches = cache_batches(protocol.loaders(data, max(cfg["batch_size"], EVAL_BATCH), 0)[2])
    t0 = time.perf_counter()
    rows = protocol.run_sweep(executor, trainer, store, test_batches, cfg)
    t_tasks = time.perf_counter() - t0
    # serial: trainings and evaluation add up; ray: they overlap (trainer.seconds is summed over workers)
    t_sweep = t_tasks - trainer.seconds if executor.in_process else t_tasks

    summary = protocol.summarize_run(rows, cfg)
    print("\n" + figures.write_tables(summary, store, out, cfg))
    missing = figures.write_weight_analysis(trainer, cfg, protocol.aware_levels(cfg), out)
    if missing:
        print(f"note: {missing} checkpoint(s) missing in {trainer.ckdir}; Fig. 3 plots use the others")
    for line in figures.write_model_costs(trainer, cfg, test_batches[0][0][:32], out):
        print(line)
    claims_text = claims.write_claims(rows, out, models=cfg["models"], seeds=cfg["seeds"], levels=cfg["levels"],
                                      aware_levels=protocol.aware_levels(cfg))
    print("\n" + claims_text)
    timing = (f"training {fmt_seconds(trainer.seconds)}, noisy evaluation {fmt_seconds(t_sweep)}" if executor.in_process
              else f"starting Ray {fmt_seconds(t_ray)}, Ray tasks {fmt_seconds(t_sweep)} of which training "
                   f"{fmt_seconds(trainer.seconds)} summed over workers")
    print(f"\nwall time {fmt_seconds(time.perf_counter() - t_start)} (data {fmt_seconds(t_data)}, {timing}), CPU time "
          f"{fmt_seconds(time.process_time() - cpu_start)} on {torch.get_num_threads()} thread(s); results in {out}/")
    return 0
