"""Load an exported folder back: JSON and safetensors only, every file checked before use.

What a folder may make :func:`load` do is bounded by what it holds: files are read only as
regular files inside the folder (no symbolic link, FIFO or device); ``architecture.json`` is
parsed strictly (a key given twice, ``NaN``, a boolean or float where an integer belongs, an
unknown field: refused); the model is first built on the meta device, so the weights file may
be at most as large as the tensors the architecture implies; every recorded checksum
(``weights``, and ``onnx`` when recorded) is verified before the file is used; the weights'
names, shapes, dtypes and values must be those of the architecture.

Weights of another floating type (``float16``, ``bfloat16``, ``float64``) are converted to the
architecture's type with a warning; integers or booleans where floats belong, NaN or infinity
are refused.
"""

from __future__ import annotations

import hashlib
import math
import re
import struct
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from mtlsearch.engine.model import MultiTaskModel, materialize
from mtlsearch.errors import ExportError, MTLSearchError, UnknownNameError, UnsafeInputError
from mtlsearch.export.format import (
    ARCHITECTURE_FILE,
    EXPORT_FORMAT,
    EXPORT_SCHEMA_VERSION,
    MAX_JSON_BYTES,
)
from mtlsearch.graph.sharing import SharingGraph
from mtlsearch.graph.space import SearchSpace
from mtlsearch.safety import is_json_int
from mtlsearch.tasks.kinds import TaskSpec
from mtlsearch.tasks.names import check_task_name, name_key

__all__ = ["load", "read_architecture"]

# safetensors dtype codes -> torch dtypes (those a state dict can hold)
_ST_DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8,
    "U8": torch.uint8, "BOOL": torch.bool,
}
_CONVERTIBLE = {torch.float16, torch.bfloat16, torch.float32, torch.float64}
_HEADER_ALLOWANCE = 4096  # bytes of a safetensors header beyond ~160 per tensor
_TOP_FIELDS = {"format", "schema_version", "mtlsearch_version", "graph", "weights",
               "input_shape", "metrics", "info", "onnx", "training", "preprocessing",
               "input_normalization"}
