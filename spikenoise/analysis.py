"""What error-aware training changes, and the paper's figures (seed paper 000, Fig. 2A and 3B-D).

Numbers
    :func:`layer_scales` (learned per-layer scale), :func:`level_fractions` (fraction of a layer's
    stored weights at each NVM level), :func:`weight_stats` (both, JSON-ready, per network) and
    :func:`level_table` (per-level weight magnitude, mean error magnitude and SNR of an NVM).
Plots (PNG, matplotlib's Agg backend, no display needed)
    :func:`plot_accuracy` (Fig. 2A), :func:`plot_scales` (3B), :func:`plot_weight_levels` (3C),
    :func:`plot_level_snr` (3D). Text: :func:`format_table`.
"""
from __future__ import annotations

import math
import os
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import torch
import torch.nn as nn

from .evaluate import is_matched, series_label
from .noise.nvm import MultiLevelNVM
from .synapse import NoisySynapse

__all__ = ["layer_scales", "level_fractions", "weight_stats", "level_table", "format_table",
           "plot_accuracy", "plot_scales", "plot_weight_levels", "plot_level_snr"]


def _named_synapses(model: nn.Module) -> list[tuple[str, NoisySynapse]]:
    return [(name or type(m).__name__, m) for name, m in model.named_modules() if isinstance(m, NoisySynapse)]


def layer_scales(model: nn.Module) -> dict[str, float]:
    """Learned scale of every noisy layer, by module name (in module order)."""
    return {name: float(m.scale.detach()) for name, m in _named_synapses(model)}


def level_fractions(model: nn.Module) -> dict[str, list[float]]:
    """Fraction of each layer's stored weights at each NVM level (index = level, low to high).

    Layers whose error model has no discrete levels are skipped.
    """
    out: dict[str, list[float]] = {}
    for name, m in _named_synapses(model):
        lv = m.error_model.discrete()
        if lv is None:
            continue
        values = lv.values.to(torch.float64)
        stored = m.error_model.quantize(m.weight.detach().to(torch.float64))  # type: ignore[attr-defined]
        idx = torch.round((stored - values[0]) / lv.step).clamp(0, values.numel() - 1).long().flatten()
        counts = torch.bincount(idx, minlength=values.numel()).to(torch.float64)
        out[name] = (counts / counts.sum()).tolist()
    return out


def weight_stats(model: nn.Module) -> dict[str, Any]:
    """JSON-ready summary of a trained network: per-layer scale, level fractions and sizes,
    pooled level fractions, mean stored-weight magnitude and the level values."""
    syn = _named_synapses(model)
    fr = level_fractions(model)
    sizes = {name: int(m.weight.numel()) for name, m in syn}  # type: ignore[attr-defined]
    values = None
    for _, m in syn:
        lv = m.error_model.discrete()
        if lv is not None:
            values = lv.values.tolist()
            break
    pooled = None
    if fr:
        tot = sum(sizes[n] for n in fr)
        pooled = [sum(fr[n][i] * sizes[n] for n in fr) / tot for i in range(len(next(iter(fr.values()))))]
    mag = None
    if pooled is not None and values is not None:
        mag = float(sum(p * abs(v) for p, v in zip(pooled, values)))
    return {"scales": layer_scales(model), "levels": fr, "sizes": sizes, "pooled_levels": pooled,
            "mean_magnitude": mag, "values": values}


def level_table(noise_levels: Sequence[int] = (1, 2, 3)) -> list[dict[str, Any]]:
    """Per NVM level and noise level: value, weight magnitude, mean error magnitude, SNR (dB)."""
    rows = []
    for k in noise_levels:
        nvm = MultiLevelNVM.noise_level(k)
        for v, e, s in zip(nvm.values.tolist(), nvm.error_magnitude().tolist(), nvm.snr_db().tolist()):
            rows.append({"noise_level": k, "value": v, "magnitude": abs(v), "error_magnitude": e, "snr_db": s})
    return rows


# ----------------------------------------------------------------------------------------------
# text

