"""zeroimage: container images for single-binary programs, without Docker."""

__version__ = "0.1.0"
