"""``load_kws``: one entry point for the embedded task, GSCD v2 and FSDD."""
from __future__ import annotations

import hashlib
import json
import math
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import cache as _cache
from .classes import FSDD_CLASSES, GSCD_CLASSES, SILENCE, UNKNOWN
from .dataset import AugmentConfig, KWSDataset
from .errors import DataLayoutError
from .features import FeatureConfig, LogMel, extract_files

__all__ = ["KWSData", "load_kws", "SOURCES"]

SOURCES = ("embedded", "gscd", "fsdd")
_SPLITS = ("train", "val", "test")
_FSDD_SPLITS = ("conventional", "speaker")


@dataclass
class KWSData:
    """Three splits of 67 x 40 (time x Mel) features plus a description of how they were made.

    ``train`` augments on the fly (if enabled), ``val`` / ``test`` never do. ``info`` is plain JSON
    (source, sizes, class counts, feature / augmentation configs, cache use, skipped files).
    """

    train: KWSDataset
    val: KWSDataset
    test: KWSDataset
    classes: list[str]
    info: dict[str, Any]
    features: FeatureConfig = field(default_factory=FeatureConfig)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def summary(self) -> str:
        s = self.info.get("sizes", {})
        return (f"{self.info.get('source')}: {len(self.classes)} classes, train/val/test = "
                f"{s.get('train')}/{s.get('val')}/{s.get('test')}, features {list(self.features.shape)}")


def _augment_cfg(augment) -> AugmentConfig | None:
    if augment is True:
        return AugmentConfig()
    if augment in (False, None):
        return None
    if isinstance(augment, AugmentConfig):
        return augment
    raise TypeError(f"augment must be a bool or an AugmentConfig, got {type(augment).__name__}")


def _subsample(n_total: int, n: int | None, rng: np.random.Generator) -> np.ndarray:
    """Sorted indices of a seeded random subset of size ``n`` (all when ``n`` is None or larger)."""
    if n is None or n >= n_total:
        return np.arange(n_total)
    if n < 0:
        raise ValueError(f"split size must be >= 0, got {n}")
    return np.sort(rng.choice(n_total, size=n, replace=False))


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def _warn_skipped(skipped: list[str], total: int, where: str) -> None:
    if skipped:
        warnings.warn(f"{where}: skipped {len(skipped)} unreadable WAV file(s) of {total} (first: {skipped[0]})",
                      RuntimeWarning, stacklevel=3)


def _fraction(v: Any, name: str) -> float:
    """A finite fraction >= 0 (``name`` for the error message)."""
    try:
        f = float(v)
    except (TypeError, ValueError):
        raise ValueError(f"load_kws('gscd') {name} must be a number >= 0, got {v!r}") from None
    if isinstance(v, bool) or not math.isfinite(f) or f < 0:
        raise ValueError(f"load_kws('gscd') {name} must be a finite number >= 0, got {v!r}")
    return f


def _check_readable(ok: np.ndarray, first: Any, root: Path, split: str, layout: str) -> None:
    """All files of a split unreadable: not a data set but a broken folder (no silent all-silence set)."""
    if len(ok) and not ok.any():
        raise DataLayoutError(f"none of the {len(ok)} WAV files of the {split} split in {str(root)!r} could be read "
                              f"(first: {first}); they are damaged or not WAV audio.\n{layout}")


def _assemble(parts: dict, classes, fcfg, aug, bank, seed, info, sizes=(None, None, None)) -> KWSData:
    for name, asked in zip(_SPLITS, sizes):
        if len(parts[name]["labels"]) == 0 and asked != 0:
            raise DataLayoutError(f"the {name} split of {info.get('source')} data in {info.get('root')!r} is empty "
                                  "(no clip found or readable for it); check the folder's layout and split options")
    ds = {}
    for name in _SPLITS:
        p = parts[name]
        meta = {k: v for k, v in p.items() if k not in ("logmel", "labels")}
        ds[name] = KWSDataset(p["logmel"], p["labels"], classes, fcfg, aug if name == "train" else None,
                              bank if name == "train" else None, seed=seed, meta=meta)
    info.update(
        classes=list(classes),
        feature_shape=list(fcfg.shape),
        features=fcfg.as_dict(),
        normalization=("per clip, per Mel channel: " + ("zero mean, " if fcfg.center else "") +
                       "unit variance over time"),
        augment=None if aug is None else aug.as_dict(),
        augment_noise_segments=0 if bank is None else int(len(bank)),
        sizes={n: len(ds[n]) for n in _SPLITS},
        class_counts={n: ds[n].class_counts() for n in _SPLITS},
    )
    return KWSData(ds["train"], ds["val"], ds["test"], list(classes), info, fcfg)