def _labelled(summary: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    summary = list(summary)
    matched = is_matched(summary)
    return [{**e, "label": series_label(e, matched)} for e in summary]


def format_table(summary: Iterable[Mapping[str, Any]], percent: bool = True) -> str:
    """Plain-text table: one row per (model, training, error type), one column per noise level,
    cells ``mean ± ci`` over the trainings (in % by default)."""
    entries = _labelled(summary)
    if not entries:
        return "(no results)"
    levels = sorted({e["level"] for e in entries})
    models: list[str] = []
    for e in entries:
        if e["model"] not in models:
            models.append(e["model"])
    f = 100.0 if percent else 1.0
    labels = sorted({e["label"] for e in entries}, key=lambda s: (s != "agnostic", s))
    cells: dict[tuple, str] = {}
    ns: dict[tuple, int] = {}
    for e in entries:
        k = (e["model"], e["label"], e["errors"])
        cells[k + (e["level"],)] = f"{e['mean'] * f:5.1f} ± {e['ci'] * f:4.1f}"
        ns[k] = max(ns.get(k, 0), e["n"])
    head = ["model", "training", "errors"] + [f"level {lv}" for lv in levels] + ["M"]
    body = []
    for m in models:
        for lab in labels:
            for err in ("static", "dynamic"):
                k = (m, lab, err)
                if k not in ns:
                    continue
                body.append([m, lab, err] + [cells.get(k + (lv,), "-") for lv in levels] + [str(ns[k])])
    widths = [max(len(r[i]) for r in [head] + body) for i in range(len(head))]
    line = lambda r: "  ".join(c.ljust(w) if i < 3 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
    sep = "-" * len(line(head))
    unit = "accuracy in %, mean ± 95% CI over M trainings" if percent else "accuracy, mean ± 95% CI"
    return "\n".join([unit, line(head), sep] + [line(r) for r in body])


# ----------------------------------------------------------------------------------------------
# plots

def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str | os.PathLike) -> str:
    path = os.fspath(path)
    d = os.path.dirname(path)
    if d:
        os.makedirs(d, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    _plt().close(fig)
    return path


_MODEL_COLORS = {"cnn": "tab:blue", "scnn": "tab:cyan", "rnn": "tab:red", "srnn": "tab:orange",
                 "cnn_pixel": "tab:purple"}


def plot_accuracy(summary: Iterable[Mapping[str, Any]], path: str | os.PathLike, title: str | None = None) -> str:
    """Fig. 2A: accuracy vs test noise level, one line per model, 95%-CI error bars; rows static /
    dynamic errors, columns error-agnostic / error-aware training."""
    plt = _plt()
    entries = _labelled(summary)
    labels = sorted({e["label"] for e in entries}, key=lambda s: (s != "agnostic", s)) or ["agnostic"]
    errs = [e for e in ("static", "dynamic") if any(x["errors"] == e for x in entries)] or ["static"]
    models: list[str] = []
    for e in entries:
        if e["model"] not in models:
            models.append(e["model"])
    fig, axes = plt.subplots(len(errs), len(labels), figsize=(4.2 * len(labels), 3.4 * len(errs)),
                             squeeze=False, sharex=True, sharey=True)
    for i, err in enumerate(errs):
        for j, lab in enumerate(labels):
            ax = axes[i][j]
            for k, m in enumerate(models):
                pts = sorted((e["level"], e["mean"], e["ci"]) for e in entries
                             if e["model"] == m and e["label"] == lab and e["errors"] == err)
                if not pts:
                    continue
                x, y, c = zip(*pts)
                dodge = 0.06 * (k - (len(models) - 1) / 2)  # keep overlapping error bars apart
                ax.errorbar([v + dodge for v in x], [100 * v for v in y], yerr=[100 * v for v in c], marker="o",
                            capsize=3, label=m.upper(), color=_MODEL_COLORS.get(m))
            ax.set_ylim(0, 100)  # accuracies; a wide CI (few trainings) is clipped at the frame
            ax.set_title(f"{err} errors, {'error-' + lab if lab in ('agnostic', 'aware') else lab} training",
                         fontsize=10)
            ax.grid(alpha=0.3)
            if i == len(errs) - 1:
                ax.set_xlabel("noise level")
            if j == 0:
                ax.set_ylabel("test accuracy (%)")
            lv = sorted({e["level"] for e in entries})
            ax.set_xticks(lv)
    axes[0][0].legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)


def _by_model(records: Iterable[Mapping[str, Any]]) -> dict[str, dict[int, list[Mapping[str, Any]]]]:
    """records: dicts with ``model``, ``train_level`` (0 = agnostic), ``stats`` (:func:`weight_stats`)."""
    out: dict[str, dict[int, list[Mapping[str, Any]]]] = {}
    for r in records:
        out.setdefault(r["model"], {}).setdefault(int(r["train_level"]), []).append(r["stats"])
    return out


def _level_colors(n: int) -> list:
    plt = _plt()
    cmap = plt.get_cmap("viridis")
    return [cmap(i / max(n - 1, 1)) for i in range(n)]


def plot_scales(records: Iterable[Mapping[str, Any]], path: str | os.PathLike) -> str:
    """Fig. 3B: learned scale of each layer, one bar per training noise level (0 = error-agnostic),
    mean over trainings with min-max whiskers; one panel per model."""
    plt = _plt()
    data = _by_model(records)
    models = list(data)
    fig, axes = plt.subplots(1, max(len(models), 1), figsize=(4.0 * max(len(models), 1), 3.2), squeeze=False)
    for ax, m in zip(axes[0], models):
        tls = sorted(data[m])
        layers = list(data[m][tls[0]][0]["scales"])
        width = 0.8 / len(tls)
        for j, (tl, col) in enumerate(zip(tls, _level_colors(len(tls)))):
            vals = np.array([[s["scales"][l] for l in layers] for s in data[m][tl]])
            mean = vals.mean(axis=0)
            err = np.stack([mean - vals.min(axis=0), vals.max(axis=0) - mean])
            ax.bar(np.arange(len(layers)) + (j - (len(tls) - 1) / 2) * width, mean, width, yerr=err,
                   color=col, capsize=2, label="agnostic" if tl == 0 else f"aware, level {tl}")
        ax.set_xticks(range(len(layers)))
        ax.set_xticklabels([l.replace(".", "\n") for l in layers], fontsize=7)
        ax.set_title(m.upper())
        ax.set_ylabel("learned scale")
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, path)


