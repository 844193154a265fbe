"""Training: error-agnostic training and error-aware fine-tuning (seed paper 000, section II.D).

* :func:`fit` trains any model whose synapses are :class:`~spikenoise.synapse.NoisySynapse` layers
  with Adam in two parameter groups -- the hidden weights of every noisy synapse at ``weight_lr``
  (paper: 0.01), everything else (biases, scales, time constants, ...) at ``lr`` (paper: 0.001) --
  a cosine-annealing schedule over the epochs and the cross-entropy loss. It trains with whatever
  error configuration the model has: ``errors="none"`` is the *error-agnostic* training.
* :func:`finetune` is the *error-aware* training: it configures the model with ``errors="static"``
  (by default) at the given error model and calls :func:`fit`. Errors are then in the forward pass
  and, through the straight-through estimator, in the backward pass; the update goes to the
  error-free hidden weights. Static errors are drawn per batch row at every forward (each forward
  is one inference), so the network learns that every synapse may be faulty, not which one is.

Checkpoints and resume
    With ``checkpoint=path`` the full training state (model, optimizer, scheduler, finished epochs,
    RNG states, history and the hyper-parameters) is written atomically (temporary file +
    ``os.replace``) after every epoch. Calling :func:`fit` again with the same path continues after
    the last finished epoch -- or returns at once if all epochs are done -- and ends with exactly
    the same weights as an uninterrupted run: every epoch's random stream (data order,
    augmentation, error draws) is derived from ``(seed, epoch)`` alone.

    Checkpoints hold only tensors and plain data (RNG states as tensors) and are read with
    :func:`spikenoise.safeload.safe_torch_load`: a file that would run code when loaded is refused.
"""
from __future__ import annotations

import math
import os
import random
import time
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .noise.base import ErrorModel
from .safeload import FileLoadError, UnsafeFileError, safe_torch_load
from .synapse import configure, synapses

__all__ = ["fit", "finetune", "param_groups", "make_optimizer", "load_checkpoint", "checkpoint_done",
           "derive_seed", "seed_everything"]

# 2: RNG states as tensors (version 1 held Python tuples and a NumPy array; still readable).
CHECKPOINT_VERSION = 2


# ----------------------------------------------------------------------------------------------
# seeds

def derive_seed(*parts: int | str) -> int:
    """A 63-bit seed derived deterministically from integers and strings (stable across runs)."""
    ints: list[int] = []
    for p in parts:
        if isinstance(p, str):
            ints.extend(p.encode())
            ints.append(0x5EED)  # separator, so ("ab", "c") != ("a", "bc")
        else:
            ints.append(int(p) & 0xFFFFFFFF)
            ints.append((int(p) >> 32) & 0xFFFFFFFF)
    state = np.random.SeedSequence(ints).generate_state(2, dtype=np.uint32)
    return int((int(state[0]) << 31) ^ int(state[1])) & ((1 << 63) - 1)


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and PyTorch's (CPU and CUDA) global generators."""
    random.seed(seed)
    np.random.seed(seed % 2 ** 32)
    torch.manual_seed(seed)