_V2_FIELDS = ("preprocessing", "input_normalization")
_SPEC_FIELDS = {"name", "kind", "num_classes", "out_dim", "weight", "options"}
_MAX_DIM = 2**40  # a width or class count beyond this is never real


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
        The model in eval mode, with the exported weights and masks. ``model.preprocessing``
        is the recorded :class:`~mtlsearch.data.preprocess.Preprocessing` (``None`` for an
        export without one): apply ``model.preprocessing.eval_transform()`` (or
        ``prepare_files`` / ``prepare_array``) to new raw inputs. ``model.input_normalization``
        is the backbone's ``{"mean", "std"}`` the network applies itself (or ``None``).

    Raises:
        ExportError: naming the file at fault, the problem and the fix (missing, linked or
            corrupt files, a newer schema version, a checksum mismatch, weights that do not
            fit the graph, an unknown search space).

    Example:
        >>> model = load("runs/best")  # doctest: +SKIP
        >>> outputs = predict(model, x)  # doctest: +SKIP
    """
    folder = Path(folder)
    record = read_architecture(folder)
    graph = _graph_from_record(record, folder)
    # A tampered architecture.json can ask for enormous blocks: build the space and a skeleton
    # of the model on the meta device first (no memory), and allocate real weights only once
    # the skeleton matches the weights file, whose size the user already has on disk.
    try:
        with torch.device("meta"):
            given = space
            space = _space_for(graph, folder, given)
            specs = _task_specs(graph, folder)
            skeleton = _materialize(graph, space, specs, folder)
            expected = {k: (tuple(v.shape), v.dtype) for k, v in skeleton.state_dict().items()}
    except (TypeError, ValueError, RuntimeError, OverflowError, MemoryError) as exc:
        if isinstance(exc, MTLSearchError):
            raise
        raise ExportError(
            f"{folder / ARCHITECTURE_FILE}: its search space or tasks cannot be built "
            f"({type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}); "
            "the file is corrupt or was edited: export the model again"
        ) from None
    recorded = record.get("input_shape")
    if recorded is not None and (not isinstance(recorded, list) or not all(
        is_json_int(n) for n in recorded
    ) or recorded != list(space.input_shape)):
        raise ExportError(
            f"{folder / ARCHITECTURE_FILE}: input_shape {recorded!r} is not the search space's "
            f"{list(space.input_shape)}; the file was edited: export the model again"
        )
    state = _read_weights(record, folder, expected, skeleton)
    _verify_onnx(record, folder)
    if given is None:  # a space built on the meta device may hold meta tensors (buffers)
        space = _space_for(graph, folder, None)
    model = _materialize(graph, space, specs, folder)
    _load_state(model, state)
    training = record.get("training") or {}
    if not isinstance(training, dict):
        raise ExportError(f"{folder / ARCHITECTURE_FILE}: 'training' must be an object, got "
                          f"{type(training).__name__}; the file was edited: export the model again")
    model.train_info = dict(training)  # how it was trained (the loss weighting), for the record
    model.preprocessing = _preprocessing(record, folder)
    model.input_normalization = _normalization(record, folder)
    return model.to(device).eval()


def _preprocessing(record: dict[str, Any], folder: Path) -> Any:
    """The recorded :class:`Preprocessing`, or ``None`` when the export has none."""
    from mtlsearch.data.preprocess import Preprocessing

    data = record.get("preprocessing")
    if data is None:
        return None
    try:
        return Preprocessing.from_dict(data)
    except (MTLSearchError, TypeError) as exc:
        raise ExportError(f"{folder / ARCHITECTURE_FILE}: invalid preprocessing: {exc}; the file "
                          "was edited: export the model again") from None


def _normalization(record: dict[str, Any], folder: Path) -> dict[str, list[float]] | None:
    norm = record.get("input_normalization")
    if norm is None:
        return None
    ok = isinstance(norm, dict) and set(norm) == {"mean", "std"} and all(
        isinstance(v, list) and v and all(
            isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in v
        ) for v in norm.values()
    )
    if not ok:
        raise ExportError(f"{folder / ARCHITECTURE_FILE}: input_normalization must be "
                          '{"mean": [numbers], "std": [numbers]}; the file was edited: export the '
                          "model again")
    return {"mean": [float(x) for x in norm["mean"]], "std": [float(x) for x in norm["std"]]}


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
    from mtlsearch.safety import load_json_text, read_regular_file

    folder = Path(folder)
    if not folder.is_dir():
        raise ExportError(
            f"no export folder at {folder}; write one with export_model(model, folder) or "
            "`mtlsearch export`"
        )
    path = folder / ARCHITECTURE_FILE
    if not path.exists() and not path.is_symlink():
        raise ExportError(
            f"{path} is missing, so {folder} is not a (complete) mtlsearch export; export the "
            "model again"
        )
    try:  # size-checked on the open file; depth-checked so that nothing below can recurse
        data = read_regular_file(folder, ARCHITECTURE_FILE, max_bytes=MAX_JSON_BYTES)
    except UnsafeInputError as exc:
        what = " of an architecture file" if "limit" in str(exc) else ""
        raise ExportError(f"{exc}{what}; it is not an mtlsearch export") from None
    try:
        record = load_json_text(data, what=str(path), max_bytes=MAX_JSON_BYTES)
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
    if not is_json_int(version) or version < 1:
        raise ExportError(f"{path}: schema_version must be a positive integer, got {version!r}")
    if version > EXPORT_SCHEMA_VERSION:
        raise ExportError(
            f"{path} has schema version {version}, newer than this mtlsearch reads "
            f"({EXPORT_SCHEMA_VERSION}); upgrade mtlsearch (pip install -U mtlsearch)"
        )
    unknown = sorted(set(record) - _TOP_FIELDS)
    if unknown:
        raise ExportError(f"{path} has unknown fields {unknown[:5]}; it was edited or written by "
                          "another program: export the model again")
    early = [k for k in _V2_FIELDS if k in record and version < 2]
    if early:
        raise ExportError(f"{path}: field {early[0]!r} needs schema_version 2 (version 1 has no "
                          "such field); the file was edited: export the model again")
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
        built = _without_pretrained_file(name, kwargs)
        if built is None:
            built = create_space(name, **kwargs)
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
    if built.num_blocks != graph.num_blocks:  # before the space probes its blocks
        raise ExportError(
            f"{folder / ARCHITECTURE_FILE}: the graph has {graph.num_blocks} block depths but "
            f"search space {name!r} built from the recorded arguments has {built.num_blocks}; "
            "the file was edited: export the model again"
        )
    return built


def _without_pretrained_file(name: str, kwargs: dict[str, Any]) -> SearchSpace | None:
    """The space rebuilt without its pretrained ``weights`` file, or ``None`` to build it as
    recorded.

    The export holds the trained weights, which replace the pretrained ones: the file the
    search started from (often on another machine) is not needed to load the model. The
    recorded normalisation and freezing are kept, and the skeleton built from this space must
    match the weights file key for key, so a space whose architecture needs the file fails
    there, never silently. A space that refuses to be built without it is built as recorded.
    """
    from mtlsearch.registry import create_space

    if kwargs.get("weights") is None:
        return None
    try:
        return create_space(name, **{**kwargs, "weights": None})
    except UnknownNameError:
        raise
    except MTLSearchError:
        return None


def _task_specs(graph: SharingGraph, folder: Path) -> list[TaskSpec]:
    where = folder / ARCHITECTURE_FILE
    if not graph.task_specs:
        raise ExportError(
            f"{where}: the graph records no task specs; export the model again with export_model"
        )
    specs = []
    for spec in graph.task_specs:
        problem = _spec_problem(spec)
        if problem:
            raise ExportError(f"{where}: invalid task spec: {problem}")
        try:
            specs.append(TaskSpec.from_dict(dict(spec)))
        except (MTLSearchError, TypeError) as exc:
            raise ExportError(f"{where}: invalid task spec: {exc}") from None
    names = [s.name for s in specs]
    if sorted(names) != sorted(graph.tasks):
        raise ExportError(f"{where}: the task specs name {names} but the graph's tasks are "
                          f"{graph.tasks}; export the model again")
    return specs


def _spec_problem(spec: Any) -> str | None:
    """What a recorded task spec has that :meth:`TaskSpec.to_dict` never writes."""
    if not isinstance(spec, dict):
        return f"a task spec must be an object, got {type(spec).__name__}"
    unknown = sorted(set(spec) - _SPEC_FIELDS)
    if unknown:
        return f"unknown fields {unknown[:5]}"
    try:
        check_task_name(spec.get("name"))
    except MTLSearchError as exc:
        return str(exc)
    if not isinstance(spec.get("kind", "binary"), str):
        return f"task {spec['name']!r}: 'kind' must be a string"
    classes = spec.get("num_classes")
    if classes is not None and (not is_json_int(classes) or not 2 <= classes <= _MAX_DIM):
        return f"task {spec['name']!r}: 'num_classes' must be an integer >= 2, got {classes!r}"
    out_dim = spec.get("out_dim", 1)
    if not is_json_int(out_dim) or not 1 <= out_dim <= _MAX_DIM:
        return f"task {spec['name']!r}: 'out_dim' must be a positive integer, got {out_dim!r}"
    weight = spec.get("weight", 1.0)
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(
        weight
    ) or weight < 0:
        return f"task {spec['name']!r}: 'weight' must be a finite number >= 0, got {weight!r}"
    if not isinstance(spec.get("options", {}), dict):
        return f"task {spec['name']!r}: 'options' must be an object"
    return None


# --------------------------------------------------------------------------------- weights
def _checked_entry(record: dict[str, Any], key: str, folder: Path) -> dict[str, Any]:
    """The ``weights`` or ``onnx`` entry: a plain file name inside the folder and a sha256."""
    entry = record.get(key)
    where = folder / ARCHITECTURE_FILE
    if not isinstance(entry, dict) or not isinstance(entry.get("file"), str):
        raise ExportError(f"{where}: field {key!r} must name the file")
    name = entry["file"]
    if Path(name).name != name or name in ("", ".", "..") or "\\" in name or "\x00" in name:
        raise ExportError(
            f"{where}: {key} file {name!r} must be a plain file name inside the export folder"
        )
    digest = entry.get("sha256")
    if not isinstance(digest, str) or len(digest) != 64 or set(digest) - set("0123456789abcdef"):
        raise ExportError(f"{where}: the sha256 of the {key} file must be 64 lowercase hex digits")
    return entry


def _read_weights(
    record: dict[str, Any], folder: Path, expected: Mapping[str, tuple[tuple[int, ...], torch.dtype]],
    skeleton: MultiTaskModel,
) -> dict[str, Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load as load_bytes

    from mtlsearch.safety import read_regular_file

    entry = _checked_entry(record, "weights", folder)
    path = folder / entry["file"]
    # at most float64 for every value the architecture implies, plus the header
    budget = _HEADER_ALLOWANCE + sum(8 * math.prod(shape) + 160 + len(k)
                                     for k, (shape, _) in expected.items())
    if not path.exists() and not path.is_symlink():
        raise ExportError(f"{path} is missing; the export is incomplete: export the model again")
    try:
        data = read_regular_file(folder, entry["file"], max_bytes=budget)
    except UnsafeInputError as exc:
        raise ExportError(
            f"{exc}; the weights of the architecture in {ARCHITECTURE_FILE} need at most "
            f"{budget:,} bytes: the files come from different exports or were tampered with"
        ) from None
    digest = hashlib.sha256(data).hexdigest()  # the very bytes parsed below
    if digest != entry["sha256"]:
        raise ExportError(
            f"{path} does not match the sha256 recorded in {ARCHITECTURE_FILE} "
            f"({digest[:12]}... vs {entry['sha256'][:12]}...): the file was changed, "
            "truncated or comes from another export; export the model again"
        )
    header = _safetensors_header(data, path)
    renames = {}
    if set(header) - {"__metadata__"} != set(expected):
        renames = _legacy_renames(skeleton.graph)  # an export of 0.1 with non-ASCII names?
        header = {_renamed(k, renames): v for k, v in header.items()}
    _check_header(header, expected, path)
    _check_recorded_shapes(entry, expected, folder)
    try:
        state = load_bytes(data)
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise ExportError(
            f"{path} is not a readable safetensors file ({exc}); it is truncated or corrupt: "
            "export the model again"
        ) from None
    if renames:
        state = {_renamed(k, renames): v for k, v in state.items()}
    return _check_values(state, expected, path)


def _check_recorded_shapes(
    entry: dict[str, Any], expected: Mapping[str, tuple[tuple[int, ...], torch.dtype]], folder: Path
) -> None:
    """The ``tensors`` listing of architecture.json, when given, must be the architecture's."""
    tensors = entry.get("tensors")
    if tensors is None:
        return
    where = folder / ARCHITECTURE_FILE
    if not isinstance(tensors, dict) or not all(
        isinstance(v, list) and all(is_json_int(n) and n >= 0 for n in v) for v in tensors.values()
    ):
        raise ExportError(f"{where}: weights.tensors must map tensor names to shapes (lists of "
                          "non-negative integers)")
    listed = {k: tuple(v) for k, v in tensors.items()}
    if listed != {k: s for k, (s, _) in expected.items()}:
        other = sorted(set(listed) ^ set(expected)) or sorted(
            k for k in listed if listed[k] != expected[k][0])
        raise ExportError(
            f"{where}: weights.tensors lists other tensors or shapes than the graph and space "
            f"imply (e.g. {other[0]!r}); the file was edited: export the model again"
        )


