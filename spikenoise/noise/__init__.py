"""Error models: one file each. All implement :class:`~spikenoise.noise.base.ErrorModel`."""
from .base import DiscreteLevels, ErrorModel, check_probability, error_model_from_config
from .nvm import NOISE_LEVEL_P0, MultiLevelNVM

__all__ = ["ErrorModel", "DiscreteLevels", "error_model_from_config", "check_probability",
           "MultiLevelNVM", "NOISE_LEVEL_P0"]
