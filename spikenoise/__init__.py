"""spikenoise: spiking and non-spiking networks with synaptic weights in noisy NVM.

The public API, in one place::

    import spikenoise as sn
    nvm = sn.MultiLevelNVM.noise_level(2)               # 8 levels, -4..+3, p0(-1) = 0.50
    net = sn.convert(my_snn, nvm, errors="dynamic", reads="spike")
    sn.new_inference(net)                               # static draws are per inference
"""
from .version import __version__

from .noise import (AIHWKIT_PCM, BitFlip, DifferentialCells, DiscreteLevels, DriftingPCM, ErrorModel,
                    GaussianVariation, MultiLevelNVM, NOISE_LEVEL_P0, PCMParams, binary_weights,
                    error_model_from_config)
from .results import ResultStore, mean_ci
from .synapse import (DRAWS, ERRORS, READS, SAMPLERS, NoisyConv2d, NoisyLinear, NoisySynapse, configure, convert,
                      new_inference, synapses)

__all__ = [
    "__version__", "ErrorModel", "DiscreteLevels", "MultiLevelNVM", "NOISE_LEVEL_P0", "error_model_from_config",
    "BitFlip", "binary_weights", "GaussianVariation", "DifferentialCells", "DriftingPCM", "PCMParams", "AIHWKIT_PCM",
    "NoisyLinear", "NoisyConv2d", "NoisySynapse", "convert", "configure", "new_inference", "synapses",
    "ERRORS", "READS", "SAMPLERS", "DRAWS", "ResultStore", "mean_ci",
]
