"""Write a trained multi-task model to a folder: architecture, weights, pictures, ONNX.

The folder is plain data (see :mod:`mtlsearch.export`); it is written to a hidden temporary
folder beside the destination and renamed into place, so an interrupted export leaves
nothing half-written. Every file is created like any other file of the user (mode 0666 less
the umask, so usually readable by the group and others, as the folder is): the weights too.
Task names only ever appear inside files (JSON strings, safetensors keys, ONNX output names,
picture labels drawn without math parsing), never as paths or keyword arguments.
"""

from __future__ import annotations

import copy
import json
import math
import shutil
import uuid
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from mtlsearch._version import __version__
from mtlsearch.engine.model import MultiTaskModel
from mtlsearch.errors import ExportError
from mtlsearch.export.format import (
    ARCHITECTURE_FILE,
    EXPORT_FORMAT,
    GRAPHML_FILE,
    ONNX_ATOL,
    ONNX_FILE,
    ONNX_INPUT,
    ONNX_RTOL,
    PICTURE_STEM,
    PREPROCESSING_SCHEMA_VERSION,
    WEIGHTS_FILE,
    sha256_file,
)
from mtlsearch.graph.sharing import SharingGraph

__all__ = ["export_model"]


# ---------------------------------------------------------------------------------- export
def export_model(
    model: MultiTaskModel,
    folder: str | Path,
    *,
    metrics: dict[str, Any] | None = None,
    info: dict[str, Any] | None = None,
    onnx: bool = False,
    picture: bool = True,
    preprocessing: Any = None,
) -> Path:
    """Write ``model`` to ``folder``: architecture, weights, pictures and (optionally) ONNX.

    Everything is written to a hidden temporary folder next to ``folder`` and renamed into
    place at the end, so a crash never leaves a half-written folder that looks complete. An
    existing export in ``folder`` is replaced; a folder holding anything else is refused.

    Args:
        model: A materialized (usually trained) model.
        folder: Destination folder (created; its parent must be writable).
        metrics: JSON-ready metrics to record (e.g. ``{"val": {...}, "test": {...}}``).
        info: Free-form facts (strategy, seed, data set, ...); values JSON cannot hold are
            recorded as their ``str()``.
        onnx: Also write ``model.onnx`` (raw outputs per task, dynamic batch axis) and check
            it against PyTorch with onnxruntime.
        picture: Draw ``architecture.png`` and ``architecture.svg``.
        preprocessing: How the training inputs were prepared (a
            :class:`~mtlsearch.data.preprocess.Preprocessing` or its ``to_dict()``; usually
            ``splits.preprocessing``), recorded so that :func:`~mtlsearch.export.load` gives it
            back as ``model.preprocessing`` and ``predict`` on files applies it (without
            augmentation). ``None``: the model's own ``preprocessing`` attribute (set by
            ``load``), if any. The search space's ``input_normalization`` (a pretrained
            backbone's mean/std, applied inside the network) is recorded too, for information.

    Returns:
        The export folder.

    Raises:
        ExportError: ``folder`` holds something that is not an export, ``metrics``/``info``
            are not JSON-ready, or the ONNX model disagrees with PyTorch.

    Example:
        >>> export_model(model, "runs/best", metrics={"val": {"a": {"accuracy": 0.9}}})  # doctest: +SKIP
        PosixPath('runs/best')
    """
    if not isinstance(model, MultiTaskModel):
        raise ExportError(f"export_model needs a MultiTaskModel, got {type(model).__name__}")
    folder = Path(folder)
    _check_destination(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.parent / f".{folder.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        graph = _graph_with_meta(model)
        record = {
            "format": EXPORT_FORMAT,
            "schema_version": 1,  # raised by the fields that need a later version
            "mtlsearch_version": _version(),
            "graph": _jsonable(graph.to_dict(), "graph", strict=False),
            "weights": _write_weights(model, tmp / WEIGHTS_FILE),
            "input_shape": list(model.space.input_shape),
            "metrics": _jsonable(metrics or {}, "metrics"),
            "info": _jsonable(info or {}, "info", strict=False),
            "training": _jsonable(dict(getattr(model, "train_info", None) or {}), "training",
                                  strict=False),
        }
        _record_preprocessing(record, model, preprocessing)
        graph.write_graphml(tmp / GRAPHML_FILE)
        if picture:
            _write_picture(graph, tmp / PICTURE_STEM)
        if onnx:
            record["onnx"] = _write_onnx(model, tmp / ONNX_FILE)
        # architecture.json last: a folder without it is never taken for an export.
        (tmp / ARCHITECTURE_FILE).write_text(json.dumps(record, indent=1, allow_nan=False))
        _move_into_place(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def _record_preprocessing(record: dict[str, Any], model: MultiTaskModel, preprocessing: Any) -> None:
    """Add the ``preprocessing`` and ``input_normalization`` fields (schema version 2)."""
    from mtlsearch.data.preprocess import Preprocessing
    from mtlsearch.errors import MTLSearchError

    if preprocessing is None:
        preprocessing = getattr(model, "preprocessing", None)
    if preprocessing is not None:
        try:
            if not isinstance(preprocessing, Preprocessing):
                preprocessing = Preprocessing.from_dict(preprocessing)
        except MTLSearchError as exc:
            raise ExportError(f"cannot record the preprocessing: {exc}") from None
        record["preprocessing"] = _jsonable(preprocessing.to_dict(), "preprocessing")
    norm = _input_normalization(model.space)
    if norm is not None:
        record["input_normalization"] = norm
    if "preprocessing" in record or "input_normalization" in record:
        record["schema_version"] = max(record["schema_version"], PREPROCESSING_SCHEMA_VERSION)


def _input_normalization(space: Any) -> dict[str, list[float]] | None:
    """The space's ``input_normalization`` ``(mean, std)`` as ``{"mean": [...], "std": [...]}``."""
    norm = getattr(space, "input_normalization", None)
    if norm is None:
        return None
    if isinstance(norm, Mapping):
        mean, std = norm.get("mean"), norm.get("std")
    else:
        mean, std = norm
    mean = [float(v) for v in np.asarray(mean, dtype=np.float64).reshape(-1)]
    std = [float(v) for v in np.asarray(std, dtype=np.float64).reshape(-1)]
    if not all(math.isfinite(v) for v in mean + std):
        raise ExportError(f"the search space's input_normalization is not finite ({mean}, {std})")
    return {"mean": mean, "std": std}


def _check_destination(folder: Path) -> None:
    if folder.exists() and not folder.is_dir():
        raise ExportError(f"cannot export to {folder}: it is a file; choose a folder path")
    if folder.is_dir() and any(folder.iterdir()) and not (folder / ARCHITECTURE_FILE).is_file():
        raise ExportError(
            f"cannot export to {folder}: the folder is not empty and holds no {ARCHITECTURE_FILE}, "
            "so it is not an earlier export; choose a new or empty folder"
        )


def _move_into_place(tmp: Path, folder: Path) -> None:
    old = None
    if folder.exists():  # an earlier export (checked above): keep it until the new one is in
        old = folder.parent / f".{folder.name}.old-{uuid.uuid4().hex[:8]}"
        folder.rename(old)
    tmp.rename(folder)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _graph_with_meta(model: MultiTaskModel) -> SharingGraph:
    """A copy of the model's graph that records the space and task specs its weights need."""
    graph = model.graph.copy()
    # The weights were built from the model's space and specs, so those are recorded even when
    # the graph carries its own (a graph reused from another context may disagree).
    graph.space = model.space.spec()
    graph.task_specs = [spec.to_dict() for spec in model.task_specs]
    name = graph.space["name"]
    from mtlsearch.registry import spaces

    if name not in spaces():
        warnings.warn(
            f"search space {name!r} is not registered: the export can be loaded only with "
            "load(folder, space=...) passing the same space",
            stacklevel=3,
        )
    return graph


def _version() -> str:
    return __version__


def _jsonable(value: Any, where: str, *, strict: bool = True) -> Any:
    """``value`` with numpy/torch values, tuples and sets made JSON-ready; NaN/inf become null.

    Anything else is an :class:`ExportError` when ``strict``, else its ``str()`` (free-form
    facts should not make an export fail).
    """
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v, f"{where}.{k}", strict=strict) for k, v in value.items()}
    if isinstance(value, (set, frozenset)):
        value = sorted(value, key=str)
    if isinstance(value, (list, tuple)):
        return [_jsonable(v, f"{where}[{i}]", strict=strict) for i, v in enumerate(value)]
    if isinstance(value, (np.ndarray, np.generic, Tensor)):
        value = value.tolist()
        if isinstance(value, list):
            return _jsonable(value, where, strict=strict)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, Path) or not strict:
        return str(value)
    raise ExportError(
        f"{where} is a {type(value).__name__}, which JSON cannot hold; pass numbers, strings, "
        "lists and dictionaries"
    )


