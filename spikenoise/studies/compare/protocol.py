"""``spikenoise compare`` protocol: data, training (resumable checkpoints), the noisy sweep, result rows."""
from __future__ import annotations

import contextlib
import json
import shutil
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch

from ..scaffold import ENVIRONMENT, StudyError

__all__ = ["load_data", "loaders", "remove_outputs", "store_config", "aware_levels", "Trainer", "new_model",
           "train_network", "evaluate_cell", "sweep_tasks", "run_sweep", "summarize_run", "OUTPUTS"]

#: files a run writes in its output folder (``--fresh`` removes them, and ``checkpoints/``)
OUTPUTS = ("results.jsonl", "results.csv", "config.json", "summary.csv", "table.txt", "accuracy.png",
           "scales.png", "weight_levels.png", "level_snr.png", "analysis.json", "models.csv", "train_log.jsonl",
           "run.json")


def load_data(cfg: dict[str, Any]):
    """The data set of ``cfg`` (``toy``: :func:`spikenoise.data.synthetic.toy_kws`)."""
    if cfg["data"] == "toy":
        from spikenoise.data.synthetic import toy_kws

        return toy_kws(cfg["data_seed"], [s or 32 for s in cfg["sizes"]])
    from spikenoise.data import load_kws

    n_train, n_val, n_test = cfg["sizes"]
    kw: dict[str, Any] = dict(seed=cfg["data_seed"], n_train=n_train, n_val=n_val, n_test=n_test,
                              progress=cfg["progress"])
    if cfg["data"] == "embedded":
        kw["preset"] = cfg["embedded_preset"]
    try:
        return load_kws(cfg["data"], root=cfg["root"], **kw)
    except (FileNotFoundError, ValueError, ImportError) as e:  # DataLayoutError is a FileNotFoundError
        raise StudyError(f"cannot load --data {cfg['data']}: {e}", ENVIRONMENT) from None


def loaders(data, batch_size: int, seed: int):
    """Seeded train / val / test loaders."""
    if isinstance(data, SimpleNamespace):  # toy data
        from torch.utils.data import DataLoader

        g = torch.Generator().manual_seed(seed)
        return (DataLoader(data.train, batch_size=batch_size, shuffle=True, generator=g),
                DataLoader(data.val, batch_size=batch_size), DataLoader(data.test, batch_size=batch_size))
    from spikenoise.data import make_loaders

    return make_loaders(data, batch_size=batch_size, seed=seed)


def remove_outputs(out: Path) -> None:
    """Delete what an earlier run wrote in ``out`` (``--fresh``)."""
    shutil.rmtree(out / "checkpoints", ignore_errors=True)
    for name in OUTPUTS:
        (out / name).unlink(missing_ok=True)
    for old in out.glob("results.*.jsonl"):
        old.unlink()


def store_config(cfg: dict[str, Any], data) -> dict[str, Any]:
    """What gives a stored row its meaning (a resumed run must match it)."""
    keep = ("preset", "data", "root", "embedded_preset", "sizes", "data_seed", "epochs", "model_epochs",
            "finetune_epochs", "repeats", "batch_size", "lr", "weight_lr", "finetune_lr_scale", "width", "model_kwargs")
    return {**{k: cfg[k] for k in keep}, "classes": list(data.classes), "aware_training_errors": "static"}


def aware_levels(cfg: dict[str, Any]) -> list[int]:
    """Training noise levels of the error-aware networks."""
    if cfg["aware"] == "none":
        return []
    return [lv for lv in cfg["levels"] if lv > 0] if cfg["aware"] == "each" else [int(cfg["aware"])]


class Trainer:
    """Paths, new networks and the time spent training of one run (checkpoints in ``out/checkpoints``)."""

    def __init__(self, cfg: dict[str, Any], out: Path, data, device: torch.device):
        self.cfg, self.data, self.device = cfg, data, device
        self.n_classes = len(data.classes)
        self.ckdir = out / "checkpoints"
        self.log_path = out / "train_log.jsonl"
        self.seconds = 0.0  # spent training (or loading), summed over tasks

    def checkpoint(self, name: str, train_level: int, seed: int) -> Path:
        tag = "agnostic" if train_level == 0 else f"aware{train_level}"
        return self.ckdir / f"{name}_{tag}_s{seed}.pt"

    def new_model(self, name: str, seed: int):
        return new_model(self.cfg, self.n_classes, name, seed, self.device)

    def load(self, name: str, train_level: int, seed: int):
        """The finished network of a checkpoint on disk (written with this run's options)."""
        from spikenoise.train import load_checkpoint

        m = self.new_model(name, seed)
        path = self.checkpoint(name, train_level, seed)
        ckpt = load_checkpoint(path, m, map_location=self.device)
        hp = train_hparams(self.cfg, name, train_level, seed)
        if {k: ckpt["hparams"].get(k) for k in hp} != hp:
            raise StudyError(f"checkpoint {path} was written with {ckpt['hparams']}, not {hp} (it is from other "
                             "options; pass --fresh)")
        return m.eval()

    def log(self, name: str, seed: int, tag: str, records) -> None:
        """Append per-epoch records to ``train_log.jsonl`` (the driver, for trainings run elsewhere)."""
        with open(self.log_path, "a") as fh:
            for rec in records:
                fh.write(json.dumps({"model": name, "training": tag, "seed": seed, **rec}) + "\n")