def _rng_state() -> dict[str, Any]:
    """The global RNG states as tensors and numbers (loadable with ``weights_only=True``)."""
    py_version, py_key, py_gauss = random.getstate()
    np_name, np_key, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    state: dict[str, Any] = {
        "python": {"version": int(py_version), "key": torch.tensor(py_key, dtype=torch.int64),
                   "gauss": py_gauss},
        "numpy": {"name": str(np_name), "key": torch.from_numpy(np_key.astype(np.int64)),
                  "pos": int(np_pos), "has_gauss": int(np_has_gauss), "cached_gaussian": float(np_gauss)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    """Restore :func:`_rng_state` output (or the tuples of version-1 checkpoints)."""
    py, npy = state["python"], state["numpy"]
    if isinstance(py, dict):
        py = (py["version"], tuple(int(v) for v in py["key"].tolist()), py["gauss"])
    random.setstate(py)
    if isinstance(npy, dict):
        npy = (npy["name"], np.asarray(npy["key"].tolist(), dtype=np.uint32), npy["pos"], npy["has_gauss"],
               npy["cached_gaussian"])
    np.random.set_state(npy)
    # a checkpoint loaded with map_location="cuda" has its RNG tensors there; the setters take CPU bytes
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


# ----------------------------------------------------------------------------------------------
# optimizer

def param_groups(model: nn.Module, lr: float = 1e-3, weight_lr: float = 1e-2) -> list[dict[str, Any]]:
    """Two Adam groups: hidden weights of every noisy synapse at ``weight_lr``, the rest at ``lr``.

    Parameters that do not require gradients are left out. Raises if the model has no noisy
    synapse (it would silently train everything at ``lr``).
    """
    weights = [s.weight for s in synapses(model) if s.weight.requires_grad]  # type: ignore[attr-defined]
    if not weights:
        raise ValueError(f"{type(model).__name__} has no trainable noisy-synapse weights; "
                         "build it from spikenoise NoisyLinear/NoisyConv2d layers or spikenoise.convert it")
    ids = {id(p) for p in weights}
    others = [p for p in model.parameters() if p.requires_grad and id(p) not in ids]
    groups = [{"params": weights, "lr": weight_lr, "name": "synapse_weights"}]
    if others:
        groups.append({"params": others, "lr": lr, "name": "other"})
    return groups


def make_optimizer(model: nn.Module, lr: float = 1e-3, weight_lr: float = 1e-2) -> torch.optim.Adam:
    """Adam over :func:`param_groups`."""
    return torch.optim.Adam(param_groups(model, lr, weight_lr))


# ----------------------------------------------------------------------------------------------
# checkpoints

def _atomic_save(obj: Any, path: Path) -> None:
    """Write ``obj`` to ``path`` via a temporary file: a crash leaves the old file or the new one,
    and never a temporary file (it is removed whatever goes wrong)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            torch.save(obj, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


_CHECKPOINT_FIELDS = ("model", "optimizer", "scheduler", "epoch", "epochs", "hparams", "history", "rng")


def _way_out(path: Path) -> str:
    return (f"delete {path} to redo that training only (other checkpoints and results are kept), "
            "or restore the file")


def load_checkpoint(path: str | os.PathLike, model: nn.Module | None = None,
                    map_location: str | torch.device | None = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by :func:`fit`; with ``model`` also load its weights into it.

    Returns the checkpoint dict: ``model``, ``optimizer``, ``scheduler`` state dicts, ``epoch``
    (finished epochs), ``epochs`` (planned), ``history``, ``hparams``, ``rng``.

    The file is read without running code (:func:`~spikenoise.safeload.safe_torch_load`).

    Raises:
        FileNotFoundError: no file at ``path``.
        spikenoise.safeload.UnsafeFileError: the file holds objects whose loading could run code.
        spikenoise.safeload.FileLoadError: damaged, or not a spikenoise checkpoint.
    """
    path = Path(path)
    try:
        ckpt = safe_torch_load(path, map_location=map_location, what="checkpoint")
    except UnsafeFileError:
        raise
    except FileLoadError as e:
        raise FileLoadError(f"{e}; {_way_out(path)}", path) from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != "spikenoise.train":
        raise FileLoadError(f"{path} is not a spikenoise training checkpoint; {_way_out(path)}", path)
    if ckpt.get("version") not in (1, CHECKPOINT_VERSION):
        raise FileLoadError(f"{path} is a checkpoint of version {ckpt.get('version')!r}; this spikenoise reads "
                            f"versions 1 to {CHECKPOINT_VERSION}", path)
    missing = [k for k in _CHECKPOINT_FIELDS if k not in ckpt]
    if missing:
        raise FileLoadError(f"checkpoint {path} lacks {', '.join(missing)} (damaged); {_way_out(path)}", path)
    if model is not None:
        try:
            model.load_state_dict(ckpt["model"])
        except RuntimeError as e:  # other layer names or shapes: another model's checkpoint
            first = str(e).splitlines()[0]
            raise FileLoadError(f"checkpoint {path} does not fit {type(model).__name__} ({first}); it was written "
                                f"for another model or size; {_way_out(path)}", path) from None
    return ckpt


def checkpoint_done(path: str | os.PathLike) -> bool:
    """True if ``path`` holds a checkpoint whose planned epochs are all finished.

    A missing or damaged file is simply not done; a refused (unsafe) file raises
    :class:`~spikenoise.safeload.UnsafeFileError`.
    """
    try:
        ckpt = load_checkpoint(path)
    except UnsafeFileError:
        raise
    except (FileNotFoundError, ValueError):
        return False
    return ckpt["epoch"] >= ckpt["epochs"]


# ----------------------------------------------------------------------------------------------
# loops

def _device_of(model: nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def _set_epoch(loader: Iterable, epoch: int, seed: int) -> None:
    """Make the data stream of ``epoch`` a function of ``(seed, epoch)``.

    Samplers/datasets with ``set_epoch`` (spikenoise's ``EpochSampler``, DistributedSampler) are
    told the epoch; torch generators owned by the loader or its sampler (``DataLoader(...,
    shuffle=True, generator=g)``) are re-seeded. Loaders without either draw their shuffling from
    the global RNG, which :func:`fit` seeds per epoch.
    """
    sampler = getattr(loader, "sampler", None)
    for obj in (sampler, getattr(loader, "batch_sampler", None), getattr(loader, "dataset", None)):
        fn = getattr(obj, "set_epoch", None)
        if callable(fn):
            fn(epoch)
    seen: set[int] = set()
    for gen in (getattr(loader, "generator", None), getattr(sampler, "generator", None)):
        if isinstance(gen, torch.Generator) and id(gen) not in seen:
            seen.add(id(gen))
            gen.manual_seed(derive_seed(seed, epoch, "loader"))


def _n_batches(loader: Iterable) -> int | None:
    try:
        return len(loader)  # type: ignore[arg-type]
    except TypeError:
        return None


def run_epoch(model: nn.Module, loader: Iterable, optimizer: torch.optim.Optimizer | None = None,
              device: torch.device | None = None, grad_clip: float | None = None,
              progress: bool = False, desc: str = "") -> tuple[float, float]:
    """One pass over ``loader``; trains if ``optimizer`` is given. Returns (mean loss, accuracy)."""
    from tqdm import tqdm  # not tqdm.auto: its asyncio variant calls iter() on the loader twice

    device = device or _device_of(model)
    train = optimizer is not None
    model.train(train)
    total_loss, correct, seen = 0.0, 0, 0
    with torch.set_grad_enabled(train):
        bar = tqdm(loader, total=_n_batches(loader), desc=desc, leave=False, disable=not progress,
                   dynamic_ncols=True)
        for x, y in bar:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            logits = model(x)
            loss = F.cross_entropy(logits, y)
            if train:
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"training loss became {loss.item()} ({desc or 'fit'})")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if grad_clip is not None:
                    nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
                optimizer.step()
            n = y.shape[0]
            total_loss += float(loss.detach()) * n
            correct += int((logits.detach().argmax(dim=-1) == y).sum())
            seen += n
            if progress:
                bar.set_postfix(loss=f"{total_loss / seen:.3f}", acc=f"{correct / seen:.3f}", refresh=False)
    if seen == 0:
        raise ValueError("the loader yielded no batches")
    return total_loss / seen, correct / seen


def fit(model: nn.Module, train_loader: Iterable, val_loader: Iterable | None = None, epochs: int = 100,
        lr: float = 1e-3, weight_lr: float = 1e-2, checkpoint: str | os.PathLike | None = None,
        seed: int = 0, progress: bool = True, log: Callable[[dict[str, Any]], None] | None = None, *,
        device: str | torch.device | None = None, grad_clip: float | None = None,
        desc: str = "fit") -> list[dict[str, Any]]:
    """Train ``model`` with Adam (two parameter groups) + cosine annealing + cross-entropy.

    Args:
        model: a network built from noisy synapses; trained with its current error configuration
            (``errors="none"``: error-agnostic; see :func:`finetune` for error-aware training).
        train_loader: iterable of ``(x, y)`` batches; if its sampler/dataset has ``set_epoch`` it is
            told the epoch before each pass, and a torch generator of the loader or its sampler is
            re-seeded from ``(seed, epoch)`` (seeded, resumable data streams).
        val_loader: optional; loss and accuracy after each epoch (model in eval mode, same error
            configuration as in training) go to the history.
        epochs: number of epochs (also the cosine period, ``T_max``).
        lr: learning rate of everything but the synapse weights; weight_lr: of the hidden weights.
        checkpoint: file written atomically after each epoch; if it exists, training resumes from
            it (its hyper-parameters must match; a finished checkpoint is simply loaded).
        seed: seeds every epoch's random stream as ``derive_seed(seed, epoch)``.
        progress: tqdm bars (epochs and batches).
        log: called after each epoch (and after its checkpoint is on disk) with the epoch's record.
        device: move the model there (default: where its parameters are).
        grad_clip: optional max gradient norm.

    Returns:
        The history: one dict per epoch with ``epoch`` (1-based), ``train_loss``, ``train_acc``,
        ``val_loss``, ``val_acc`` (None without val_loader), ``lr``, ``weight_lr`` (at the start
        of the epoch), ``seconds``.
    """
    from tqdm import tqdm  # not tqdm.auto: its asyncio variant calls iter() on the loader twice

    if not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be a positive integer, got {epochs!r}")
    for name, v in (("lr", lr), ("weight_lr", weight_lr)):
        if not (isinstance(v, (int, float)) and v > 0 and math.isfinite(v)):
            raise ValueError(f"{name} must be a positive number, got {v!r}")
    if device is not None:
        model.to(device)
    dev = _device_of(model)
    optimizer = make_optimizer(model, lr, weight_lr)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
    hparams = {"epochs": epochs, "lr": float(lr), "weight_lr": float(weight_lr), "seed": int(seed),
               "grad_clip": grad_clip}
    history: list[dict[str, Any]] = []
    start = 0
    ckpt_path = Path(checkpoint) if checkpoint is not None else None
    if ckpt_path is not None and ckpt_path.exists():
        ckpt = load_checkpoint(ckpt_path, map_location=dev)
        if ckpt["hparams"] != hparams:
            raise ValueError(f"checkpoint {ckpt_path} was written with {ckpt['hparams']}, not {hparams}; "
                             "use another checkpoint path or delete it to start over")
        model.load_state_dict(ckpt["model"])
        history = list(ckpt["history"])
        start = int(ckpt["epoch"])
        if start >= epochs:
            model.eval()
            return history
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        _set_rng_state(ckpt["rng"])

    bar = tqdm(range(start, epochs), initial=start, total=epochs, desc=desc, disable=not progress,
               dynamic_ncols=True)
    for epoch in bar:
        t0 = time.perf_counter()
        seed_everything(derive_seed(seed, epoch, "epoch"))
        _set_epoch(train_loader, epoch, seed)
        lrs = [g["lr"] for g in optimizer.param_groups]
        train_loss, train_acc = run_epoch(model, train_loader, optimizer, dev, grad_clip, progress,
                                          desc=f"epoch {epoch + 1}/{epochs}")
        scheduler.step()
        val_loss = val_acc = None
        if val_loader is not None:
            seed_everything(derive_seed(seed, epoch, "val"))
            val_loss, val_acc = run_epoch(model, val_loader, None, dev, progress=progress, desc="val")
        record = {"epoch": epoch + 1, "train_loss": train_loss, "train_acc": train_acc,
                  "val_loss": val_loss, "val_acc": val_acc, "weight_lr": lrs[0],
                  "lr": lrs[1] if len(lrs) > 1 else lrs[0], "seconds": time.perf_counter() - t0}
        history.append(record)
        if ckpt_path is not None:
            _atomic_save({"format": "spikenoise.train", "version": CHECKPOINT_VERSION,
                          "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                          "scheduler": scheduler.state_dict(), "epoch": epoch + 1, "epochs": epochs,
                          "hparams": hparams, "history": history, "rng": _rng_state()}, ckpt_path)
        if progress:
            bar.set_postfix(loss=f"{train_loss:.3f}", acc=f"{train_acc:.3f}",
                            **({"val": f"{val_acc:.3f}"} if val_acc is not None else {}))
        if log is not None:
            log(dict(record))
    model.eval()
    return history


def finetune(model: nn.Module, train_loader: Iterable, val_loader: Iterable | None = None, *,
             error_model: ErrorModel, errors: str = "static", init: str | os.PathLike | None = None,
             **fit_kwargs: Any) -> list[dict[str, Any]]:
    """Error-aware training: train with errors in the forward and backward pass.

    Args:
        model: the network; with ``init`` its weights are first loaded from that (error-agnostic)
            checkpoint -- the paper starts error-aware training from the agnostic model.
        error_model: e.g. ``MultiLevelNVM.noise_level(2)``; errors: ``"static"`` (paper: one draw
            per batch row per forward, i.e. per inference) or ``"dynamic"``.
        init: optional checkpoint of :func:`fit` to start from (ignored when resuming from
            ``checkpoint``, which already holds the fine-tuned weights).
        **fit_kwargs: as :func:`fit` (epochs, lr, weight_lr, checkpoint, seed, progress, log, ...).

    The model keeps the error configuration after training (state_dict records it).
    """
    if errors not in ("static", "dynamic"):
        raise ValueError(f"error-aware training needs errors='static' or 'dynamic', got {errors!r}")
    if init is not None:
        load_checkpoint(init, model, map_location=_device_of(model))
    configure(model, errors=errors, error_model=error_model)
    fit_kwargs.setdefault("desc", f"finetune ({errors})")
    return fit(model, train_loader, val_loader, **fit_kwargs)
