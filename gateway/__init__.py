"""ANSS inter-administration data gateway."""

__version__ = "0.1.0"
