"""Export: a trained model to a folder of plain data, loaded back without unpickling.

An export folder is plain data: ``architecture.json`` (the sharing graph with its search space
and task specs, shapes and a checksum of the weights), ``weights.safetensors``, pictures
(``architecture.png`` / ``.svg``), ``architecture.graphml`` and, on request, ``model.onnx``.
Loading never unpickles anything: it reads JSON and safetensors only, rebuilds the search space
from the registry and checks every file before trusting it.

Example:
    >>> import tempfile, torch
    >>> from mtlsearch import SharingGraph, TaskSpec, create_space, materialize
    >>> space = create_space("mlp", input_shape=(8,), widths=(16, 16))
    >>> model = materialize(SharingGraph.hard_sharing(["a", "b"], 2), space,
    ...                     [TaskSpec("a"), TaskSpec("b")])
    >>> folder = export_model(model, tempfile.mkdtemp() + "/run", picture=False)
    >>> again = load(folder)
    >>> sorted(predict(again, torch.zeros(3, 8)))
    ['a', 'b']

``write`` writes a folder (:func:`export_model`), ``read`` loads it back (:func:`load`,
:func:`read_architecture`), ``predict_files`` predicts from ``.npz`` files
(:func:`predict_npz`; outputs written by :func:`write_npz`) and ``format`` names the files.
:func:`predict` itself lives in ``mtlsearch.engine.predict`` (it needs a model, not a
folder) and is re-exported here. This subpackage may import ``tasks``, ``data``, ``graph``,
``engine``, ``viz`` and the base modules; only ``study``, the CLI and the package root import it.
"""

from __future__ import annotations

from mtlsearch.engine.predict import predict
from mtlsearch.export.format import (
    ARCHITECTURE_FILE,
    EXPORT_FORMAT,
    EXPORT_SCHEMA_VERSION,
    MAX_JSON_BYTES,
    WEIGHTS_FILE,
)
from mtlsearch.export.predict_files import PredictionResult, predict_files, predict_npz, write_npz
from mtlsearch.export.read import load, read_architecture
from mtlsearch.export.write import export_model

__all__ = [
    "ARCHITECTURE_FILE",
    "EXPORT_FORMAT",
    "EXPORT_SCHEMA_VERSION",
    "MAX_JSON_BYTES",
    "PredictionResult",
    "WEIGHTS_FILE",
    "export_model",
    "load",
    "predict",
    "predict_files",
    "predict_npz",
    "read_architecture",
    "write_npz",
]
