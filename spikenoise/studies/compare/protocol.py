"""``spikenoise compare`` protocol: data, training (resumable checkpoints), the noisy sweep, result rows."""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch

from ..scaffold import ENVIRONMENT, StudyError

__all__ = ["load_data", "loaders", "remove_outputs", "store_config", "aware_levels", "Trainer", "run_sweep",
           "summarize_run", "OUTPUTS"]

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
    keep = ("preset", "data", "root", "embedded_preset", "sizes", "data_seed", "epochs", "finetune_epochs",
            "repeats", "batch_size", "lr", "weight_lr", "finetune_lr_scale", "width", "model_kwargs")
    return {**{k: cfg[k] for k in keep}, "classes": list(data.classes), "aware_training_errors": "static"}


def aware_levels(cfg: dict[str, Any]) -> list[int]:
    """Training noise levels of the error-aware networks."""
    if cfg["aware"] == "none":
        return []
    return [lv for lv in cfg["levels"] if lv > 0] if cfg["aware"] == "each" else [int(cfg["aware"])]


class Trainer:
    """Builds, trains or loads the networks of one run (checkpoints in ``out/checkpoints``)."""

    def __init__(self, cfg: dict[str, Any], out: Path, data, device: torch.device):
        self.cfg, self.data, self.device = cfg, data, device
        self.n_classes = len(data.classes)
        self.ckdir = out / "checkpoints"
        self.log_path = out / "train_log.jsonl"
        self.seconds = 0.0  # spent training (or loading)

    def checkpoint(self, name: str, train_level: int, seed: int) -> Path:
        tag = "agnostic" if train_level == 0 else f"aware{train_level}"
        return self.ckdir / f"{name}_{tag}_s{seed}.pt"

    def new_model(self, name: str, seed: int):
        from spikenoise.models import build_model
        from spikenoise.train import derive_seed

        torch.manual_seed(derive_seed(seed, name, "init"))
        return build_model(name, n_classes=self.n_classes, **self.cfg["model_kwargs"].get(name, {})).to(self.device)

    def _logger(self, name: str, seed: int, tag: str):
        def log(rec):
            with open(self.log_path, "a") as fh:
                fh.write(json.dumps({"model": name, "training": tag, "seed": seed, **rec}) + "\n")
        return log

    def train(self, name: str, train_level: int, seed: int):
        """Trained network (agnostic, or aware at ``train_level``); trains only what is not on disk."""
        from spikenoise.noise.nvm import MultiLevelNVM
        from spikenoise.train import derive_seed, finetune, fit

        cfg, t = self.cfg, time.perf_counter()
        train_loader, val_loader, _ = loaders(self.data, cfg["batch_size"], seed)
        model = self.new_model(name, seed)
        hp = dict(lr=cfg["lr"], weight_lr=cfg["weight_lr"], progress=cfg["progress"])
        ft = cfg["finetune_lr_scale"]
        hp_ft = dict(hp, lr=cfg["lr"] * ft, weight_lr=cfg["weight_lr"] * ft)
        aware_ckpt = self.checkpoint(name, train_level, seed) if train_level else None
        if aware_ckpt is None or not aware_ckpt.exists():
            fit(model, train_loader, val_loader, epochs=cfg["epochs"], checkpoint=self.checkpoint(name, 0, seed),
                seed=derive_seed(seed, name, "agnostic"), log=self._logger(name, seed, "agnostic"),
                desc=f"train {name} agnostic s{seed}", **hp)
        if train_level:
            finetune(model, train_loader, val_loader, error_model=MultiLevelNVM.noise_level(train_level),
                     errors="static", epochs=cfg["finetune_epochs"], checkpoint=aware_ckpt,
                     seed=derive_seed(seed, name, "aware", train_level),
                     log=self._logger(name, seed, f"aware{train_level}"),
                     desc=f"train {name} aware{train_level} s{seed}", **hp_ft)
        self.seconds += time.perf_counter() - t
        return model

    def model_for(self, cond):
        """The network a sweep :class:`~spikenoise.evaluate.Condition` is evaluated on."""
        return self.train(cond.model, cond.train_level if cond.training == "aware" else 0, cond.seed)


def run_sweep(trainer: Trainer, store, test_batches, cfg: dict[str, Any]) -> list[dict[str, Any]]:
    """Every (model, training, seed, errors, level) row, resumed from ``store``."""
    from spikenoise.evaluate import sweep

    aware = None if cfg["aware"] == "none" else ("match" if cfg["aware"] == "each" else int(cfg["aware"]))
    try:
        return sweep(trainer.model_for, test_batches, store, models=cfg["models"], seeds=cfg["seeds"],
                     repeats=cfg["repeats"], levels=cfg["levels"], aware=aware, device=trainer.device,
                     progress=cfg["progress"])
    except ValueError as e:
        if "was written with" in str(e):
            raise StudyError(f"{e} (the checkpoints in {trainer.ckdir} are from other options; pass --fresh)") from None
        raise


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