def _safetensors_header(data: bytes, path: Path) -> dict[str, Any]:
    from mtlsearch.safety import load_json_text

    if len(data) < 8:
        raise ExportError(f"{path} is not a readable safetensors file (too short); it is "
                          "truncated or corrupt: export the model again")
    (length,) = struct.unpack("<Q", data[:8])
    if length > len(data) - 8:
        raise ExportError(f"{path} is not a readable safetensors file (its header runs past the "
                          "end); it is truncated or corrupt: export the model again")
    try:
        header = load_json_text(data[8 : 8 + length], what=f"the header of {path}")
    except UnsafeInputError as exc:
        raise ExportError(f"{path} is not a readable safetensors file ({exc}); export the model "
                          "again") from None
    if not isinstance(header, dict):
        raise ExportError(f"{path} is not a readable safetensors file (header is not an object)")
    return header


def _check_header(
    header: dict[str, Any], expected: Mapping[str, tuple[tuple[int, ...], torch.dtype]], path: Path
) -> None:
    """Names, shapes and dtypes, from the header alone (before any tensor is built)."""
    listed = {k: v for k, v in header.items() if k != "__metadata__"}
    missing = [k for k in expected if k not in listed]
    unexpected = [k for k in listed if k not in expected]
    wrong, kinds = [], []
    for key, info in listed.items():
        if key not in expected:
            continue
        if not isinstance(info, dict) or not isinstance(info.get("shape"), list):
            raise ExportError(f"{path}: the header entry of {key!r} is malformed; export again")
        shape, dtype = tuple(info["shape"]), _ST_DTYPES.get(info.get("dtype"))
        want_shape, want_dtype = expected[key]
        if shape != want_shape:
            wrong.append(f"{key} {shape} != {want_shape}")
        elif dtype is None or (dtype != want_dtype and not (
            dtype in _CONVERTIBLE and want_dtype in _CONVERTIBLE
        )):
            kinds.append(f"{key} {info.get('dtype')} where {str(want_dtype).replace('torch.', '')}"
                         " belongs")
    problems = []
    for label, names in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong),
                         ("wrong dtype", kinds)):
        if names:
            more = f" and {len(names) - 5} more" if len(names) > 5 else ""
            problems.append(f"{label}: {', '.join(names[:5])}{more}")
    if problems:
        raise ExportError(
            f"the weights in {path} do not match the graph in {path.parent / ARCHITECTURE_FILE} "
            f"({'; '.join(problems)}); the two files come from different exports: export the "
            "model again"
        )


