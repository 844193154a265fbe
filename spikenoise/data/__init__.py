"""Keyword-spotting data: 67 x 40 log-Mel features (paper 000, section II.A) from three sources.

* ``load_kws("embedded")``: the default, needs no download. The 35 GSCD v2 words spoken by 60
  espeak-ng "speakers" with speaker-like transforms and noise, 12 GSCD classes, deterministic per
  seed (``embedded.py``).
* ``load_kws("gscd", root=...)``: Google Speech Commands v2 from a local folder (``gscd.py``).
* ``load_kws("fsdd", root=...)``: Free Spoken Digit Dataset, 10 digit classes (``fsdd.py``).

``make_loaders(data)`` gives seeded train / val / test DataLoaders; training batches are augmented
on the fly (time shift, background noise, time / frequency masks; ``dataset.py``).
"""
from .classes import FSDD_CLASSES, GSCD_CLASSES, GSCD_KEYWORDS, GSCD_OTHER_WORDS, SILENCE, UNKNOWN
from .core import SOURCES, KWSData, load_kws
from .dataset import AugmentConfig, EpochSampler, KWSDataset, make_loaders
from .embedded import EMBEDDED_PRESETS, EmbeddedConfig
from .errors import DataLayoutError
from .features import FeatureConfig, LogMel, normalize, read_wav

__all__ = [
    "load_kws", "KWSData", "make_loaders", "GSCD_CLASSES", "GSCD_KEYWORDS", "GSCD_OTHER_WORDS", "FSDD_CLASSES",
    "SILENCE", "UNKNOWN", "SOURCES", "AugmentConfig", "FeatureConfig", "EmbeddedConfig", "EMBEDDED_PRESETS",
    "KWSDataset", "EpochSampler", "DataLayoutError", "LogMel", "normalize", "read_wav",
]
