"""Error models, one file each; all implement :class:`~spikenoise.noise.base.ErrorModel`.

* :mod:`.nvm`: ``MultiLevelNVM``, multi-level cells with Gaussian read variability (seed 000).
* :mod:`.bitflip`: ``BitFlip``, flips on the bit representation of float/int8 weights (seed 001).
* :mod:`.binary`: ``binary_weights(ber)``, +-1 weights with bit errors as 2-level cells (seed 002).
* :mod:`.drift`: ``DriftingPCM``, multi-level PCM pairs with programming noise, drift and read noise over time.
* :mod:`.analog`: ``GaussianVariation``, ``DifferentialCells``, programming variation (seeds 003/004).

Importing this package registers every kind, so ``error_model_from_config`` and
``load_state_dict`` know them all. A new device model is one new file here (a subclass of
``ErrorModel`` with a ``kind``, ``quantize``, ``read``, ``config``, ``from_config``; ``cells`` /
``draw_errors`` if its cells err one by one) plus one import line below, which registers it.
"""
from .analog import DifferentialCells, GaussianVariation
from .base import DiscreteLevels, ErrorModel, check_probability, error_model_from_config
from .binary import binary_weights
from .bitflip import BitFlip
from .drift import AIHWKIT_PCM, DriftingPCM, PCMParams
from .nvm import NOISE_LEVEL_P0, MultiLevelNVM

__all__ = ["ErrorModel", "DiscreteLevels", "error_model_from_config", "check_probability",
           "MultiLevelNVM", "NOISE_LEVEL_P0", "BitFlip", "binary_weights", "GaussianVariation",
           "DifferentialCells", "DriftingPCM", "PCMParams", "AIHWKIT_PCM"]