def _check_values(
    state: dict[str, Tensor], expected: Mapping[str, tuple[tuple[int, ...], torch.dtype]],
    path: Path,
) -> dict[str, Tensor]:
    """Non-finite values refused; other float widths converted (one warning lists them)."""
    converted: dict[str, str] = {}
    out = {}
    for key, tensor in state.items():
        want = expected[key][1]
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            bad = int((~torch.isfinite(tensor)).sum())
            raise ExportError(
                f"the weights in {path} hold {bad} NaN or infinite value(s) in {key!r}; a model "
                "with them predicts nothing useful: export it again from a model that trained "
                "without diverging"
            )
        if tensor.dtype != want:
            converted.setdefault(f"{tensor.dtype} -> {want}".replace("torch.", ""), key)
            tensor = tensor.to(want)
        out[key] = tensor
    if converted:
        listed = "; ".join(f"{change} (e.g. {key})" for change, key in converted.items())
        warnings.warn(
            f"{path}: converted weights of another floating type to the architecture's: "
            f"{listed}", stacklevel=3,
        )
    return out


def _verify_onnx(record: dict[str, Any], folder: Path) -> None:
    """The recorded ``model.onnx`` must be the file that was checked against PyTorch."""
    from mtlsearch.safety import open_regular_file

    if record.get("onnx") is None:
        return
    entry = _checked_entry(record, "onnx", folder)
    path = folder / entry["file"]
    if not path.exists() and not path.is_symlink():
        raise ExportError(
            f"{path} is recorded in {ARCHITECTURE_FILE} but missing; restore it, or export the "
            "model again (with or without onnx=True)"
        )
    digest = hashlib.sha256()
    try:
        with open_regular_file(folder, entry["file"]) as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
    except UnsafeInputError as exc:
        raise ExportError(f"{exc}; export the model again") from None
    if digest.hexdigest() != entry["sha256"]:
        raise ExportError(
            f"{path} does not match the sha256 recorded in {ARCHITECTURE_FILE}: the ONNX model "
            "was changed or comes from another export; export the model again with onnx=True"
        )


