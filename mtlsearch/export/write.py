"""Export a trained multi-task model to a folder, load it back, and predict with it.

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
"""

from __future__ import annotations

import copy
import hashlib
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

from mtlsearch.engine.model import MultiTaskModel, materialize
from mtlsearch.errors import ExportError, MTLSearchError, UnknownNameError
from mtlsearch.graph.sharing import SharingGraph
from mtlsearch.graph.space import SearchSpace
from mtlsearch.tasks.kinds import TaskSpec, get_task_kind

__all__ = [
    "EXPORT_FORMAT",
    "EXPORT_SCHEMA_VERSION",
    "MAX_JSON_BYTES",
    "export_model",
    "load",
    "predict",
    "predict_npz",
]

EXPORT_FORMAT = "mtlsearch.export"
EXPORT_SCHEMA_VERSION = 1
MAX_JSON_BYTES = 50 * 1024 * 1024  # an architecture is kilobytes; refuse to parse a huge file

ARCHITECTURE_FILE = "architecture.json"
WEIGHTS_FILE = "weights.safetensors"
GRAPHML_FILE = "architecture.graphml"
PICTURE_STEM = "architecture"
ONNX_FILE = "model.onnx"
ONNX_INPUT = "input"
ONNX_ATOL = 1e-4
ONNX_RTOL = 1e-3


# ---------------------------------------------------------------------------------- export
def export_model(
    model: MultiTaskModel,
    folder: str | Path,
    *,
    metrics: dict[str, Any] | None = None,
    info: dict[str, Any] | None = None,
    onnx: bool = False,
    picture: bool = True,
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
            "schema_version": EXPORT_SCHEMA_VERSION,
            "mtlsearch_version": _version(),
            "graph": _jsonable(graph.to_dict(), "graph", strict=False),
            "weights": _write_weights(model, tmp / WEIGHTS_FILE),
            "input_shape": list(model.space.input_shape),
            "metrics": _jsonable(metrics or {}, "metrics"),
            "info": _jsonable(info or {}, "info", strict=False),
        }
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
    import mtlsearch  # lazily: mtlsearch/__init__ may import this module

    return str(getattr(mtlsearch, "__version__", "unknown"))


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


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _write_weights(model: MultiTaskModel, path: Path) -> dict[str, Any]:
    from safetensors.torch import save_file

    tensors: dict[str, Tensor] = {}
    seen: set[int] = set()
    for name, tensor in model.state_dict().items():
        t = tensor.detach().to("cpu").contiguous()
        ptr = t.untyped_storage().data_ptr()
        if ptr in seen:  # safetensors refuses tensors that share memory (tied weights)
            t = t.clone()
        seen.add(t.untyped_storage().data_ptr())
        tensors[name] = t
    save_file(tensors, str(path), metadata={"format": EXPORT_FORMAT})
    return {
        "file": WEIGHTS_FILE,
        "sha256": _sha256(path),
        "tensors": {name: list(t.shape) for name, t in tensors.items()},
    }


def _write_picture(graph: SharingGraph, stem: Path) -> None:
    from mtlsearch.viz.architecture import (
        draw_architecture,  # matplotlib is imported only when drawing
    )

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
        "sha256": _sha256(path),
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


# ------------------------------------------------------------------------------------ load
def load(
    folder: str | Path, *, device: str | torch.device = "cpu", space: SearchSpace | None = None
) -> MultiTaskModel:
    """Load an exported model (JSON and safetensors only: nothing is unpickled).

    Args:
        folder: A folder written by :func:`export_model`.
        device: Where to put the model.
        space: The search space, for spaces that are not in the registry (built with
            :func:`~mtlsearch.graph.space.from_modules`); registered spaces are rebuilt from the
            name and arguments recorded in the export.

    Returns:
        The model in eval mode, with the exported weights and masks.

    Raises:
        ExportError: naming the file at fault, the problem and the fix (missing or corrupt
            files, a newer schema version, a checksum mismatch, weights that do not fit the
            graph, an unknown search space).

    Example:
        >>> model = load("runs/best")  # doctest: +SKIP
        >>> outputs = predict(model, x)  # doctest: +SKIP
    """
    folder = Path(folder)
    record = read_architecture(folder)
    graph = _graph_from_record(record, folder)
    state = _read_weights(record, folder)
    # A tampered architecture.json can ask for enormous blocks: build the space and a skeleton
    # of the model on the meta device first (no memory), and allocate real weights only once
    # the skeleton matches the weights file, whose size the user already has on disk.
    try:
        with torch.device("meta"):
            space = _space_for(graph, folder, space)
            specs = _task_specs(graph, folder)
            skeleton = _materialize(graph, space, specs, folder)
    except (TypeError, ValueError, RuntimeError, OverflowError, MemoryError) as exc:
        if isinstance(exc, MTLSearchError):
            raise
        raise ExportError(
            f"{folder / ARCHITECTURE_FILE}: its search space or tasks cannot be built "
            f"({type(exc).__name__}: {str(exc).splitlines()[0][:200]}); the file is corrupt or "
            "was edited: export the model again"
        ) from None
    _check_state(skeleton, state, folder / WEIGHTS_FILE)
    model = _materialize(graph, space, specs, folder)
    model.load_state_dict(state, strict=True)
    return model.to(device).eval()