def plot_weight_levels(records: Iterable[Mapping[str, Any]], path: str | os.PathLike) -> str:
    """Fig. 3C: fraction of stored weights per NVM level, per model (rows) for all layers pooled
    and for each layer (columns), one line per training noise level (0 = error-agnostic)."""
    plt = _plt()
    data = _by_model(records)
    models = list(data)
    ncols = 1 + max((len(next(iter(d.values()))[0]["levels"]) for d in data.values()), default=0)
    fig, axes = plt.subplots(max(len(models), 1), ncols, figsize=(2.6 * ncols, 2.3 * max(len(models), 1)),
                             squeeze=False, sharey="row")
    for i, m in enumerate(models):
        tls = sorted(data[m])
        first = data[m][tls[0]][0]
        values = first["values"]
        layers = list(first["levels"])
        panels = [("all layers", "pooled_levels")] + [(l, l) for l in layers]
        for j in range(ncols):
            ax = axes[i][j]
            if j >= len(panels):
                ax.axis("off")
                continue
            title, key = panels[j]
            for tl, col in zip(tls, _level_colors(len(tls))):
                fr = np.array([s[key] if key == "pooled_levels" else s["levels"][key] for s in data[m][tl]])
                ax.plot(values, fr.mean(axis=0), marker="o", ms=3, color=col,
                        label="agnostic" if tl == 0 else f"aware, level {tl}")
            ax.set_title(f"{m.upper()} {title}", fontsize=8)
            ax.set_xticks(values)
            ax.tick_params(labelsize=7)
            ax.grid(alpha=0.3)
            if j == 0:
                ax.set_ylabel("fraction of weights", fontsize=8)
            if i == len(models) - 1:
                ax.set_xlabel("NVM level value", fontsize=8)
    axes[0][0].legend(fontsize=6)
    fig.tight_layout()
    return _save(fig, path)


def plot_level_snr(path: str | os.PathLike, noise_levels: Sequence[int] = (1, 2, 3)) -> str:
    """Fig. 3D: per NVM level, weight magnitude and mean error magnitude (top) and SNR in dB
    (bottom; the level of value 0 has no signal and is left out), for each noise level."""
    plt = _plt()
    rows = level_table(noise_levels)
    fig, (top, bot) = plt.subplots(2, 1, figsize=(5.0, 5.5), sharex=True)
    values = sorted({r["value"] for r in rows})
    top.bar(values, [abs(v) for v in values], color="lightgray", label="weight magnitude")
    cols = _level_colors(len(noise_levels))
    for k, col in zip(noise_levels, cols):
        rk = [r for r in rows if r["noise_level"] == k]
        top.plot([r["value"] for r in rk], [r["error_magnitude"] for r in rk], marker="o", color=col,
                 label=f"error magnitude, level {k}")
        pts = [(r["value"], r["snr_db"]) for r in rk if math.isfinite(r["snr_db"])]
        if pts:
            bot.plot(*zip(*pts), marker="o", color=col, label=f"noise level {k}")
    top.set_ylabel("magnitude")
    top.legend(fontsize=7)
    top.grid(alpha=0.3)
    bot.set_ylabel("SNR (dB)")
    bot.set_xlabel("NVM level value")
    bot.set_xticks(values)
    bot.legend(fontsize=7)
    bot.grid(alpha=0.3)
    fig.tight_layout()
    return _save(fig, path)
