"""Load an exported folder back: JSON and safetensors only, every file checked before use."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from mtlsearch.engine.model import MultiTaskModel, materialize
from mtlsearch.errors import ExportError, MTLSearchError, UnknownNameError
from mtlsearch.export.format import (
    ARCHITECTURE_FILE,
    EXPORT_FORMAT,
    EXPORT_SCHEMA_VERSION,
    MAX_JSON_BYTES,
    WEIGHTS_FILE,
    sha256_file,
)
from mtlsearch.graph.sharing import SharingGraph
from mtlsearch.graph.space import SearchSpace
from mtlsearch.tasks.kinds import TaskSpec

__all__ = ["load", "read_architecture"]


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
    digest = sha256_file(path)
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