def load_kws(
    name: str = "embedded",
    root: str | Path | None = None,
    seed: int = 0,
    n_train: int | None = None,
    n_val: int | None = None,
    n_test: int | None = None,
    cache_dir: str | Path | None = None,
    augment: bool | AugmentConfig = True,
    *,
    split: str = "conventional",
    features: FeatureConfig | None = None,
    progress: bool = True,
    use_cache: bool = True,
    **options,
) -> KWSData:
    """Load a keyword-spotting data set as 67 x 40 log-Mel features.

    ``name``: ``"embedded"`` (synthesized GSCD words, no download; sizes default to the
    ``preset`` option: "default" 8000/1000/1000, "quick" 4000/500/500, "tiny" 960/240/240),
    ``"gscd"`` (``root`` = speech_commands_v0.02 folder, default ``$SPIKENOISE_GSCD``; options
    ``test_root``, ``silence_fraction=0.1``, ``unknown_fraction=None``) or ``"fsdd"`` (``root`` =
    FSDD folder, default ``$SPIKENOISE_FSDD``; ``split`` = "conventional" | "speaker"; options
    ``test_speakers``, ``val_speakers``).
    ``n_*`` subsample a real data set (seeded) or size the embedded one. ``seed`` (>= 0) fixes
    the embedded clips, GSCD silence cuts and subsets, and the augmentation draws.
    Features are cached under ``cache_dir`` (default ``$SPIKENOISE_CACHE`` or
    ``~/.cache/spikenoise``) keyed by everything that determines them.
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"load_kws seed must be an int >= 0, got {seed!r}")
    if not isinstance(name, str):
        raise TypeError(f"load_kws name must be one of {SOURCES}, got {name!r}")
    name = name.lower()
    if name not in SOURCES:
        raise ValueError(f"unknown data set name={name!r}; choose one of {SOURCES}")
    for pname, n in zip(("n_train", "n_val", "n_test"), (n_train, n_val, n_test)):
        if n is not None and (isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0):
            raise ValueError(f"load_kws {pname} must be None or an int >= 0, got {n!r}")
    if split not in _FSDD_SPLITS:
        raise ValueError(f"load_kws split must be one of {_FSDD_SPLITS}, got {split!r}")
    if features is not None and not isinstance(features, FeatureConfig):
        raise TypeError(f"load_kws features must be a FeatureConfig or None, got {type(features).__name__}")
    if root is not None and not isinstance(root, (str, os.PathLike)):
        raise TypeError(f"load_kws root must be a folder path, got {type(root).__name__}: {root!r}")
    fcfg = features or FeatureConfig()
    aug = _augment_cfg(augment)
    kw = dict(seed=int(seed), sizes=(n_train, n_val, n_test), cache_dir=cache_dir,
              use_cache=use_cache, fcfg=fcfg, aug=aug, progress=progress)
    t0 = time.perf_counter()
    if name == "embedded":
        if root is not None:
            raise ValueError("the embedded data set is generated, it takes no root folder")
        if split != "conventional":
            raise ValueError("split= applies to fsdd only")
        data = _load_embedded(options, **kw)
    elif name == "gscd":
        root = root or os.environ.get("SPIKENOISE_GSCD")
        if not root:
            from .gscd import GSCD_LAYOUT

            raise ValueError(f"load_kws('gscd') needs root=<folder> or $SPIKENOISE_GSCD.\n{GSCD_LAYOUT}")
        if split != "conventional":
            raise ValueError("split= applies to fsdd only; GSCD uses its official lists")
        data = _load_gscd(Path(root), options, **kw)
    else:
        root = root or os.environ.get("SPIKENOISE_FSDD")
        if not root:
            from .fsdd import FSDD_LAYOUT

            raise ValueError(f"load_kws('fsdd') needs root=<folder> or $SPIKENOISE_FSDD.\n{FSDD_LAYOUT}")
        data = _load_fsdd(Path(root), split, options, **kw)
    data.info["load_seconds"] = round(time.perf_counter() - t0, 2)
    return data


def _check_options(options: dict, allowed: set[str], source: str) -> None:
    bad = set(options) - allowed
    if bad:
        raise TypeError(f"load_kws({source!r}) got unexpected option(s) {sorted(bad)}; allowed: {sorted(allowed)}")


# ----------------------------------------------------------------------------------- embedded
def _load_embedded(options, *, seed, sizes, cache_dir, use_cache, fcfg, aug, progress) -> KWSData:
    from . import _espeak
    from .embedded import EMBEDDED_PRESETS, EMBEDDED_VERSION, EmbeddedConfig, generate_embedded

    _check_options(options, {"preset", "embedded_config"}, "embedded")
    preset = options.get("preset", "default")
    if preset not in EMBEDDED_PRESETS:
        raise ValueError(f"load_kws('embedded') preset must be one of {sorted(EMBEDDED_PRESETS)}, got {preset!r}")
    sizes = tuple(d if n is None else int(n) for n, d in zip(sizes, EMBEDDED_PRESETS[preset]))
    if min(sizes) < 0:
        raise ValueError(f"split sizes must be >= 0, got {sizes}")
    ecfg = options.get("embedded_config") or EmbeddedConfig()
    if not isinstance(ecfg, EmbeddedConfig):
        raise TypeError(f"load_kws('embedded') embedded_config must be an EmbeddedConfig, got {type(ecfg).__name__}")
    if not _espeak.available():
        raise ImportError("the embedded data set speaks the GSCD words with libespeak-ng from the PyPI package "
                          "'espeakng-loader' (pip install espeakng-loader), which is not importable here")
    spec = dict(source="embedded", version=EMBEDDED_VERSION, seed=seed, sizes=sizes, features=fcfg.as_dict(),
                embedded=ecfg.as_dict(), espeak=_espeak.version())
    key = _cache.cache_key(spec)
    entry = _cache.load_entry(cache_dir, key) if use_cache else None
    hit = entry is not None
    if entry is None:
        entry = generate_embedded(seed, sizes, fcfg, ecfg, progress=progress)
        if use_cache:
            _cache.save_entry(cache_dir, key, entry)
    info = dict(source="embedded", root=None, seed=seed, preset=preset, **entry["info"],
                cache=dict(dir=str(_cache.cache_root(cache_dir)) if use_cache else None, key=key, hit=hit))
    return _assemble(entry["splits"], GSCD_CLASSES, fcfg, aug, entry["noise_bank"], seed, info)


# --------------------------------------------------------------------------------------- GSCD
def _cached_features(cache_dir, use_cache, spec, compute):
    """``(entry, hit)``: ``compute()`` unless a cache entry for ``spec`` exists."""
    key = _cache.cache_key(spec)
    entry = _cache.load_entry(cache_dir, key) if use_cache else None
    if entry is not None:
        return entry, True, key
    entry = compute()
    if use_cache:
        _cache.save_entry(cache_dir, key, entry)
    return entry, False, key


def _gscd_speech(G, root: Path, idx: dict, name: str, rng: np.random.Generator, test_root,
                 silence_fraction: float, unknown_fraction: float | None) -> tuple[list, int]:
    """Split ``name``'s speech clips ``(path, relative path, label)`` and how many silence clips to add.

    ``test_root``: the official test set folder replaces the test split (no silence added);
    ``unknown_fraction``: keep that many "unknown" clips per keyword clip (None: all).
    """
    if name == "test" and test_root is not None:
        troot = Path(test_root).expanduser()
        return [(str(troot / r), r, lab) for r, lab in G.scan_gscd_testset(troot)], 0
    items = idx["splits"][name]
    if unknown_fraction is not None:
        unk = GSCD_CLASSES.index(UNKNOWN)
        kw_n = idx["keyword_counts"][name]
        u = [i for i, (_, lab) in enumerate(items) if lab == unk]
        keep_u = set(rng.permutation(u)[: G.silence_count(kw_n, float(unknown_fraction))].tolist())
        items = [it for i, it in enumerate(items) if it[1] != unk or i in keep_u]
    speech = [(str(root / r), r, lab) for r, lab in items]
    return speech, G.silence_count(idx["keyword_counts"][name], silence_fraction)


def _load_gscd(root: Path, options, *, seed, sizes, cache_dir, use_cache, fcfg, aug, progress) -> KWSData:
    from . import gscd as G

    _check_options(options, {"test_root", "silence_fraction", "unknown_fraction"}, "gscd")
    silence_fraction = _fraction(options.get("silence_fraction", 0.1), "silence_fraction")
    unknown_fraction = options.get("unknown_fraction")
    if unknown_fraction is not None:
        unknown_fraction = _fraction(unknown_fraction, "unknown_fraction")
    test_root = options.get("test_root")
    if test_root is not None and not isinstance(test_root, (str, os.PathLike)):
        raise TypeError(f"load_kws('gscd') test_root must be a folder path, got {test_root!r}")
    idx = G.scan_gscd(root)
    waves, bad_noise = G.noise_waves(idx["noise_files"], fcfg.sample_rate)
    if not waves:
        raise G.DataLayoutError(f"no readable WAV in {str(root / '_background_noise_')!r}.\n{G.GSCD_LAYOUT}")
    noise_id = [(p.name, p.stat().st_size) for p in idx["noise_files"]]
    parts, split_info, hits, keys, skipped_all = {}, {}, {}, {}, list(bad_noise)
    for code, name in enumerate(_SPLITS):
        rng = np.random.default_rng([seed, code, 12])
        speech, n_sil = _gscd_speech(G, root, idx, name, rng, test_root, silence_fraction, unknown_fraction)
        specs = G.silence_specs(rng, n_sil, waves, code, fcfg.n_samples)
        n_full = len(speech) + len(specs)
        keep = _subsample(n_full, sizes[code], rng)
        speech_keep = [speech[i] for i in keep if i < len(speech)]
        specs_keep = [specs[i - len(speech)] for i in keep if i >= len(speech)]
        spec = dict(source="gscd", split=name, features=fcfg.as_dict(),
                    files=_digest([(r, Path(p).stat().st_size if Path(p).exists() else -1) for p, r, _ in speech_keep]),
                    silence=_digest(specs_keep), noise=noise_id)

        def compute(speech_keep=speech_keep, specs_keep=specs_keep, code=code, name=name):
            feats, ok, skipped = extract_files([p for p, _, _ in speech_keep], fcfg, "start",
                                               progress=progress, desc=f"GSCD {name} log-Mel")
            _check_readable(ok, speech_keep[0][0] if speech_keep else "", root, name, G.GSCD_LAYOUT)
            labels = [lab for (_, _, lab), o in zip(speech_keep, ok) if o]
            source = [r for (_, r, _), o in zip(speech_keep, ok) if o]
            if specs_keep:
                sil = G.render_silence(specs_keep, waves, code, fcfg.n_samples)
                feats = torch.cat([feats, LogMel(fcfg)(sil).to(torch.float16)])
                labels += [GSCD_CLASSES.index(SILENCE)] * len(specs_keep)
                source += [f"silence:{idx['noise_files'][f].name}@{s}x{a}" for f, s, a in specs_keep]
            return dict(logmel=feats, labels=torch.as_tensor(labels, dtype=torch.int64), source=source,
                        skipped=skipped)

        entry, hit, key = _cached_features(cache_dir, use_cache, spec, compute)
        if hit:
            _warn_skipped(entry["skipped"], len(speech_keep), f"GSCD {name} (cached)")
        skipped_all += entry["skipped"]
        parts[name] = dict(logmel=entry["logmel"], labels=entry["labels"], source=entry["source"])
        hits[name], keys[name] = hit, key
        split_info[name] = dict(word_clips_full=len(speech), silence_clips_full=len(specs), kept=len(keep))
    bank = G.noise_bank(waves, fcfg) if aug is not None else None
    info = dict(
        source="gscd", root=str(root), test_root=None if test_root is None else str(test_root), seed=seed,
        silence_fraction=silence_fraction, unknown_fraction=unknown_fraction,
        silence_recipe="ceil(silence_fraction x keyword clips) 1-s windows of _background_noise_ per split, "
                       "files split in time 80/10/10 % train/val/test, amplitude U(0.05, 1)",
        words=idx["words"], split_sizes_full=split_info, noise_files=[n for n, _ in noise_id],
        skipped_files=len(skipped_all), skipped_examples=skipped_all[:5],
        cache=dict(dir=str(_cache.cache_root(cache_dir)) if use_cache else None, keys=keys, hit=hits),
    )
    return _assemble(parts, GSCD_CLASSES, fcfg, aug, bank, seed, info, sizes)


# --------------------------------------------------------------------------------------- FSDD
def _load_fsdd(root: Path, split: str, options, *, seed, sizes, cache_dir, use_cache, fcfg, aug, progress) -> KWSData:
    from . import fsdd as Fs
    from .embedded import synth_noise_bank

    _check_options(options, {"test_speakers", "val_speakers"}, "fsdd")
    folder, items = Fs.scan_fsdd(root)
    splits = Fs.split_fsdd(items, split, options.get("test_speakers"), options.get("val_speakers"))
    parts, hits, keys, skipped_all, full = {}, {}, {}, [], {}
    for code, name in enumerate(_SPLITS):
        its = splits[name]
        full[name] = len(its)
        keep = _subsample(len(its), sizes[code], np.random.default_rng([seed, code, 10]))
        its = [its[i] for i in keep]
        spec = dict(source="fsdd", features=fcfg.as_dict(),
                    files=_digest([(it["path"].name, it["path"].stat().st_size) for it in its]))

        def compute(its=its, name=name):
            feats, ok, skipped = extract_files([it["path"] for it in its], fcfg, "center",
                                               progress=progress, desc=f"FSDD {name} log-Mel")
            _check_readable(ok, its[0]["path"] if its else "", folder, name, Fs.FSDD_LAYOUT)
            kept = [it for it, o in zip(its, ok) if o]
            return dict(logmel=feats, labels=torch.as_tensor([it["digit"] for it in kept], dtype=torch.int64),
                        source=[it["path"].name for it in kept], speaker=[it["speaker"] for it in kept],
                        skipped=skipped)

        entry, hit, key = _cached_features(cache_dir, use_cache, spec, compute)
        if hit:
            _warn_skipped(entry["skipped"], len(its), f"FSDD {name} (cached)")
        skipped_all += entry["skipped"]
        parts[name] = {k: v for k, v in entry.items() if k != "skipped"}
        hits[name], keys[name] = hit, key
    # FSDD ships no noise recordings: augment with the embedded task's synthetic noise
    bank = synth_noise_bank(np.random.default_rng([seed, 99]), 300, 0.1, fcfg) if aug is not None else None
    speakers = {n: sorted(set(parts[n]["speaker"])) for n in _SPLITS}
    info = dict(
        source="fsdd", root=str(folder), seed=seed, split=split, speakers=speakers, split_sizes_full=full,
        split_rule=("takes 0-4 test, 5-9 validation, 10-49 train" if split == "conventional"
                    else "speaker-held-out"),
        skipped_files=len(skipped_all), skipped_examples=skipped_all[:5],
        cache=dict(dir=str(_cache.cache_root(cache_dir)) if use_cache else None, keys=keys, hit=hits),
    )
    return _assemble(parts, FSDD_CLASSES, fcfg, aug, bank, seed, info, sizes)