def _load_state(model: MultiTaskModel, state: Mapping[str, Tensor]) -> None:
    """``load_state_dict`` one block and head at a time.

    PyTorch filters the whole state dict for every child module, which is quadratic in the
    number of blocks (minutes at ten thousand); the keys were checked to match exactly.
    """
    groups: dict[tuple[str, str], dict[str, Tensor]] = {}
    rest: dict[str, Tensor] = {}
    for key, tensor in state.items():
        parts = key.split(".", 2)
        if len(parts) == 3 and parts[0] in ("blocks", "heads"):
            groups.setdefault((parts[0], parts[1]), {})[parts[2]] = tensor
        else:
            rest[key] = tensor
    children = {"blocks": model.blocks, "heads": model.heads}
    for (where, key), sub in groups.items():
        children[where][key].load_state_dict(sub, strict=True)
    if rest:  # nothing outside blocks and heads today; kept exact for any future field
        model.load_state_dict({**state}, strict=True)


def _legacy_renames(graph: SharingGraph) -> dict[str, str]:
    """``{0.1 key prefix: today's}`` for the heads and blocks whose module key changed.

    mtlsearch 0.1 replaced every character but ASCII letters, digits and ``_`` (so ``größe``
    was ``gr__e``) and numbered clashes ``_1``, ``_2``...; exports written then still load.
    """
    renames = {}
    for where, names in (("heads", graph.tasks), ("blocks", graph.block_nodes())):
        used: set[str] = set()
        for name in names:
            key = re.sub(r"[^0-9A-Za-z_]", "_", name) or "_"
            base, k = key, 1
            while key in used:
                key, k = f"{base}_{k}", k + 1
            used.add(key)
            if key != name_key(name):
                renames[f"{where}.{key}."] = f"{where}.{name_key(name)}."
    return renames


def _renamed(key: str, renames: Mapping[str, str]) -> str:
    where, _, rest = key.partition(".")
    sub, dot, tail = rest.partition(".")
    new = renames.get(f"{where}.{sub}.") if dot else None
    return f"{new}{tail}" if new else key