def new_model(cfg: dict[str, Any], n_classes: int, name: str, seed: int, device):
    """An untrained network, initialized from ``(seed, name)``."""
    from spikenoise.models import build_model
    from spikenoise.train import derive_seed

    torch.manual_seed(derive_seed(seed, name, "init"))
    return build_model(name, n_classes=n_classes, **cfg["model_kwargs"].get(name, {})).to(device)


def train_hparams(cfg: dict[str, Any], name: str, train_level: int, seed: int) -> dict[str, Any]:
    """Epochs, learning rates and seed of a training (as :func:`spikenoise.train.fit` records them)."""
    from spikenoise.train import derive_seed

    if train_level == 0:
        return {"epochs": cfg.get("model_epochs", {}).get(name, cfg["epochs"]), "lr": float(cfg["lr"]), "weight_lr": float(cfg["weight_lr"]),
                "seed": derive_seed(seed, name, "agnostic")}
    ft = cfg["finetune_lr_scale"]
    return {"epochs": cfg["finetune_epochs"], "lr": float(cfg["lr"] * ft), "weight_lr": float(cfg["weight_lr"] * ft),
            "seed": derive_seed(seed, name, "aware", train_level)}


def _epoch_logger(path: Path, name: str, seed: int, tag: str):
    def log(rec):
        with open(path, "a") as fh:
            fh.write(json.dumps({"model": name, "training": tag, "seed": seed, **rec}) + "\n")
    return log


def train_network(cfg: dict[str, Any], data, name: str, train_level: int, seed: int, device: str, progress: bool,
                  slot, log_path: Path | None, init=None) -> dict[str, Any]:
    """One training task: error-agnostic (``train_level`` 0) or error-aware fine-tuning from ``init``
    (the agnostic task's result). Returns ``model``, ``checkpoint`` (bytes for the driver to write, or
    None: written in place), ``history``, ``seconds``. ``log_path``: per-epoch log in place (else the
    driver logs the history)."""
    from spikenoise.noise.nvm import MultiLevelNVM
    from spikenoise.train import finetune, fit

    t, dev = time.perf_counter(), torch.device(device)
    train_loader, val_loader, _ = loaders(data, cfg["batch_size"], seed)
    model = new_model(cfg, len(data.classes), name, seed, dev)
    tag = "agnostic" if train_level == 0 else f"aware{train_level}"
    hp = dict(train_hparams(cfg, name, train_level, seed), progress=progress, desc=f"train {name} {tag} s{seed}",
              log=_epoch_logger(log_path, name, seed, tag) if log_path is not None else None)
    with slot.open() as ckpt, _options_changed(slot.path):
        if train_level == 0:
            history = fit(model, train_loader, val_loader, checkpoint=ckpt, **hp)
        else:
            model.load_state_dict(init["model"].state_dict())
            history = finetune(model, train_loader, val_loader, error_model=MultiLevelNVM.noise_level(train_level),
                               errors="static", checkpoint=ckpt, **hp)
    return {"model": model.eval(), "checkpoint": slot.payload(), "history": history,
            "seconds": time.perf_counter() - t}


@contextlib.contextmanager
def _options_changed(path: Path):
    try:
        yield
    except ValueError as e:
        if "was written with" in str(e):
            raise StudyError(f"{e} (the checkpoint {path} is from other options; pass --fresh)") from None
        raise


def evaluate_cell(test_batches, cond, tests, repeats: int, device: str, net) -> list[tuple[dict, dict]]:
    """One sweep cell: the ``(error type, level)`` rows of condition ``cond`` on ``net["model"]``."""
    from spikenoise.evaluate import condition_rows

    model = net["model"].to(torch.device(device))
    return list(condition_rows(model, test_batches, cond, tests, repeats, device))


def _aware_option(cfg: dict[str, Any]):
    return None if cfg["aware"] == "none" else ("match" if cfg["aware"] == "each" else int(cfg["aware"]))


