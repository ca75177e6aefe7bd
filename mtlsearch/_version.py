"""The package version, in one place (the root, the exporter and studies record it)."""

__version__ = "0.1.0"
