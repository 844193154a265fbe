"""Free Spoken Digit Dataset (FSDD): real speech, 10 classes (digits "zero" .. "nine").

Files ``{digit}_{speaker}_{take}.wav`` at 8 kHz are resampled to 16 kHz and centered in a 1-s
window (padded, or cropped around the middle for the 0.7 % longer than 1 s), then get the same
67 x 40 features as GSCD. There is no silence / unknown class.

Splits:

* ``"conventional"``: takes 0-4 of every speaker and digit are the test set (as distributed),
  takes 5-9 the validation set, takes 10-49 training: 300 / 300 / 2400 clips.
* ``"speaker"``: speaker-held-out, default test speaker ``theo``, validation ``jackson``, the other
  four train (500 / 500 / 2000 clips); choose with ``test_speakers=`` / ``val_speakers=``.
"""
from __future__ import annotations

import re
from pathlib import Path

from .errors import DataLayoutError

__all__ = ["FSDD_LAYOUT", "scan_fsdd", "split_fsdd", "FSDD_PATTERN"]

FSDD_PATTERN = re.compile(r"^(\d)_([A-Za-z0-9-]+)_(\d+)\.wav$")
FSDD_LAYOUT = """Expected the Free Spoken Digit Dataset layout:
  ROOT/recordings/{digit}_{speaker}_{take}.wav   (or ROOT itself holding those files)
  e.g. 0_george_0.wav ... 9_yweweler_49.wav, mono 8-kHz WAV"""

DEFAULT_TEST_SPEAKERS = ("theo",)
DEFAULT_VAL_SPEAKERS = ("jackson",)


def scan_fsdd(root: str | Path) -> tuple[Path, list[dict]]:
    """``(folder with the WAVs, [{"path", "digit", "speaker", "take"}])`` sorted by file name."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataLayoutError(f"FSDD folder {str(root)!r} does not exist or is not a folder.\n{FSDD_LAYOUT}")
    folder = root / "recordings" if (root / "recordings").is_dir() else root
    items = []
    for p in sorted(folder.iterdir()):
        m = FSDD_PATTERN.match(p.name)
        if m and p.is_file():
            items.append(dict(path=p, digit=int(m.group(1)), speaker=m.group(2), take=int(m.group(3))))
    if not items:
        raise DataLayoutError(f"no '{{digit}}_{{speaker}}_{{take}}.wav' file in {str(folder)!r}.\n{FSDD_LAYOUT}")
    missing = sorted(set(range(10)) - {it["digit"] for it in items})
    if missing:
        raise DataLayoutError(f"FSDD folder {str(folder)!r} has no file of digit(s) {missing}, so their classes "
                              f"would have no clips.\n{FSDD_LAYOUT}")
    return folder, items


def _speakers(v, name: str) -> tuple[str, ...] | None:
    """A speaker name or a collection of names (a lone string is one speaker, not its letters)."""
    if v is None:
        return None
    if isinstance(v, str):
        return (v,)
    try:
        names = tuple(v)
    except TypeError:
        raise TypeError(f"load_kws('fsdd') {name} must be a speaker name or a list of names, got {v!r}") from None
    bad = [s for s in names if not isinstance(s, str)]
    if bad or not names:
        raise ValueError(f"load_kws('fsdd') {name} must be a non-empty list of speaker names, got {v!r}")
    return names


def split_fsdd(
    items: list[dict], split: str = "conventional", test_speakers=None, val_speakers=None
) -> dict[str, list[dict]]:
    """Assign items to ``train`` / ``val`` / ``test`` (see module docstring)."""
    out: dict[str, list[dict]] = {"train": [], "val": [], "test": []}
    test_speakers = _speakers(test_speakers, "test_speakers")
    val_speakers = _speakers(val_speakers, "val_speakers")
    if split == "conventional":
        if test_speakers or val_speakers:
            raise ValueError("test_speakers / val_speakers apply to split='speaker' only")
        for it in items:
            out["test" if it["take"] < 5 else ("val" if it["take"] < 10 else "train")].append(it)
    elif split == "speaker":
        speakers = sorted({it["speaker"] for it in items})
        test = set(test_speakers or DEFAULT_TEST_SPEAKERS)
        val = set(val_speakers or DEFAULT_VAL_SPEAKERS)
        unknown = (test | val) - set(speakers)
        if unknown:
            raise ValueError(f"test_speakers/val_speakers: speaker(s) {sorted(unknown)} not in FSDD folder; "
                             f"it has {speakers}")
        if test & val:
            raise ValueError(f"speaker(s) {sorted(test & val)} are in both test_speakers and val_speakers")
        for it in items:
            s = it["speaker"]
            out["test" if s in test else ("val" if s in val else "train")].append(it)
        if not out["train"]:
            raise ValueError("speaker split leaves no training speaker")
    else:
        raise ValueError(f"FSDD split must be 'conventional' or 'speaker', got {split!r}")
    return out