def sweep_tasks(executor, trainer: Trainer, store, test_batches, cfg: dict[str, Any]):
    """The tasks of the rows ``store`` lacks: trainings whose checkpoints are not finished (aware
    after agnostic), then one sweep cell per (network, noise level) after its training; and
    ``on_result``, the driver's side (checkpoints, log, rows)."""
    from spikenoise.evaluate import network_of, sweep_plan
    from spikenoise.train import checkpoint_done

    from ..executor import CheckpointSlot, Task

    plan = sweep_plan(cfg["models"], cfg["seeds"], cfg["repeats"], cfg["levels"], aware=_aware_option(cfg))
    device = executor.device(cfg["device"])
    progress = bool(cfg["progress"]) and executor.in_process
    data = executor.share(trainer.data)
    batches = executor.share(test_batches)
    tasks: list[Task] = []
    train_name: dict[tuple, str] = {}  # (model, level, seed) -> task name
    loaded: dict[tuple, dict] = {}  # finished networks on disk
    slots: dict[str, Any] = {}

    def network(name: str, level: int, seed: int) -> tuple[dict, dict]:
        """(kwargs, deps) that give a task the trained network ``net``."""
        k = (name, level, seed)
        if k not in train_name and k not in loaded:
            if checkpoint_done(trainer.checkpoint(*k)):
                loaded[k] = {"model": trainer.load(*k)}
            else:
                init_kw, init_dep = network(name, 0, seed) if level else ({}, {})
                tname = f"train {name} {'agnostic' if level == 0 else f'aware{level}'} s{seed}"
                slot = CheckpointSlot.for_executor(trainer.checkpoint(*k), executor)
                slots[tname] = slot
                # the aware network starts from the agnostic one: on disk, or the result of its task
                tasks.append(Task(tname, train_network, (cfg, data, name, level, seed, device, progress, slot,
                                                         trainer.log_path if executor.in_process else None),
                                  {"init": v for v in init_kw.values()}, {"init": d for d in init_dep.values()}))
                train_name[k] = tname
        if k in loaded:
            return {"net": loaded[k]}, {}
        return {}, {"net": train_name[k]}

    for cond, tests in plan:
        net = network_of(cond)
        for level in dict.fromkeys(lv for _, lv in tests):
            todo = [(e, lv) for e, lv in tests if lv == level and not store.done({**cond.key(), "errors": e, "level": lv})]
            if not todo:
                continue
            kw, deps = network(net.model, net.train_level, net.seed)
            tag = f"{cond.training}{cond.train_level if cond.training == 'aware' else ''}"
            tasks.append(Task(f"sweep {cond.model} {tag} s{cond.seed} level {level}", evaluate_cell,
                              (batches, cond, todo, cfg["repeats"], device), kw, deps))

    def on_result(task, value):
        if task.fn is train_network:
            name, level, seed = task.args[2:5]
            slots[task.name].commit(value["checkpoint"])
            if not executor.in_process:
                trainer.log(name, seed, "agnostic" if level == 0 else f"aware{level}", value["history"])
            trainer.seconds += value["seconds"]
        else:
            for key, row in value:
                store.add(key, row)

    return tasks, on_result


def run_sweep(executor, trainer: Trainer, store, test_batches, cfg: dict[str, Any]) -> list[dict[str, Any]]:
    """Every (model, training, seed, errors, level) row, resumed from ``store``; the trainings and
    sweep cells run on ``executor`` (raises :class:`~spikenoise.studies.executor.TaskFailures`
    naming what failed, after everything else finished)."""
    tasks, on_result = sweep_tasks(executor, trainer, store, test_batches, cfg)
    executor.run(tasks, on_result, desc="compare")
    return store.rows()


def _wanted(k: dict[str, Any], cfg: dict[str, Any]) -> bool:
    if k["model"] not in cfg["models"] or k["level"] not in cfg["levels"] or k["seed"] not in cfg["seeds"]:
        return False
    if k["training"] == "agnostic":
        return True
    if cfg["aware"] == "each":
        return k["train_level"] == k["level"]
    return cfg["aware"] != "none" and k["train_level"] == int(cfg["aware"])


def summarize_run(rows: list[dict[str, Any]], cfg: dict[str, Any]) -> list[dict[str, Any]]:
    """Mean and 95 % CI over trainings of this run's rows (others in the folder are left out), in table order."""
    from spikenoise.evaluate import summarize

    summary = summarize([r for r in rows if _wanted(r["key"], cfg)])
    order = {m: i for i, m in enumerate(cfg["models"])}
    summary.sort(key=lambda e: (order[e["model"]], e["training"] != "agnostic", e["train_level"], e["errors"],
                                e["level"]))
    return summary
