"""Study of seed paper 003: programming variation in tiled analog in-memory computing.

``spikenoise analog --preset quick --out /tmp/evidence/analog``

Pipeline (seed 003 Fig. 2 and 3):

1. Train a floating-point model (level 0; hidden weights in [-1, 1] with a per-layer scale).
2. Calibrate every layer's full-scale input (DAC range) on training data (99.9th percentile).
3. For every training variation ``s`` (noise injection, one draw per minibatch, seed 003 sec. 5):
   fine-tune level 1 (8-bit weights and activations) from the float model, level 2 (+ two
   cells per weight, on/off ratio) from level 1, level 3 (+ 256 x 64 arrays, 8-bit ADC of range
   15 G_max, trainable per-array multipliers) from level 2, each with variation ``s`` injected.
4. Evaluate every level-``l`` model in the level-``l`` inference pipeline at every test
   variation, over ``--programmings`` independently programmed chips (default 40): box-plot
   statistics and the 75th percentile ("top 25 %") accuracy.
5. Deterministic effects (seed 003 Fig. 4): the error-free model of each training level in each
   inference pipeline, without variation.

Outputs in ``--out``: ``results.jsonl`` (resumable, one row per condition), ``results.csv``,
``deterministic.csv``, ``summary.md``, ``boxplots.png``, ``top25.png``, model checkpoints in
``models/``. Data: ``fsdd`` (Free Spoken Digit Dataset, 67 x 40 log-Mel, real speech; default),
``embedded`` (synthesized KWS words), ``digits`` (scikit-learn 8 x 8 digits; needs scikit-learn)
or ``synthetic`` (Gaussian blobs, for tests).
"""
from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

__all__ = ["add_arguments", "main", "PRESETS", "load_study_data", "tensor_loaders", "build_study_model", "aggregate"]

DEFAULT_FSDD = "/work/shared/data/fsdd"

