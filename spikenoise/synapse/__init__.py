"""The synapse engine: quantized, noisy layers that read their weights from memory.

* :mod:`.base`: ``NoisySynapse`` (options, stored weights, draws: ``pin``/``release``), ``synapses``,
  ``new_inference``, ``configure``.
* :mod:`.layers`: ``NoisyLinear``, ``NoisyConv2d``, ``BinaryLinear``, ``BinaryConv2d``.
* :mod:`.sampling`: the per-spike samplers (exact, brute, gaussian) as functions.
* :mod:`.analog`: DAC, ADC, tiled matmul, input noise.
* :mod:`.tiled`: ``TiledLinear``, ``TiledConv2d`` and their ``AnalogOptions``.
* :mod:`.convert`: ``convert`` and ``tile`` (one layer walker), ``set_analog``.
* :mod:`.chips`: ``programmed`` chips, range calibration, ``box_stats``, seed-003 ``level_settings``.
* :mod:`.faults`: bias and activation bit flips, ``requantize``.

Import order inside: base -> sampling -> layers -> analog -> tiled -> convert -> chips; faults
needs base only. Nothing here imports training, evaluation, models or studies.
"""
from .analog import ADC_RANGE, ARRAY, InputNoise, adc, array_count, dac, tiled_matmul
from .base import DRAWS, ERRORS, READS, SAMPLERS, NoisySynapse, configure, new_inference, synapses
from .chips import (LEVELS, box_stats, calibrate_adc_ranges, calibrate_input_ranges, fill_range, level_settings,
                    programmed)
from .convert import analog_layers, convert, set_analog, tile
from .faults import (BiasFlips, FlipActivations, activation_flips, calibrate_activations, insert_activation_flips,
                     requantize, set_activation_flips)
from .layers import BinaryConv2d, BinaryLinear, NoisyConv2d, NoisyLinear
from .tiled import ANALOG_OPTIONS, AnalogOptions, AnalogSynapse, TiledConv2d, TiledLinear

__all__ = ["NoisySynapse", "NoisyLinear", "NoisyConv2d", "BinaryLinear", "BinaryConv2d", "convert", "configure",
           "new_inference", "synapses", "ERRORS", "READS", "SAMPLERS", "DRAWS",
           "TiledLinear", "TiledConv2d", "AnalogSynapse", "AnalogOptions", "ANALOG_OPTIONS", "InputNoise", "ARRAY",
           "ADC_RANGE", "adc", "dac", "tiled_matmul", "array_count", "tile", "set_analog", "analog_layers",
           "programmed", "fill_range", "calibrate_input_ranges", "calibrate_adc_ranges", "box_stats",
           "level_settings", "LEVELS", "BiasFlips", "requantize", "FlipActivations", "insert_activation_flips",
           "set_activation_flips", "calibrate_activations", "activation_flips"]
