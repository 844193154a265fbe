"""Evaluation under NVM errors and the paper's sweep protocol (seed paper 000, II.D and Fig. 2).

Protocol of :func:`sweep`
    For every model, training condition (error-agnostic, or error-aware at a training noise level),
    training seed (M trainings), error type (static, dynamic) and test noise level (0..3), the test
    set is evaluated N times with fresh error draws; the row stored for that condition holds the N
    accuracies and their mean. :func:`summarize` then gives, per (model, training, error type,
    noise level), the mean over the M per-training means and its 95% confidence interval
    (:func:`spikenoise.results.mean_ci`, Student t).

    Each noisy repetition is seeded from ``(training seed, condition, repetition)``
    (:func:`repetition_seed`), so any single number can be reproduced on its own. Noise level 0
    is error-free and deterministic: it is evaluated once and shared by both error types.

    Rows go to a :class:`~spikenoise.results.ResultStore` as soon as they are computed; a killed
    sweep re-run with the same store skips every stored condition, and the model of a condition
    group is only requested (trained or loaded) when one of its conditions is still missing.
"""
from __future__ import annotations

import json
import time
import zlib
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Sequence

import torch
import torch.nn as nn

from .noise.base import ErrorModel
from .noise.nvm import NOISE_LEVEL_P0, MultiLevelNVM
from .results import ResultStore, mean_ci
from .synapse import configure, programmed, synapses
from .train import derive_seed

__all__ = ["accuracy", "accuracy_nonfinite", "noisy_accuracy", "repetition_seed", "cache_batches", "Condition",
           "sweep", "summarize", "series_label", "is_matched", "ERROR_TYPES", "programming_accuracies"]

ERROR_TYPES = ("static", "dynamic")


