"""The package version, in one place (read by ``spikenoise.__version__`` and the result files)."""
__version__ = "0.1.0"
