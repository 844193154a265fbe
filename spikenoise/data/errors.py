"""Errors raised by the data layer."""
from __future__ import annotations

__all__ = ["DataLayoutError"]


class DataLayoutError(FileNotFoundError):
    """A data folder is missing or not in the expected layout; the message shows the layout."""