def _device_of(model: nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


@torch.no_grad()
def accuracy(model: nn.Module, loader: Iterable, device: str | torch.device | None = None,
             progress: bool = False, desc: str = "test", nonfinite: str = "raise") -> float:
    """Top-1 accuracy of ``model`` (eval mode, no gradients) over ``loader``'s ``(x, y)`` batches.

    The model is evaluated with its current error configuration; every forward is one inference.

    Args:
        nonfinite: what a sample whose logits hold a NaN or an infinity counts as (``argmax``
            would otherwise pick the NaN class). ``"raise"`` (default): ``FloatingPointError``
            naming how many samples; ``"wrong"``: counted as misclassified (e.g. for bit-flip
            studies, where exponent flips make such outputs part of the measurement).
    """
    from tqdm import tqdm  # not tqdm.auto: its asyncio variant calls iter() on the loader twice

    if nonfinite not in ("raise", "wrong"):
        raise ValueError(f"accuracy nonfinite must be 'raise' or 'wrong', got {nonfinite!r}")
    dev = torch.device(device) if device is not None else _device_of(model)
    was_training = model.training
    model.eval()
    correct = seen = bad = 0
    try:
        n = len(loader)  # type: ignore[arg-type]
    except TypeError:
        n = None
    try:
        for x, y in tqdm(loader, total=n, desc=desc, leave=False, disable=not progress, dynamic_ncols=True):
            x, y = x.to(dev), y.to(dev)
            logits = model(x)
            if logits.ndim != 2 or logits.shape[0] != y.shape[0]:
                raise ValueError(f"accuracy needs logits [batch, classes] with batch = {y.shape[0]} labels, "
                                 f"got shape {tuple(logits.shape)}")
            finite = torch.isfinite(logits).all(dim=-1)
            bad += int((~finite).sum())
            correct += int(((logits.argmax(dim=-1) == y) & finite).sum())
            seen += int(y.shape[0])
    finally:
        model.train(was_training)
    if seen == 0:
        raise ValueError("the loader yielded no samples")
    if bad and nonfinite == "raise":
        raise FloatingPointError(f"{bad} of {seen} samples got non-finite (NaN or inf) logits ({desc}); pass "
                                 "nonfinite='wrong' to count them as misclassified")
    return correct / seen


def _error_state(model: nn.Module) -> list[tuple[str, ErrorModel]]:
    return [(s.errors, s.error_model) for s in synapses(model)]


def _restore_error_state(model: nn.Module, state: list[tuple[str, ErrorModel]]) -> None:
    for s, (errors, em) in zip(synapses(model), state):
        s.set_errors(errors=errors, error_model=em)


def noisy_accuracy(model: nn.Module, loader: Iterable, errors: str, error_model: ErrorModel | int,
                   seed: int, device: str | torch.device | None = None, progress: bool = False,
                   nonfinite: str = "wrong") -> float:
    """Accuracy with ``errors`` ("none", "static", "dynamic") drawn from ``error_model``.

    ``error_model`` may be a noise level 0..3 (:meth:`MultiLevelNVM.noise_level`). The global
    torch RNG is seeded with ``seed`` first; the model's error configuration is restored after.
    ``nonfinite`` as for :func:`accuracy`, but ``"wrong"`` by default: under injected errors
    (e.g. an exponent bit flip) a NaN or infinite output is part of what is measured, a wrong
    answer, never the NaN class.
    """
    if isinstance(error_model, int):
        error_model = MultiLevelNVM.noise_level(error_model)
    saved = _error_state(model)
    try:
        configure(model, errors=errors, error_model=error_model)
        torch.manual_seed(seed)
        return accuracy(model, loader, device, progress=progress, desc=f"{errors}", nonfinite=nonfinite)
    finally:
        _restore_error_state(model, saved)


def _crc(obj: Any) -> int:
    return zlib.crc32(json.dumps(obj, sort_keys=True, default=str).encode())


def repetition_seed(training_seed: int, condition: Mapping[str, Any], repetition: int) -> int:
    """Seed of one noisy test repetition: a pure function of (training seed, condition, repetition)."""
    return derive_seed(int(training_seed), _crc(dict(condition)), int(repetition), "test-repetition")


def cache_batches(loader: Iterable) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Materialize a (deterministic, unaugmented) loader once, so N repetitions skip the data pipeline."""
    return [(x, y) for x, y in loader]


@dataclass(frozen=True)
class Condition:
    """One trained network of the sweep: ``training`` is "agnostic" or "aware" (at ``train_level``)."""

    model: str
    training: str
    train_level: int
    seed: int

    def key(self) -> dict[str, Any]:
        return {"model": self.model, "training": self.training, "train_level": self.train_level,
                "seed": self.seed}


def _aware_plan(levels: Sequence[int], aware: str | int | None) -> list[tuple[int, list[int]]]:
    """[(train level, test levels)] of the error-aware networks.

    ``"match"``: one network per noise level, tested at its own level (paper Fig. 2: trained at
    the test noise level); at level 0 that is the agnostic network. An int ``k``: one network trained at
    ``k`` tested at every level. None: no aware training.
    """
    if aware is None or aware == "none":
        return []
    if aware == "match":
        # level 0: "trained at level 0" is the error-agnostic network (stored as its own rows)
        return [(lv, [lv]) for lv in levels]
    k = int(aware)
    if k not in NOISE_LEVEL_P0 or k == 0:
        raise ValueError(f"aware training level must be one of {sorted(set(NOISE_LEVEL_P0) - {0})}, got {aware!r}")
    return [(k, list(levels))]


def sweep(get_model: Callable[[Condition], nn.Module], test_data: Iterable, store: ResultStore, *,
          models: Sequence[str], seeds: Sequence[int], repeats: int, levels: Sequence[int] = (0, 1, 2, 3),
          error_types: Sequence[str] = ERROR_TYPES, aware: str | int | None = "match",
          device: str | torch.device | None = None, progress: bool = True,
          on_row: Callable[[dict[str, Any]], None] | None = None) -> list[dict[str, Any]]:
    """Run the paper's evaluation protocol; returns all rows of the store.

    Args:
        get_model: ``get_model(condition) -> model`` (trained; called lazily, at most once per
            condition and only if one of its rows is missing).
        test_data: test batches ``(x, y)`` (ideally :func:`cache_batches` of the test loader).
        store: where rows go (resumable).
        models: model names; seeds: one per training (M = ``len(seeds)``); repeats: N.
        levels: test noise levels (0 = error-free), see :meth:`MultiLevelNVM.noise_level`.
        error_types: "static" and/or "dynamic".
        aware: ``"match"`` (aware network per level, paper), an int level, or None (agnostic only).
        on_row: called with every newly stored row.

    Row key: ``model, training, train_level, seed, errors, level``; values: ``accs`` (N
    accuracies; one at level 0), ``acc`` (their mean), ``repeats``, ``rep_seeds``, ``seconds``.
    """
    from tqdm import tqdm  # not tqdm.auto: its asyncio variant calls iter() on the loader twice

    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats!r}")
    for lv in levels:
        if lv not in NOISE_LEVEL_P0:
            raise ValueError(f"noise level must be one of {sorted(NOISE_LEVEL_P0)}, got {lv!r}")
    for e in error_types:
        if e not in ERROR_TYPES:
            raise ValueError(f"error type must be one of {ERROR_TYPES}, got {e!r}")
    if not seeds:
        raise ValueError("need at least one training seed")
    plan: list[tuple[Condition, list[tuple[str, int]]]] = []
    tests = [(e, lv) for e in error_types for lv in levels]
    aware_plan = _aware_plan(levels, aware)
    for name in models:
        for seed in seeds:
            plan.append((Condition(name, "agnostic", 0, int(seed)), tests))
            for train_level, test_levels in aware_plan:
                plan.append((Condition(name, "aware", train_level, int(seed)),
                             [(e, lv) for e in error_types for lv in test_levels]))
    total = sum(len(t) for _, t in plan)
    bar = tqdm(total=total, desc="sweep", disable=not progress, dynamic_ncols=True)
    for cond, cond_tests in plan:
        todo = [(e, lv) for e, lv in cond_tests if not store.done({**cond.key(), "errors": e, "level": lv})]
        bar.update(len(cond_tests) - len(todo))
        if not todo:
            continue
        bar.set_description(f"sweep {cond.model} {cond.training}{cond.train_level or ''} s{cond.seed}")
        # an aware network "trained at level 0" is the agnostic one
        model = get_model(Condition(cond.model, "agnostic", 0, cond.seed)
                          if cond.training == "aware" and cond.train_level == 0 else cond)
        clean: float | None = None
        for e, lv in todo:
            key = {**cond.key(), "errors": e, "level": lv}
            t0 = time.perf_counter()
            if lv == 0:
                if clean is None:
                    clean = noisy_accuracy(model, test_data, "none", MultiLevelNVM.noise_level(0), 0, device)
                accs, rep_seeds = [clean], []
            else:
                em = MultiLevelNVM.noise_level(lv)
                rep_seeds = [repetition_seed(cond.seed, key, r) for r in range(repeats)]
                accs = [noisy_accuracy(model, test_data, e, em, s, device) for s in rep_seeds]
            row = {"accs": accs, "acc": sum(accs) / len(accs), "repeats": len(accs), "rep_seeds": rep_seeds,
                   "seconds": time.perf_counter() - t0}
            store.add(key, row)
            if on_row is not None:
                on_row({"key": key, **row})
            bar.update(1)
    bar.close()
    return store.rows()


def summarize(rows: Iterable[Mapping[str, Any]], seeds: Sequence[int] | None = None,
              confidence: float = 0.95) -> list[dict[str, Any]]:
    """Mean and CI over trainings, per (model, training, train_level, errors, level).

    ``rows`` as stored by :func:`sweep` (``{"key": {...}, "acc": ...}``); with ``seeds`` only those
    trainings count. Returns dicts ``model, training, train_level, errors, level, mean, ci, n,
    accs`` (``accs``: the per-training means in seed order; ``ci``: half-width of the
    ``confidence`` interval, 0 for a single training), sorted by key.
    """
    groups: dict[tuple, dict[int, float]] = {}
    for r in rows:
        k = r["key"]
        if seeds is not None and k["seed"] not in seeds:
            continue
        g = (k["model"], k["training"], int(k["train_level"]), k["errors"], int(k["level"]))
        groups.setdefault(g, {})[int(k["seed"])] = float(r["acc"])
    out = []
    for g in sorted(groups):
        per_seed = groups[g]
        accs = [per_seed[s] for s in sorted(per_seed)]
        m, ci = mean_ci(accs, confidence)
        out.append({"model": g[0], "training": g[1], "train_level": g[2], "errors": g[3], "level": g[4],
                    "mean": m, "ci": ci, "n": len(accs), "accs": accs})
    return out


def series_label(entry: Mapping[str, Any], matched: bool) -> str:
    """Legend/table label of a summary entry: "agnostic", "aware" (trained at the test level,
    ``matched``) or "aware@k" (one network trained at level k, tested at every level)."""
    if entry["training"] == "agnostic":
        return "agnostic"
    return "aware" if matched else f"aware@{entry['train_level']}"


def is_matched(summary: Iterable[Mapping[str, Any]]) -> bool:
    """True if every aware entry was tested at its own training level (paper's Fig. 2 protocol)."""
    aware = [e for e in summary if e["training"] == "aware"]
    return bool(aware) and all(e["level"] == e["train_level"] for e in aware)


def programming_accuracies(model: nn.Module, loader: Iterable, n: int = 40, seed: int = 0,
                           progress: bool = False, desc: str = "programmings") -> list[float]:
    """Test accuracy of ``n`` independently programmed chips (seed 003: 40 per condition).

    Chip ``k`` is programmed with seed ``derive_seed(seed, k, "chip")``
    (:func:`spikenoise.synapse.programmed`), so any single chip can be reproduced. A model without
    noisy layers gives ``n`` equal values.
    """
    from tqdm.auto import tqdm

    accs = []
    for k in tqdm(range(n), desc=desc, leave=False, disable=not progress, dynamic_ncols=True):
        with programmed(model, seed=derive_seed(seed, k, "chip")):
            accs.append(accuracy(model, loader))
    return accs


@torch.no_grad()
def accuracy_nonfinite(model: nn.Module, batches: Iterable, seed: int,
                       eval_batch: int | None = None) -> tuple[float, float]:
    """Accuracy and fraction of samples with a non-finite logit; torch RNG seeded with ``seed``.

    Non-finite logits (inf/NaN from exponent bit flips) are kept and scored by ``argmax`` as
    PyTorch does. ``eval_batch`` splits the batches (per-row static draws hold ``batch x weights``
    values; with per-batch draws it is the number of samples per inference).
    """
    model.eval()
    torch.manual_seed(seed)
    correct = seen = bad = 0
    for x, y in batches:
        step = eval_batch or x.shape[0]
        for i in range(0, x.shape[0], step):
            xb, yb = x[i:i + step], y[i:i + step]
            logits = model(xb)
            correct += int((logits.argmax(dim=-1) == yb).sum())
            bad += int((~torch.isfinite(logits)).any(dim=-1).sum())
            seen += int(yb.shape[0])
    return correct / seen, bad / seen