#: preset -> defaults (command-line options override them)
PRESETS: dict[str, dict[str, Any]] = {
    # seconds: for tests and a first look
    "smoke": dict(data="synthetic", model="mlp", hidden=32, epochs=3, ft_epochs=1, programmings=3,
                  train_sigmas=[0.0, 0.08], test_sigmas=[0.0, 0.08], levels=[1, 2, 3], batch_size=64,
                  array=[16, 8], n_train=None, n_test=None, adc_range="auto", train_seeds=1),
    # minutes on 2 CPU cores
    "quick": dict(data="fsdd", model="mlp", hidden=256, epochs=25, ft_epochs=6, programmings=40,
                  train_sigmas=[0.0, 0.04, 0.08], test_sigmas=[0.0, 0.04, 0.08, 0.12, 0.16, 0.24],
                  levels=[1, 2, 3], batch_size=64, array=[256, 64], n_train=None, n_test=None, adc_range="auto",
                  train_seeds=3),
    # the KWS CNN of the model zoo (16/32/64 channels), slower
    "full": dict(data="fsdd", model="cnn", hidden=256, epochs=30, ft_epochs=8, programmings=40,
                 train_sigmas=[0.0, 0.04, 0.08], test_sigmas=[0.0, 0.04, 0.08, 0.12, 0.16, 0.24],
                 levels=[1, 2, 3], batch_size=64, array=[256, 64], n_train=None, n_test=None, adc_range="auto",
                 train_seeds=3),
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``spikenoise analog`` (unset options take the preset's value)."""
    p.add_argument("--preset", choices=sorted(PRESETS), default="quick", help="defaults of the run (default quick)")
    p.add_argument("--out", default="runs/analog", help="output folder (resumable; default runs/analog)")
    p.add_argument("--data", choices=["fsdd", "embedded", "digits", "synthetic"], help="data set")
    p.add_argument("--root", default=None, help=f"FSDD folder (default {DEFAULT_FSDD})")
    p.add_argument("--model", choices=["mlp", "cnn"], help="mlp: one hidden layer; cnn: the KWS zoo CNN")
    p.add_argument("--hidden", type=int, help="hidden units of the MLP")
    p.add_argument("--epochs", type=int, help="epochs of float training")
    p.add_argument("--ft-epochs", type=int, help="epochs of each level's fine-tuning")
    p.add_argument("--programmings", type=int, help="programmed chips per condition (seed 003: 40)")
    p.add_argument("--train-seeds", type=int, help="independent trainings (float + fine-tunes) per condition")
    p.add_argument("--train-sigmas", type=float, nargs="+", help="variation injected in training (relative)")
    p.add_argument("--test-sigmas", type=float, nargs="+", help="programming variation at inference (relative)")
    p.add_argument("--levels", type=int, nargs="+", choices=[1, 2, 3], help="pipeline levels")
    p.add_argument("--array", type=int, nargs=2, metavar=("ROWS", "COLS"), help="array size (default 256 64)")
    p.add_argument("--on-off", type=float, default=10.0, help="G_max / G_min (default 10)")
    p.add_argument("--adc-bits", type=int, default=8, help="ADC resolution (default 8)")
    p.add_argument("--adc-range", default=None,
                   help="ADC full scale in G_max x full-scale input: a number (seed 003: 15) or 'auto' "
                        "(per layer, 99.9th percentile of the column currents on training data)")
    p.add_argument("--bits", type=int, default=8, help="weight / programming target bits (default 8)")
    p.add_argument("--act-bits", type=int, default=8, help="activation (DAC) bits (default 8)")
    p.add_argument("--mapping", choices=["proportional", "offset"], default="proportional")
    p.add_argument("--state-dependent", action="store_true", help="variation proportional to conductance")
    p.add_argument("--batch-size", type=int, help="training batch size")
    p.add_argument("--n-train", type=int, help="limit training samples")
    p.add_argument("--n-test", type=int, help="limit test samples")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--fresh", action="store_true", help="do not resume: move old results aside")


def _resolve(args: argparse.Namespace) -> dict[str, Any]:
    cfg = dict(PRESETS[args.preset])
    for k in list(cfg) + ["on_off", "adc_bits", "bits", "act_bits", "mapping", "state_dependent",
                          "seed", "root"]:
        v = getattr(args, k, None)
        if v is not None:
            cfg[k] = v
    cfg["preset"] = args.preset
    if cfg["adc_range"] != "auto":
        try:
            cfg["adc_range"] = float(cfg["adc_range"])
        except ValueError:
            raise SystemExit(f"--adc-range must be a number or 'auto', got {cfg['adc_range']!r}") from None
    if cfg["data"] == "fsdd" and not cfg.get("root"):
        cfg["root"] = DEFAULT_FSDD
    return cfg


# ----------------------------------------------------------------------------------------------
# data

def _synthetic(seed: int, n_train: int = 600, n_test: int = 300, shape=(8, 8), n_classes: int = 4):
    g = torch.Generator().manual_seed(seed + 12345)
    d = int(np.prod(shape))
    centers = torch.rand(n_classes, d, generator=g)

    def make(n: int):
        y = torch.arange(n) % n_classes
        x = (centers[y] + 0.35 * torch.randn(n, d, generator=g)).clamp(0, 1)
        return x.reshape(n, *shape), y

    return make(n_train), make(n_test), n_classes


def load_study_data(name: str, seed: int = 0, root: str | None = None, n_train: int | None = None,
                    n_test: int | None = None, progress: bool = True):
    """``(x_train, y_train), (x_test, y_test), n_classes`` as tensors.

    * ``fsdd``: 67 x 40 log-Mel features (per-clip normalized), conventional split (takes 0-4 of
      every speaker/digit are the test set), train + val used for training, no augmentation.
    * ``embedded``: the synthesized KWS set, "quick" sizes (4000/500/500), 12 classes.
    * ``digits``: scikit-learn's bundled 8 x 8 digits (1,797 images, values / 16 in [0, 1]),
      stratified 70/30 split with ``seed``.
    * ``synthetic``: 4 Gaussian blobs in 8 x 8 (deterministic; for tests).
    """
    if name == "synthetic":
        tr, te, k = _synthetic(seed)
        return tr, te, k
    if name == "digits":
        try:
            from sklearn.datasets import load_digits
            from sklearn.model_selection import train_test_split
        except ImportError as e:  # pragma: no cover - depends on the environment
            raise RuntimeError("data 'digits' needs scikit-learn: pip install scikit-learn") from e
        d = load_digits()
        x = torch.tensor(d.images / 16.0, dtype=torch.float32)
        y = torch.tensor(d.target, dtype=torch.int64)
        itr, ite = train_test_split(np.arange(len(y)), test_size=0.3, random_state=seed, stratify=d.target)
        tr, te = (x[itr], y[itr]), (x[ite], y[ite])
    else:
        from spikenoise.data import load_kws

        kw: dict[str, Any] = dict(seed=seed, augment=False, progress=progress)
        if name == "fsdd":
            kw["root"] = root or DEFAULT_FSDD
        else:
            kw["preset"] = "quick"
        data = load_kws(name, **kw)

        def stack(ds):
            xs, ys = zip(*(ds[i] for i in range(len(ds))))
            return torch.stack(xs).float(), torch.as_tensor(ys, dtype=torch.int64)

        xa, ya = stack(data.train)
        xv, yv = stack(data.val)
        tr = (torch.cat([xa, xv]), torch.cat([ya, yv]))
        te = stack(data.test)
        k = data.num_classes
        if n_train:
            tr = (tr[0][:n_train], tr[1][:n_train])
        if n_test:
            te = (te[0][:n_test], te[1][:n_test])
        return tr, te, k
    if n_train:
        tr = (tr[0][:n_train], tr[1][:n_train])
    if n_test:
        te = (te[0][:n_test], te[1][:n_test])
    return tr, te, 10


class _SeededLoader:
    """Shuffled mini-batches of tensors; ``set_epoch(e)`` makes epoch ``e``'s order reproducible."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int, seed: int, shuffle: bool):
        self.x, self.y, self.bs, self.seed, self.shuffle, self.epoch = x, y, batch_size, seed, shuffle, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return -(-len(self.y) // self.bs)

    def __iter__(self):
        n = len(self.y)
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 100003 + self.epoch)
            idx = torch.randperm(n, generator=g)
        else:
            idx = torch.arange(n)
        for s in range(0, n, self.bs):
            j = idx[s:s + self.bs]
            yield self.x[j], self.y[j]


def tensor_loaders(train, test, batch_size: int, seed: int, test_batch: int = 512):
    """Seeded, resumable train loader and a fixed-order test loader over tensors."""
    return (_SeededLoader(train[0], train[1], batch_size, seed, True),
            _SeededLoader(test[0], test[1], test_batch, seed, False))


# ----------------------------------------------------------------------------------------------
# models

def build_study_model(kind: str, input_shape: tuple[int, ...], n_classes: int, hidden: int = 256) -> nn.Module:
    """A float (level 0) model on ideal tiled layers: ``mlp`` or the zoo ``cnn``."""
    from spikenoise.synapse import level_settings, tile

    st = level_settings(0)
    if kind == "mlp":
        from spikenoise.models.resilience import MLP

        # unbounded ReLU would be clipped by the DAC range anyway; MLP uses a bounded ReLU
        return MLP(int(np.prod(input_shape)), (hidden,), n_classes, error_model=st["error_model"],
                   **st["analog"], input_range=None)
    if kind == "cnn":
        from spikenoise.models import build_model

        if len(input_shape) != 2:
            raise ValueError(f"the zoo CNN needs (time, freq) inputs, got {input_shape}")
        m = build_model("cnn", n_classes=n_classes, input_shape=tuple(input_shape))
        return tile(m, st["error_model"], errors="none", reads="once", **st["analog"], input_range=None)
    raise ValueError(f"model must be 'mlp' or 'cnn', got {kind!r}")


def _set_level(model: nn.Module, level: int, sigma: float, cfg: dict[str, Any], errors: str = "static",
               draws: str | None = None, calib: torch.Tensor | None = None) -> nn.Module:
    """Put ``model`` into pipeline ``level`` at variation ``sigma``.

    With ``adc_range="auto"`` a model's ADC ranges are kept, or calibrated on ``calib`` if given.
    """
    from spikenoise.synapse import ADC_RANGE, calibrate_adc_ranges, level_settings, tile

    auto = cfg["adc_range"] == "auto"
    st = level_settings(level, sigma, on_off=cfg["on_off"], bits=cfg["bits"], act_bits=cfg["act_bits"],
                        array=tuple(cfg["array"]), adc_bits=cfg["adc_bits"],
                        adc_range=ADC_RANGE if auto else cfg["adc_range"],
                        mapping=cfg["mapping"], state_dependent=cfg["state_dependent"])
    analog = dict(st["analog"])
    if auto:
        analog.pop("adc_range", None)
    if draws is not None:
        analog["draws"] = draws
    model = tile(model, st["error_model"], errors=errors, inplace=True, **analog)
    if auto and level == 3 and calib is not None:
        calibrate_adc_ranges(model, calib)
    return model


# ----------------------------------------------------------------------------------------------
# main

def _conditions(rows: list[dict[str, Any]]) -> dict[tuple[int, float, float], list[dict[str, Any]]]:
    """Rows grouped by (level, train sigma, test sigma), one row per training seed."""
    groups: dict[tuple[int, float, float], list[dict[str, Any]]] = {}
    for r in rows:
        k = r["key"]
        groups.setdefault((k["level"], k["train_sigma"], k["test_sigma"]), []).append(r)
    return groups


def aggregate(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per condition: the chips of all training seeds pooled (box statistics) and the per-seed
    top-25 % (q3) and mean accuracies as mean +- 95 % CI over training seeds."""
    from spikenoise.results import mean_ci
    from spikenoise.synapse import box_stats

    out = []
    for (lv, tr, te), rs in sorted(_conditions(rows).items()):
        pooled = [a for r in rs for a in r["accuracies"]]
        q3m, q3ci = mean_ci([r["q3"] for r in rs])
        mm, mci = mean_ci([r["mean"] for r in rs])
        out.append({"level": lv, "train_sigma": tr, "test_sigma": te, "train_seeds": len(rs),
                    "chips": len(pooled), **{f"pooled_{k}": v for k, v in box_stats(pooled).items() if k != "n"},
                    "top25": q3m, "top25_ci": q3ci, "mean": mm, "mean_ci": mci})
    return out


def _plot(rows: list[dict[str, Any]], cfg: dict[str, Any], out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = _conditions(rows)
    agg = aggregate(rows)
    levels = sorted({k[0] for k in groups})
    trs = sorted({k[1] for k in groups})
    tes = sorted({k[2] for k in groups})
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    fig, axes = plt.subplots(1, len(levels), figsize=(5.2 * len(levels), 4.2), squeeze=False, sharey=True)
    width = 0.8 / max(1, len(trs))
    for ax, lv in zip(axes[0], levels):
        for j, tr in enumerate(trs):
            data, pos = [], []
            for i, te in enumerate(tes):
                rs = groups.get((lv, tr, te))
                if rs:
                    data.append([100 * a for r in rs for a in r["accuracies"]])
                    pos.append(i - 0.4 + width * (j + 0.5))
            if data:
                bp = ax.boxplot(data, positions=pos, widths=width * 0.9, patch_artist=True, whis=(0, 100),
                                manage_ticks=False)
                for b in bp["boxes"]:
                    b.set_facecolor(colors[j % len(colors)])
                    b.set_alpha(0.6)
                ax.plot([], [], color=colors[j % len(colors)], lw=6, alpha=0.6, label=f"train var {100 * tr:g}%")
        ax.set_xticks(range(len(tes)))
        ax.set_xticklabels([f"{100 * t:g}" for t in tes])
        ax.set_xlabel("programming variation at inference (% of range)")
        ax.set_title({1: "level 1: quantized", 2: "level 2: + two cells, on/off",
                      3: "level 3: + arrays, ADC"}[lv])
        ax.grid(alpha=0.3)
    n_seeds = max(len(rs) for rs in groups.values())
    axes[0][0].set_ylabel(f"test accuracy (%): {cfg['programmings']} chips x {n_seeds} trainings")
    axes[0][0].legend(loc="lower left", fontsize=8)
    fig.suptitle(f"seed 003 on {cfg['data']} ({cfg['model']}), on/off {cfg['on_off']:g}, ADC range {cfg['adc_range']}, "
                 "whiskers = min/max")
    fig.tight_layout()
    p1 = out / "boxplots.png"
    fig.savefig(p1, dpi=120)
    plt.close(fig)

    fig, axes = plt.subplots(1, len(levels), figsize=(5.2 * len(levels), 3.8), squeeze=False, sharey=True)
    for ax, lv in zip(axes[0], levels):
        for j, tr in enumerate(trs):
            pts = sorted((a["test_sigma"], 100 * a["top25"], 100 * a["top25_ci"]) for a in agg
                         if a["level"] == lv and a["train_sigma"] == tr)
            if pts:
                ax.errorbar([100 * p[0] for p in pts], [p[1] for p in pts], yerr=[p[2] for p in pts], fmt="o-",
                            capsize=3, color=colors[j % len(colors)], label=f"train var {100 * tr:g}%")
        ax.set_title(f"level {lv}: 75th percentile accuracy")
        ax.set_xlabel("programming variation at inference (%)")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("top-25% accuracy (%), mean +- 95% CI over trainings")
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    p2 = out / "top25.png"
    fig.savefig(p2, dpi=120)
    plt.close(fig)
    return [p1, p2]


def _summary(rows: list[dict[str, Any]], det: list[dict[str, Any]], cfg: dict[str, Any], info: dict[str, Any]) -> str:
    from spikenoise.results import mean_ci

    lines = [f"# seed 003 study: {cfg['data']}, {cfg['model']}, preset {cfg['preset']}", ""]
    lines.append(f"Train/test samples: {info['n_train']}/{info['n_test']}; {cfg['train_seeds']} training seed(s); "
                 f"{cfg['programmings']} programmed chips per condition and training; on/off {cfg['on_off']:g}; "
                 f"array {cfg['array'][0]}x{cfg['array'][1]}; ADC {cfg['adc_bits']} bit, range {cfg['adc_range']}; "
                 f"weights {cfg['bits']} bit, activations {cfg['act_bits']} bit; mapping {cfg['mapping']}"
                 f"{', state-dependent variation' if cfg['state_dependent'] else ''}.")
    fa = info["float_accs"]
    lines.append(f"Float model test accuracy per training seed: {', '.join(f'{100 * a:.2f}' for a in fa)}%. "
                 f"DAC ranges per layer (seed 0): {', '.join(f'{r:.3g}' for r in info['input_ranges'][0])}. "
                 f"ADC ranges per layer (G_max x full-scale input): {json.dumps(info['adc_ranges'])}.")
    lines += ["", "## Deterministic effects (no variation; mean over training seeds; rows: training level, "
              "columns: inference pipeline)", ""]
    pipes = sorted({d["pipeline"] for d in det})
    lines.append("| trained at | " + " | ".join(f"pipeline {p}" for p in pipes) + " |")
    lines.append("|---" * (len(pipes) + 1) + "|")
    for t in sorted({d["trained"] for d in det}):
        cells = []
        for p in pipes:
            v = [d["accuracy"] for d in det if d["trained"] == t and d["pipeline"] == p]
            cells.append("" if not v else f"{100 * sum(v) / len(v):.2f}")
        lines.append(f"| level {t} | " + " | ".join(cells) + " |")
    lines += ["", "## Programming variation (accuracy %)", "",
              "Pooled over all chips of all trainings: min / q1 / median / max. Top 25% (q3) and mean: per "
              "training, then mean +- 95% CI over trainings.", "",
              "| level | train var | test var | min | q1 | median | top 25% (q3) | max | mean |",
              "|---|---|---|---|---|---|---|---|---|"]
    for a in aggregate(rows):
        lines.append(f"| {a['level']} | {100 * a['train_sigma']:g}% | {100 * a['test_sigma']:g}% | "
                     f"{100 * a['pooled_min']:.2f} | {100 * a['pooled_q1']:.2f} | {100 * a['pooled_median']:.2f} | "
                     f"{100 * a['top25']:.2f} +- {100 * a['top25_ci']:.2f} | {100 * a['pooled_max']:.2f} | "
                     f"{100 * a['mean']:.2f} +- {100 * a['mean_ci']:.2f} |")
    # injection effect: per training seed, the gain of injected over not-injected models
    base = min(cfg["train_sigmas"])
    gains = []
    for (lv, tr, te), rs in sorted(_conditions(rows).items()):
        if tr == base:
            continue
        ref = {r["key"]["train_seed"]: r for r in _conditions(rows).get((lv, base, te), [])}
        d = [r["mean"] - ref[r["key"]["train_seed"]]["mean"] for r in rs if r["key"]["train_seed"] in ref]
        if d:
            m, ci = mean_ci(d)
            gains.append((lv, tr, te, m, ci, len(d)))
    if gains:
        lines += ["", f"## Noise injection: gain in mean accuracy over training without injection (paired by "
                  "training seed; percentage points, mean +- 95% CI)", "",
                  "| level | train var | test var | gain | trainings |", "|---|---|---|---|---|"]
        for lv, tr, te, m, ci, n in gains:
            lines.append(f"| {lv} | {100 * tr:g}% | {100 * te:g}% | {100 * m:+.2f} +- {100 * ci:.2f} | {n} |")
    return "\n".join(lines) + "\n"


def main(args: argparse.Namespace) -> int:
    """Run the study; returns 0 on success."""
    from tqdm.auto import tqdm

    from spikenoise.evaluate import accuracy
    from spikenoise.results import ResultStore
    from spikenoise.evaluate import programming_accuracies
    from spikenoise.synapse import box_stats, calibrate_input_ranges, set_analog
    from spikenoise.train import fit, seed_everything

    cfg = _resolve(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    progress = not args.no_progress
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "models").mkdir(exist_ok=True)
    store = ResultStore(out, cfg, resume=not args.fresh)
    t0 = time.time()

    train, test, n_classes = load_study_data(cfg["data"], cfg["seed"], cfg.get("root"), cfg.get("n_train"),
                                             cfg.get("n_test"), progress)
    input_shape = tuple(train[0].shape[1:])
    calib = train[0][:512]  # calibration batch of DAC / ADC ranges (training data)
    levels_needed = [lv for lv in (1, 2, 3) if lv <= max(cfg["levels"])]
    det: list[dict[str, Any]] = []
    float_accs: list[float] = []
    ranges: list[Any] = []
    adc_ranges: dict[str, Any] = {}
    for ts in range(cfg["train_seeds"]):
        tseed = cfg["seed"] + 1000 * ts  # data split fixed by --seed; initialization and order by ts
        tr_loader, te_loader = tensor_loaders(train, test, cfg["batch_size"], tseed)
        seed_everything(tseed)
        # 1. float model
        float_model = build_study_model(cfg["model"], input_shape, n_classes, cfg["hidden"])
        fit(float_model, tr_loader, None, epochs=cfg["epochs"], lr=1e-3, weight_lr=1e-2, seed=tseed,
            checkpoint=out / "models" / f"seed{ts}_float.pt", progress=progress, desc=f"seed {ts}: float")
        float_accs.append(accuracy(float_model, te_loader))
        # 2. DAC ranges from training data, shared by all levels of this training seed
        ranges.append(calibrate_input_ranges(float_model, calib))

        # 3. architecture-aware fine-tuning chains: level 1 <- float, 2 <- 1, 3 <- 2
        models: dict[tuple[int, float], nn.Module] = {}
        for s in cfg["train_sigmas"]:
            prev = float_model
            for lv in levels_needed:
                m = _set_level(copy.deepcopy(prev), lv, s, cfg, errors="static" if s > 0 else "none",
                               draws="batch", calib=calib)
                fit(m, tr_loader, None, epochs=cfg["ft_epochs"], lr=2e-4, weight_lr=2e-3, seed=tseed + lv,
                    checkpoint=out / "models" / f"seed{ts}_level{lv}_train{s:g}.pt", progress=progress,
                    desc=f"seed {ts}: level {lv}, train var {s:g}")
                models[(lv, s)] = m
                prev = m
            if (3, s) in models:
                adc_ranges[f"seed{ts}_train{s:g}"] = [l.adc_range for l in models[(3, s)].modules()
                                                      if getattr(l, "adc_bits", None) is not None]

        # 5. deterministic effects: error-free models of each training level in each pipeline
        s0 = min(cfg["train_sigmas"], key=abs)
        trained = {0: float_model, **{lv: models[(lv, s0)] for lv in levels_needed if (lv, s0) in models}}
        for t, m in trained.items():
            for p in [0] + levels_needed:
                mm = _set_level(copy.deepcopy(m), p, 0.0, cfg, errors="none", calib=None if t == 3 else calib)
                if p == 0:
                    set_analog(mm, input_range=None)
                det.append({"train_seed": ts, "trained": t, "pipeline": p, "accuracy": accuracy(mm, te_loader)})

        # 4. programming variation, many chips per condition
        conds = [(lv, s, t) for lv in cfg["levels"] for s in cfg["train_sigmas"] for t in cfg["test_sigmas"]]
        bar = tqdm(conds, desc=f"seed {ts}: conditions", disable=not progress, dynamic_ncols=True)
        for lv, s, t in bar:
            key = {"level": lv, "train_sigma": s, "test_sigma": t, "train_seed": ts}
            if store.done(key):
                continue
            m = _set_level(copy.deepcopy(models[(lv, s)]), lv, t, cfg, errors="static", draws="batch")
            n = cfg["programmings"] if t > 0 else 1  # no variation: every chip is the same
            t1 = time.time()
            accs = programming_accuracies(m, te_loader, n=n, seed=tseed * 1000 + 7)
            if t == 0:
                accs = accs * cfg["programmings"]
            st = box_stats(accs)
            store.add(key, {"accuracies": accs, **st, "seconds": time.time() - t1})
            bar.set_postfix(level=lv, train=s, test=t, q3=f"{st['q3']:.3f}")
    with open(out / "deterministic.csv", "w") as fh:
        fh.write("train_seed,trained_level,pipeline_level,accuracy\n")
        for d in det:
            fh.write(f"{d['train_seed']},{d['trained']},{d['pipeline']},{d['accuracy']:.6f}\n")

    rows = store.rows()
    store.write_csv()
    info = {"n_train": len(train[1]), "n_test": len(test[1]), "float_accs": float_accs, "input_ranges": ranges,
            "adc_ranges": adc_ranges, "seconds": time.time() - t0}
    (out / "summary.json").write_text(json.dumps({"config": cfg, "info": info, "deterministic": det}, indent=2))
    text = _summary(rows, det, cfg, info)
    (out / "summary.md").write_text(text)
    pngs = _plot(rows, cfg, out)
    print(text)
    print(f"wrote {out / 'results.csv'}, {out / 'summary.md'}, " + ", ".join(str(p) for p in pngs)
          + f" in {time.time() - t0:.0f} s")
    return 0