def _write_weights(model: MultiTaskModel, path: Path) -> dict[str, Any]:
    import hashlib

    from safetensors.torch import save

    tensors: dict[str, Tensor] = {}
    seen: set[int] = set()
    for name, tensor in model.state_dict().items():
        t = tensor.detach().to("cpu").contiguous()
        ptr = t.untyped_storage().data_ptr()
        if ptr in seen:  # safetensors refuses tensors that share memory (tied weights)
            t = t.clone()
        seen.add(t.untyped_storage().data_ptr())
        tensors[name] = t
    # save() and an ordinary open(): safetensors' save_file creates the file mode 0600,
    # unreadable to the people the folder is shared with; open() follows the umask.
    data = save(tensors, metadata={"format": EXPORT_FORMAT})
    with path.open("wb") as fh:
        fh.write(data)
    return {
        "file": WEIGHTS_FILE,
        "sha256": hashlib.sha256(data).hexdigest(),
        "tensors": {name: list(t.shape) for name, t in tensors.items()},
    }


def _write_picture(graph: SharingGraph, stem: Path) -> None:
    import matplotlib  # imported only when drawing

    from mtlsearch.viz import draw_architecture

    # Task names are labels, not math: "a$^$b" would otherwise fail mathtext parsing.
    with matplotlib.rc_context({"text.parse_math": False}):
        draw_architecture(graph, stem)


