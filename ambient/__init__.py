"""ambient: a background service for thinking with a base language model."""

__version__ = "0.1.0"