def _materialize(graph: SharingGraph, space: Any, specs: list[TaskSpec], folder: Path) -> MultiTaskModel:
    with torch.random.fork_rng(devices=[]):  # fresh weights are overwritten: leave RNG alone
        try:
            return materialize(graph, space, specs)
        except MTLSearchError as exc:
            raise ExportError(
                f"{folder / ARCHITECTURE_FILE}: the graph does not fit search space "
                f"{space.name!r}: {exc}; re-export the model"
            ) from None


def read_architecture(folder: str | Path) -> dict[str, Any]:
    """The checked contents of ``folder/architecture.json`` (format and schema version).

    Example:
        >>> read_architecture("runs/best")["metrics"]  # doctest: +SKIP
        {'val': {'a': {'accuracy': 0.9}}}
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ExportError(
            f"no export folder at {folder}; write one with export_model(model, folder) or "
            "`mtlsearch export`"
        )
    path = folder / ARCHITECTURE_FILE
    if not path.is_file():
        raise ExportError(
            f"{path} is missing, so {folder} is not a (complete) mtlsearch export; export the "
            "model again"
        )
    size = path.stat().st_size
    if size > MAX_JSON_BYTES:
        raise ExportError(
            f"{path} is {size / 2**20:.0f} MB, above the {MAX_JSON_BYTES // 2**20} MB limit of an "
            "architecture file; it is not an mtlsearch export"
        )
    from mtlsearch.errors import UnsafeInputError
    from mtlsearch.safety import load_json_text

    try:  # size-checked above; depth-checked so that nothing below can recurse forever
        record = load_json_text(path.read_bytes(), what=str(path), max_bytes=MAX_JSON_BYTES)
    except UnsafeInputError as exc:
        raise ExportError(
            f"{exc}; the file is truncated or corrupt: export the model again"
        ) from None
    if not isinstance(record, dict) or record.get("format") != EXPORT_FORMAT:
        found = record.get("format") if isinstance(record, dict) else type(record).__name__
        raise ExportError(
            f"{path} is not an mtlsearch export (format {found!r}, expected {EXPORT_FORMAT!r})"
        )
    version = record.get("schema_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ExportError(f"{path}: schema_version must be a positive integer, got {version!r}")
    if version > EXPORT_SCHEMA_VERSION:
        raise ExportError(
            f"{path} has schema version {version}, newer than this mtlsearch reads "
            f"({EXPORT_SCHEMA_VERSION}); upgrade mtlsearch (pip install -U mtlsearch)"
        )
    return record


def _graph_from_record(record: dict[str, Any], folder: Path) -> SharingGraph:
    try:
        graph = SharingGraph.from_dict(record.get("graph"))
    except MTLSearchError as exc:
        raise ExportError(f"{folder / ARCHITECTURE_FILE}: invalid graph: {exc}") from None
    if graph.space is None or not isinstance(graph.space.get("name"), str):
        raise ExportError(
            f"{folder / ARCHITECTURE_FILE}: the graph records no search space; export the model "
            "again with export_model (it records the space)"
        )
    return graph


def _space_for(graph: SharingGraph, folder: Path, space: SearchSpace | None) -> SearchSpace:
    from mtlsearch.registry import create_space

    name, kwargs = graph.space["name"], graph.space.get("kwargs") or {}
    if space is not None:
        if space.name != name:
            raise ExportError(
                f"{folder / ARCHITECTURE_FILE} was exported with search space {name!r}, but "
                f"space={space.name!r} was given; pass the same space"
            )
        return space
    if not isinstance(kwargs, dict):
        raise ExportError(f"{folder / ARCHITECTURE_FILE}: the space's kwargs must be an object")
    try:
        return create_space(name, **kwargs)
    except UnknownNameError as exc:
        raise ExportError(
            f"{folder / ARCHITECTURE_FILE} needs search space {name!r}: {exc}; install the plugin "
            "that registers it, or pass space=... to load()"
        ) from None
    except MTLSearchError as exc:
        raise ExportError(
            f"{folder / ARCHITECTURE_FILE}: search space {name!r} cannot be rebuilt from the "
            f"recorded arguments {kwargs}: {exc}"
        ) from None


def _task_specs(graph: SharingGraph, folder: Path) -> list[TaskSpec]:
    if not graph.task_specs:
        raise ExportError(
            f"{folder / ARCHITECTURE_FILE}: the graph records no task specs; export the model "
            "again with export_model"
        )
    try:
        return [TaskSpec.from_dict(dict(spec)) for spec in graph.task_specs]
    except (MTLSearchError, TypeError) as exc:
        raise ExportError(f"{folder / ARCHITECTURE_FILE}: invalid task spec: {exc}") from None


def _read_weights(record: dict[str, Any], folder: Path) -> dict[str, Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    weights = record.get("weights")
    if not isinstance(weights, dict) or not isinstance(weights.get("file"), str):
        raise ExportError(f"{folder / ARCHITECTURE_FILE}: field 'weights' must name the file")
    name = weights["file"]
    if Path(name).name != name or name in ("", ".", ".."):  # never read outside the folder
        raise ExportError(
            f"{folder / ARCHITECTURE_FILE}: weights file {name!r} must be a plain file name "
            "inside the export folder"
        )
    path = folder / name
    if not path.is_file():
        raise ExportError(f"{path} is missing; the export is incomplete: export the model again")
    digest = _sha256(path)
    if digest != weights.get("sha256"):
        raise ExportError(
            f"{path} does not match the sha256 recorded in {ARCHITECTURE_FILE} "
            f"({digest[:12]}... vs {str(weights.get('sha256'))[:12]}...): the file was changed, "
            "truncated or comes from another export; export the model again"
        )
    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise ExportError(
            f"{path} is not a readable safetensors file ({exc}); it is truncated or corrupt: "
            "export the model again"
        ) from None


def _check_state(model: MultiTaskModel, state: Mapping[str, Tensor], path: Path) -> None:
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [
        f"{k} {tuple(state[k].shape)} != {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]
    problems = []
    for label, names in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)):
        if names:
            more = f" and {len(names) - 5} more" if len(names) > 5 else ""
            problems.append(f"{label}: {', '.join(names[:5])}{more}")
    if problems:
        raise ExportError(
            f"the weights in {path} do not match the graph in {path.parent / ARCHITECTURE_FILE} "
            f"({'; '.join(problems)}); the two files come from different exports: export the "
            "model again"
        )


# --------------------------------------------------------------------------------- predict
def predict(
    model: MultiTaskModel, inputs: np.ndarray | Tensor, *, batch_size: int = 256
) -> dict[str, np.ndarray]:
    """Per-task predictions (probabilities, classes or values, per task kind) for ``inputs``.

    Runs in eval mode without gradients, ``batch_size`` samples at a time, on the model's
    device; the model's train/eval mode is restored afterwards.

    Args:
        model: A model from :func:`load` or :func:`~mtlsearch.engine.model.materialize`.
        inputs: ``(n, *input_shape)`` array or tensor.
        batch_size: Samples per forward pass.

    Returns:
        ``{task: array}`` with ``n`` rows per task, in task order.

    Example:
        >>> out = predict(load("runs/best"), np.zeros((4, 8), dtype=np.float32))  # doctest: +SKIP
        >>> out["a"].shape  # doctest: +SKIP
        (4,)
    """
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    x = torch.as_tensor(np.asarray(inputs) if not isinstance(inputs, Tensor) else inputs)
    if x.ndim < 1:
        raise ExportError("inputs must have a batch axis: shape (n, *input_shape)")
    model.space.check_input(tuple(x.shape[1:]))
    device = next(iter(model.parameters())).device
    kinds = {spec.name: (spec, get_task_kind(spec.kind)) for spec in model.task_specs}
    parts: dict[str, list[np.ndarray]] = {t: [] for t in model.tasks}
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for start in range(0, max(len(x), 1), batch_size):
                batch = x[start : start + batch_size].to(device=device, dtype=torch.float32)
                for task, output in model(batch).items():
                    spec, kind = kinds[task]
                    parts[task].append(kind.predict(spec, output).cpu().numpy())
    finally:
        model.train(was_training)
    return {t: np.concatenate(parts[t]) for t in model.tasks}


def predict_npz(
    folder: str | Path,
    input_npz: str | Path,
    output_npz: str | Path,
    *,
    input_key: str = "X",
    batch_size: int = 256,
    device: str | torch.device = "cpu",
    picture: str | Path | None = None,
    picture_samples: int = 4,
) -> Path:
    """Load the export in ``folder``, predict ``input_npz[input_key]``, write ``output_npz``.

    The output holds one array per task, keyed by task name (for dense tasks, per-pixel
    maps: class ids ``(n, H, W)``, depth ``(n, 1, H, W)``, unit normals ``(n, 3, H, W)``,
    edges ``(n, C, H, W)``). Nothing is unpickled: the input is read with
    ``allow_pickle=False``.

    With ``picture``, the first ``picture_samples`` inputs and their dense predictions are
    drawn to ``<picture>.png`` and ``.svg`` (:func:`mtlsearch.viz.dense.draw_dense_maps`);
    arrays of the input file named like a task are drawn as its ground truth.

    Example:
        >>> predict_npz("runs/best", "new_samples.npz", "predictions.npz")  # doctest: +SKIP
        PosixPath('predictions.npz')
    """
    input_npz, output_npz = Path(input_npz), Path(output_npz)
    if not input_npz.is_file():
        raise ExportError(f"no input file {input_npz}; give an .npz with an array {input_key!r}")
    model = load(folder, device=device)
    try:
        with np.load(input_npz, allow_pickle=False) as data:
            if input_key not in data.files:
                raise ExportError(
                    f"{input_npz} has no array {input_key!r}; it has {sorted(data.files)}: pass "
                    "input_key=... (--input-key) naming the inputs"
                )
            x = data[input_key]
            truth = {t: data[t] for t in model.tasks if t in data.files} if picture else {}
    except (ValueError, OSError) as exc:  # object arrays need pickle; bad zip files
        raise ExportError(f"{input_npz} cannot be read as a plain .npz file: {exc}") from None
    outputs = predict(model, x, batch_size=batch_size)
    if picture is not None:
        _draw_prediction_picture(model, x, outputs, truth, Path(picture), picture_samples)
    output_npz.parent.mkdir(parents=True, exist_ok=True)
    tmp = output_npz.with_name(f".{output_npz.name}.tmp-{uuid.uuid4().hex[:8]}.npz")
    try:
        np.savez(tmp, **outputs)
        tmp.replace(output_npz)
    finally:
        tmp.unlink(missing_ok=True)
    return output_npz


def _draw_prediction_picture(
    model: MultiTaskModel,
    x: np.ndarray,
    outputs: dict[str, np.ndarray],
    truth: dict[str, np.ndarray],
    path: Path,
    samples: int,
) -> None:
    """The picture of :func:`predict_npz`: the first ``samples`` rows, truth where given."""
    from mtlsearch.viz.dense import DENSE_KINDS, draw_dense_maps

    if not isinstance(samples, int) or isinstance(samples, bool) or samples < 1:
        raise ExportError(f"picture_samples must be a positive integer, got {samples!r}")
    specs = {s.name: s for s in model.task_specs}
    if not any(s.kind in DENSE_KINDS for s in specs.values()):
        raise ExportError(
            f"the model's tasks {model.tasks} are not dense (segmentation, depth, normals, "
            "edges): there are no maps to draw; leave out the picture (--picture)"
        )
    n = min(samples, len(x))
    prepared = {}
    for task, labels in truth.items():
        if specs[task].kind not in DENSE_KINDS:
            continue
        if len(labels) != len(x):
            raise ExportError(
                f"the input file's array {task!r} (drawn as ground truth) has {len(labels)} rows "
                f"for {len(x)} inputs; rename it or give one row per input"
            )
        spec = specs[task]
        prepared[task] = get_task_kind(spec.kind).prepare_targets(spec, labels[:n]).numpy()
    draw_dense_maps(x[:n], {t: v[:n] for t, v in outputs.items()}, model.task_specs,
                    truth=prepared, row_labels=[f"#{i}" for i in range(n)], path=path)
