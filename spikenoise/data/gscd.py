"""Google Speech Commands v2 (GSCD) from a local folder, as the 12-class task of paper 000.

* Labels: the 10 keywords, ``unknown`` = any other word folder (25 words in v2), ``silence``.
* Splits: ``validation_list.txt`` / ``testing_list.txt`` as distributed, everything else is
  training. With the full v2 set that gives 84,843 / 9,981 / 11,005 word clips (the paper's 84,843
  and 9,981); passing ``test_root`` = the separately distributed 12-class test set
  (``speech_commands_test_set_v0.02``) gives the paper's 4,890 test clips instead.
* Silence: as the TensorFlow ``speech_commands`` recipe, ``silence_fraction`` (10 %) of the
  split's keyword-clip count is added as silence clips, here cut as random 1-s windows from
  ``_background_noise_`` (amplitude ``U(0.05, 1)``). Each noise file is divided in time
  80/10/10 % between train/val/test so no noise excerpt is shared between splits; the training
  part also feeds the background-noise augmentation. That is about one keyword class's worth of
  silence per split (full v2: ~3.1k / ~370 / ~410 clips; exact counts go to ``info``).
* Unknown: all clips of the other words are kept by default (the paper's sizes); the TF recipe's
  10 % is ``unknown_fraction=0.1``.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from .classes import GSCD_CLASSES, GSCD_KEYWORDS, SILENCE, UNKNOWN
from .errors import DataLayoutError
from .features import FeatureConfig, LogMel, read_wav

__all__ = ["GSCD_LAYOUT", "GSCD_TEST_LAYOUT", "scan_gscd", "scan_gscd_testset", "silence_specs", "noise_waves",
           "noise_bank", "render_silence", "SPLIT_NAMES"]

SPLIT_NAMES = ("train", "val", "test")
# time fraction of every background-noise file given to train / val / test
NOISE_SPLIT = (0.0, 0.8, 0.9, 1.0)

GSCD_LAYOUT = """Expected the Google Speech Commands v2 layout (speech_commands_v0.02.tar.gz unpacked):
  ROOT/
    yes/ no/ up/ down/ left/ right/ on/ off/ stop/ go/   one folder of 16-kHz WAVs per word (required)
    bed/ bird/ cat/ ... (the other words; they form the 'unknown' class)
    validation_list.txt    relative paths such as 'yes/0a7c2a8d_nohash_0.wav', one per line
    testing_list.txt
    _background_noise_/*.wav   long noise recordings, silence clips are cut from them"""

GSCD_TEST_LAYOUT = """Expected the GSCD v2 12-class test set layout (speech_commands_test_set_v0.02):
  TEST_ROOT/
    yes/ no/ up/ down/ left/ right/ on/ off/ stop/ go/ _silence_/ _unknown_/   WAV files"""


def _wavs(d: Path) -> list[Path]:
    return sorted(p for p in d.iterdir() if p.suffix.lower() == ".wav" and p.is_file())


def _read_list(p: Path) -> set[str]:
    return {ln.strip().replace("\\", "/") for ln in p.read_text().splitlines() if ln.strip()}


def scan_gscd(root: str | Path) -> dict:
    """Index a GSCD v2 folder.

    Returns ``{"splits": {name: [(relpath, label), ...]}, "noise_files": [Path], "words": [str],
    "keyword_counts": {name: int}}``; raises :class:`DataLayoutError` when the layout is wrong.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataLayoutError(f"GSCD folder {str(root)!r} does not exist or is not a folder.\n{GSCD_LAYOUT}")
    missing = [n for n in ("validation_list.txt", "testing_list.txt") if not (root / n).is_file()]
    missing += [k + "/" for k in GSCD_KEYWORDS if not (root / k).is_dir()]
    if not (root / "_background_noise_").is_dir():
        missing.append("_background_noise_/")
    if missing:
        raise DataLayoutError(f"GSCD folder {str(root)!r} lacks {', '.join(missing)}.\n{GSCD_LAYOUT}")
    val_set = _read_list(root / "validation_list.txt")
    test_set = _read_list(root / "testing_list.txt")
    words = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith(("_", ".")))
    splits: dict[str, list] = {n: [] for n in SPLIT_NAMES}
    kw_counts = dict.fromkeys(SPLIT_NAMES, 0)
    label_of = {w: i for i, w in enumerate(GSCD_CLASSES)}
    for w in words:
        label = label_of[w] if w in GSCD_KEYWORDS else label_of[UNKNOWN]
        for p in _wavs(root / w):
            rel = f"{w}/{p.name}"
            name = "val" if rel in val_set else ("test" if rel in test_set else "train")
            splits[name].append((rel, label))
            kw_counts[name] += w in GSCD_KEYWORDS
    empty = [k + "/" for k in GSCD_KEYWORDS if not _wavs(root / k)]
    if empty:
        raise DataLayoutError(f"GSCD folder {str(root)!r}: keyword folder(s) {', '.join(empty)} hold no WAV file, "
                              f"so their classes would have no clips.\n{GSCD_LAYOUT}")
    noise_files = _wavs(root / "_background_noise_")
    if not noise_files:
        raise DataLayoutError(f"{str(root / '_background_noise_')!r} holds no WAV file.\n{GSCD_LAYOUT}")
    return dict(splits=splits, noise_files=noise_files, words=words, keyword_counts=kw_counts)


def scan_gscd_testset(test_root: str | Path) -> list[tuple[str, int]]:
    """Index the official 12-class test set: ``[(relpath, label)]``."""
    root = Path(test_root).expanduser()
    folder = {c: c for c in GSCD_KEYWORDS} | {SILENCE: "_silence_", UNKNOWN: "_unknown_"}
    missing = [f + "/" for f in folder.values() if not (root / f).is_dir()] if root.is_dir() else ["the folder itself"]
    if missing:
        raise DataLayoutError(f"GSCD test set {str(root)!r} lacks {', '.join(missing)}.\n{GSCD_TEST_LAYOUT}")
    items = []
    for label, c in enumerate(GSCD_CLASSES):
        items += [(f"{folder[c]}/{p.name}", label) for p in _wavs(root / folder[c])]
    return items


def noise_waves(noise_files: list[Path], sample_rate: int) -> tuple[list[np.ndarray], list[str]]:
    """Background-noise recordings (float32 at ``sample_rate``) and the unreadable ones."""
    waves, names, bad = [], [], []
    for p in noise_files:
        x = read_wav(p, sample_rate)
        if x is None:
            bad.append(str(p))
        else:
            waves.append(x)
            names.append(p.name)
    return waves, bad


def _region(x: np.ndarray, split: int) -> np.ndarray:
    a, b = NOISE_SPLIT[split], NOISE_SPLIT[split + 1]
    return x[int(a * len(x)) : int(b * len(x))]


def _window(x: np.ndarray, start: int, n: int) -> np.ndarray:
    if len(x) >= n:
        return x[start : start + n]
    return np.resize(x, n) if len(x) else np.zeros(n, np.float32)  # tiny files: tile


def silence_specs(rng: np.random.Generator, count: int, waves: list[np.ndarray], split: int, n: int) -> list[tuple]:
    """``count`` silence clips as ``(file index, start sample, amplitude)`` within the split's region."""
    specs = []
    for _ in range(count):
        f = int(rng.integers(len(waves)))
        L = len(_region(waves[f], split))
        start = int(rng.integers(0, max(1, L - n + 1)))
        specs.append((f, start, round(float(rng.uniform(0.05, 1.0)), 6)))
    return specs


def render_silence(specs: list[tuple], waves: list[np.ndarray], split: int, n: int) -> np.ndarray:
    """Waveforms [len(specs), n] float32 of the silence clips."""
    out = np.zeros((len(specs), n), np.float32)
    for i, (f, start, amp) in enumerate(specs):
        out[i] = amp * _window(_region(waves[f], split), start, n)
    return out


def noise_bank(waves: list[np.ndarray], cfg: FeatureConfig, hop_s: float = 0.5) -> torch.Tensor:
    """Log-Mel [M, T, F] float16 of 1-s windows (hop ``hop_s``) of the training part of each file."""
    n, hop = cfg.n_samples, int(hop_s * cfg.sample_rate)
    segs = []
    for x in waves:
        r = _region(x, 0)
        starts = range(0, max(1, len(r) - n + 1), hop)
        segs += [_window(r, s, n) for s in starts]
    if not segs:
        return torch.zeros((0, *cfg.shape), dtype=torch.float16)
    lm = LogMel(cfg)
    return torch.cat([lm(np.stack(segs[i : i + 512])) for i in range(0, len(segs), 512)]).to(torch.float16)


def silence_count(n_keyword: int, fraction: float) -> int:
    """``ceil(n_keyword x fraction)``, immune to float noise (0.1 x 30 = 3.0000000000000004)."""
    return int(math.ceil(round(n_keyword * fraction, 9)))
