"""What an export folder holds: its format name, schema version, file names and limits.

Shared by the writer and the reader, so the two can never disagree on a file name.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

__all__ = [
    "ARCHITECTURE_FILE",
    "EXPORT_FORMAT",
    "EXPORT_SCHEMA_VERSION",
    "GRAPHML_FILE",
    "MAX_JSON_BYTES",
    "ONNX_FILE",
    "PICTURE_STEM",
    "PREPROCESSING_SCHEMA_VERSION",
    "WEIGHTS_FILE",
    "sha256_file",
]

EXPORT_FORMAT = "mtlsearch.export"
EXPORT_SCHEMA_VERSION = 2
# Version 2 adds the optional "preprocessing" and "input_normalization" fields. A folder without
# them is still written as version 1 (every reader reads it); one with them is version 2, so an
# older mtlsearch refuses it with "upgrade" rather than predicting on unprepared inputs.
PREPROCESSING_SCHEMA_VERSION = 2
MAX_JSON_BYTES = 50 * 1024 * 1024  # an architecture is kilobytes; refuse to parse a huge file

ARCHITECTURE_FILE = "architecture.json"
WEIGHTS_FILE = "weights.safetensors"
GRAPHML_FILE = "architecture.graphml"
PICTURE_STEM = "architecture"
ONNX_FILE = "model.onnx"
ONNX_INPUT = "input"
ONNX_ATOL = 1e-4
ONNX_RTOL = 1e-3


def sha256_file(path: Path) -> str:
    """The SHA-256 of a file's bytes, read in 1 MiB chunks (weights can be large)."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