class _OnnxWrapper(nn.Module):
    """Returns the model's outputs as a tuple in task order (ONNX has no dict outputs)."""

    def __init__(self, model: MultiTaskModel):
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        out = self.model(x)
        return tuple(out[t] for t in self.model.tasks)


def _write_onnx(model: MultiTaskModel, path: Path) -> dict[str, Any]:
    """Export to ONNX and check onnxruntime agrees with PyTorch on a fresh batch size."""
    try:
        import onnxruntime
    except ImportError:
        raise ExportError(
            "ONNX export needs onnx and onnxruntime; install them with "
            "pip install 'mtlsearch[onnx]'"
        ) from None
    was_training = model.training
    on_cpu = all(p.device.type == "cpu" for p in model.parameters())
    cpu_model = model if on_cpu else copy.deepcopy(model).to("cpu")
    wrapper = _OnnxWrapper(cpu_model).eval()
    try:
        generator = torch.Generator().manual_seed(0)
        example = torch.randn(2, *model.space.input_shape, generator=generator)
        _onnx_export(wrapper, example, path, model.tasks)
        # A batch size other than the traced one catches an axis that did not stay dynamic.
        check = torch.randn(3, *model.space.input_shape, generator=generator)
        with torch.no_grad():
            expected = [t.numpy() for t in wrapper(check)]
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        got = session.run(None, {ONNX_INPUT: check.numpy()})
    finally:
        model.train(was_training)
    for task, want, have in zip(model.tasks, expected, got):
        if want.shape != have.shape or not np.allclose(have, want, atol=ONNX_ATOL, rtol=ONNX_RTOL):
            diff = float(np.abs(have - want).max()) if want.shape == have.shape else math.inf
            raise ExportError(
                f"the ONNX model disagrees with PyTorch on task {task!r} (largest difference "
                f"{diff:.3g}, shapes {have.shape} vs {want.shape}); export without onnx=True, "
                "or report the search space's blocks as not ONNX-exportable"
            )
    return {
        "file": ONNX_FILE,
        "sha256": sha256_file(path),
        "input": ONNX_INPUT,
        "outputs": list(model.tasks),
        "note": "raw head outputs (logits for classification); predict() applies each task kind",
    }


def _onnx_export(wrapper: nn.Module, example: Tensor, path: Path, tasks: Sequence[str]) -> None:
    # Weights inside the file unless they reach protobuf's 2 GB limit.
    big = sum(p.numel() * p.element_size() for p in wrapper.parameters()) > 1_500_000_000
    common = {"input_names": [ONNX_INPUT], "output_names": list(tasks), "external_data": big}
    errors = []
    try:  # the torch.export-based exporter (needs onnxscript)
        torch.onnx.export(
            wrapper,
            (example,),
            str(path),
            dynamo=True,
            verbose=False,
            dynamic_shapes=({0: torch.export.Dim("batch")},),
            **common,
        )
        return
    except Exception as exc:  # fall back on the TorchScript exporter below
        errors.append(f"torch.export-based exporter: {type(exc).__name__}: {exc}")
    try:
        axes = {name: {0: "batch"} for name in [ONNX_INPUT, *tasks]}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.onnx.export(
                wrapper, (example,), str(path), dynamo=False, dynamic_axes=axes, **common
            )
    except Exception as exc:
        errors.append(f"TorchScript exporter: {type(exc).__name__}: {exc}")
        raise ExportError(
            "ONNX export failed; "
            + " | ".join(e[:500] for e in errors)
            + "; export without onnx=True"
        ) from None


