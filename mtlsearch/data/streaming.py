"""Datasets read lazily, a batch at a time: image folders too large for memory as float32.

A :class:`StreamingDataset` has what the trainer, scoring and every strategy use of a
:class:`~mtlsearch.data.dataset.MultiTaskDataset` (``batches()``, ``len()``, ``input_shape``,
``tasks``, ``targets``, ``subset()``, ``fingerprint()``, and ``inputs`` as a lazy view), but its
inputs stay where they are: compact ``uint8`` images in memory (:class:`TensorSource`), image
files decoded by worker processes of a :class:`torch.utils.data.DataLoader`
(:class:`ImageFileSource`; workers, pinned memory, persistent workers), or the samples of any
map-style torch dataset (:class:`TorchDatasetSource`). Labels are small and always in memory.

A batch is turned into floats at the last moment by the split's transform: the training
transform (with augmentation, e.g. flips and crops) for shuffled batches — only the trainer
shuffles — and the evaluation transform otherwise. The sample order is drawn exactly as the
in-memory dataset draws it (``torch.randperm`` on the trainer's generator), decoding is
deterministic and augmentation is seeded per batch in the main process, so the same seed gives
the same batches and result on the CPU with ``num_workers=0`` and with workers.

Example:
    >>> import torch
    >>> from mtlsearch.tasks.kinds import TaskSpec
    >>> images = torch.randint(0, 256, (10, 3, 4, 4), dtype=torch.uint8)
    >>> data = StreamingDataset(TensorSource(images), range(10),
    ...                         {"a": torch.arange(10.0) % 2}, [TaskSpec("a")])
    >>> x, y = next(data.batches(4))
    >>> x.dtype, tuple(x.shape), len(data)
    (torch.float32, (4, 3, 4, 4), 10)
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from mtlsearch.data.dataset import BatchTargets, MultiTaskDataset
from mtlsearch.errors import DatasetError
from mtlsearch.tasks.kinds import TaskSpec, get_task_kind

__all__ = [
    "STREAMING_THRESHOLD_BYTES",
    "LoaderOptions",
    "TensorSource",
    "ImageFileSource",
    "TorchDatasetSource",
    "StreamingDataset",
    "decode_image",
    "scale_uint8",
    "should_stream",
    "to_float",
]

#: ``streaming="auto"`` streams when the inputs as float32 would take more than this (2 GiB).
STREAMING_THRESHOLD_BYTES = 2 << 30

Transform = Callable[[Tensor], Tensor]


def should_stream(streaming: Any, estimated_bytes: int, *, source: str) -> bool:
    """``streaming`` (``True``, ``False`` or ``"auto"``) resolved against the float32 estimate."""
    if streaming == "auto":
        return estimated_bytes > STREAMING_THRESHOLD_BYTES
    if isinstance(streaming, bool):
        return streaming
    raise DatasetError(f"{source}: streaming={streaming!r} must be true, false or 'auto' (stream "
                       f"when the float32 inputs exceed {STREAMING_THRESHOLD_BYTES >> 30} GiB)")


def scale_uint8(x: Tensor) -> Tensor:
    """The default transform: ``uint8`` images to float32 in [0, 1]; floats unchanged."""
    if x.dtype == torch.uint8:
        return x.float().div_(255.0)
    return x.float() if not x.dtype.is_floating_point else x


def to_float(x: Tensor) -> Tensor:
    """Inputs as float32 without rescaling (floating inputs keep their type)."""
    return x if x.dtype.is_floating_point else x.float()


@dataclass(frozen=True)
class LoaderOptions:
    """How a :class:`StreamingDataset` reads its source through a ``DataLoader``.

    Attributes:
        num_workers: Worker processes (``None``: 2, or fewer on a one-core machine; 0 reads in
            the training process).
        pin_memory: Page-locked batches for a fast copy to the GPU (``None``: when CUDA is
            available).
        persistent_workers: Keep the workers between epochs (with ``num_workers > 0``).
        prefetch_factor: Batches each worker prepares ahead.
    """

    num_workers: int | None = None
    pin_memory: bool | None = None
    persistent_workers: bool = True
    prefetch_factor: int = 4

    def workers(self) -> int:
        if self.num_workers is not None:
            return int(self.num_workers)
        return min(2, max((os.cpu_count() or 1) - 1, 0))


class TensorSource:
    """Samples already in memory (e.g. ``uint8`` images, 4x smaller than float32)."""

    in_memory = True

    def __init__(self, data: Tensor):
        self.data = torch.as_tensor(data)

    def __len__(self) -> int:
        return len(self.data)

    def read(self, rows: Sequence[int] | Tensor) -> Tensor:
        return self.data[torch.as_tensor(rows, dtype=torch.long)]

    def fingerprint(self) -> bytes:
        return hashlib.sha256(self.data.contiguous().numpy().tobytes()).digest()


class ImageFileSource:
    """Image files decoded to ``uint8`` ``(C, H, W)`` tensors of one size.

    Decoding (:func:`decode_image`) gives what ``Preprocessing.load_image``
    (:mod:`mtlsearch.data.preprocess`: any format PIL reads, converted to ``channels``,
    resized to ``image_size``) gives: exactly what ``predict`` applies to new image files.

    Args:
        paths: One file per sample.
        preprocessing: Gives ``image_size`` (required: a batch needs one size) and ``channels``.
    """

    in_memory = False

    def __init__(self, paths: Sequence[str | Path], preprocessing: Any):
        if preprocessing.image_size is None or preprocessing.channels is None:
            raise DatasetError("streaming image files needs an image_size and channels")
        self.paths = [str(p) for p in paths]
        self.preprocessing = preprocessing
        self.shape = (int(preprocessing.channels), *preprocessing.image_size)

    def __len__(self) -> int:
        return len(self.paths)

    def read_one(self, row: int) -> Tensor:
        """One decoded image; an unreadable file is a :class:`DatasetError` naming it."""
        return decode_image(self.paths[row], self.preprocessing)

    def read(self, rows: Sequence[int] | Tensor) -> Tensor:
        rows = [int(r) for r in rows]
        out = torch.empty((len(rows), *self.shape), dtype=torch.uint8)
        for i, r in enumerate(rows):
            out[i] = self.read_one(r)
        return out

    def fingerprint(self) -> bytes:
        # names and sizes, not contents: reading every file would cost a full pass per load
        h = hashlib.sha256(repr(self.shape).encode())
        for p in self.paths:
            h.update(p.encode())
            try:
                h.update(str(os.stat(p).st_size).encode())
            except OSError:
                h.update(b"?")
        return h.digest()


_FAST = (".jpg", ".jpeg", ".png")
_PNG = b"\x89PNG\r\n\x1a\n"


def decode_image(path: str | Path, preprocessing: Any) -> Tensor:
    """``path`` decoded to ``uint8`` ``(C, H, W)`` exactly as ``preprocessing.load_image``.

    A JPEG or PNG file whose channels need no conversion (or a grey one, repeated to RGB)
    goes through :func:`torchvision.io.decode_image` (libjpeg-turbo and libpng, as Pillow:
    the same pixels, about 3x faster; the loader's workers spend their time here). Any other
    format or conversion (colour to grey, RGBA, 16 bits), a file it cannot read, or a
    torchvision without it, goes through Pillow, whose error names the file.
    """
    want = preprocessing.channels
    if str(path).lower().endswith(_FAST) and want in (1, 3):
        image = _torchvision_decode(str(path))
        if image is not None and image.dtype == torch.uint8 and image.ndim == 3:
            if image.shape[0] == 1 and want == 3:
                image = image.expand(3, -1, -1).contiguous()  # as Pillow's L -> RGB
            if image.shape[0] == want:
                return preprocessing.resize(image)
    return preprocessing.load_image(path)


def _torchvision_decode(path: str) -> Tensor | None:
    import warnings

    try:
        from torchvision.io import ImageReadMode, read_file
        from torchvision.io import decode_image as tv_decode
    except ImportError:  # pragma: no cover - a torchvision without image decoding
        return None
    with warnings.catch_warnings():
        # torchvision 0.29 deprecates its decoders for torchcodec's; they still work, and
        # Pillow takes over once they are gone
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            data = read_file(path)
            # PNG: 8-bit grey, grey+alpha, RGB or RGBA only; a palette (colour type 3) is
            # left to Pillow, which converts it as load_image does
            if data[:8].tolist() == list(_PNG) and (int(data[24]) != 8 or int(data[25]) == 3):
                return None
            return tv_decode(data, mode=ImageReadMode.UNCHANGED)
        except (RuntimeError, OSError, ValueError, IndexError):
            return None


class TorchDatasetSource:
    """The inputs of a map-style torch dataset whose items are ``(x, labels)``."""

    in_memory = False

    def __init__(self, dataset: Any):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def read(self, rows: Sequence[int] | Tensor) -> Tensor:
        return torch.stack([torch.as_tensor(self.dataset[int(r)][0]) for r in rows])

    def fingerprint(self) -> bytes:
        h = hashlib.sha256(type(self.dataset).__qualname__.encode())
        h.update(str(len(self.dataset)).encode())
        for r in range(min(len(self.dataset), 16)):  # a sample of items, not every one
            h.update(torch.as_tensor(self.dataset[r][0]).contiguous().numpy().tobytes())
        return h.digest()


class _Rows(torch.utils.data.Dataset):
    """What DataLoader workers see: a list of source rows in, one stacked batch out."""

    def __init__(self, source: Any):
        self.source = source

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, row: int) -> Tensor:
        return self.source.read([row])[0]

    def __getitems__(self, rows: list[int]) -> Tensor:
        return self.source.read(rows)


def _as_batch(batch: Tensor) -> Tensor:
    return batch  # __getitems__ already stacked it


class _EpochBatches(torch.utils.data.Sampler):
    """The batch sampler: this epoch's lists of source rows (set before each pass)."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


class StreamingDataset:
    """Rows of a lazily read source, with their targets in memory and per-batch transforms.

    Args:
        source: A :class:`TensorSource`, :class:`ImageFileSource` or
            :class:`TorchDatasetSource` (anything with ``len``, ``read(rows)``,
            ``fingerprint()`` and ``in_memory``).
        rows: The source rows in this dataset, in order.
        targets: ``{task: labels}``, one per row, validated by each task's kind.
        tasks: The task specs.
        preprocessing: A :class:`mtlsearch.data.preprocess.Preprocessing`: its evaluation
            transform turns batches into floats, its training transform (augmentation) is
            used for shuffled batches, seeded per batch; ``None``: ``uint8`` is scaled to
            [0, 1] (:func:`scale_uint8`), floats are kept.
        loader: DataLoader settings for sources not in memory.
        scale: Without ``preprocessing``: scale ``uint8`` to [0, 1] (``False``: only convert
            to float32, as :func:`~mtlsearch.data.checks.check_inputs` does in memory).
    """

    def __init__(
        self,
        source: Any,
        rows: Sequence[int] | np.ndarray | range,
        targets: Mapping[str, Any],
        tasks: Sequence[TaskSpec],
        *,
        preprocessing: Any = None,
        loader: LoaderOptions | None = None,
        scale: bool = True,
    ):
        self.source = source
        self.rows = torch.as_tensor(np.asarray(list(rows) if isinstance(rows, range) else rows),
                                    dtype=torch.long).reshape(-1)
        self.tasks = list(tasks)
        self.preprocessing = preprocessing
        self.scale = scale
        self.transform: Transform = (preprocessing.eval_transform() if preprocessing is not None
                                     else scale_uint8 if scale else to_float)
        self.augments = preprocessing is not None and preprocessing.augment.active
        self.loader = loader or LoaderOptions()
        self.targets: dict[str, Tensor] = {}
        for spec in self.tasks:
            if spec.name not in targets:
                raise DatasetError(f"no targets for task {spec.name!r}")
            t = get_task_kind(spec.kind).prepare_targets(spec, targets[spec.name])
            if t.shape[0] != len(self.rows):
                raise DatasetError(f"task {spec.name!r} has {t.shape[0]} labels for "
                                   f"{len(self.rows)} rows")
            self.targets[spec.name] = t
        self._loader: torch.utils.data.DataLoader | None = None
        self._sampler: _EpochBatches | None = None
        self._shape: tuple[int, ...] | None = None
        self._busy = False

    # ------------------------------------------------------------------ the dataset protocol
    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> tuple[Tensor, dict[str, Tensor]]:
        x = self.transform(self.source.read([int(self.rows[i])]))[0]
        return x, {k: v[i] for k, v in self.targets.items()}

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_loader"] = state["_sampler"] = None  # worker processes are not copied
        state["_busy"] = False
        return state

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one sample's input after the evaluation transform."""
        if self._shape is None:
            first = self.transform(self.source.read([int(self.rows[0])]))
            self._shape = tuple(first.shape[1:])
        return self._shape

    @property
    def inputs(self) -> LazyInputs:
        """The inputs as a lazy view: indexing decodes and transforms only those rows."""
        return LazyInputs(self)

    @property
    def estimated_bytes(self) -> int:
        """The inputs' size if they were held as float32."""
        return len(self) * int(np.prod(self.input_shape)) * 4

    def subset(self, index: Sequence[int] | Tensor) -> StreamingDataset:
        """A dataset of the given rows (of this dataset), same source and transforms."""
        idx = torch.as_tensor(index, dtype=torch.long)
        new = object.__new__(StreamingDataset)
        new.__dict__.update(self.__getstate__())
        new.rows = self.rows[idx]
        new.targets = {k: v[idx] for k, v in self.targets.items()}
        return new

    def with_targets(self, targets: Mapping[str, Any], tasks: Sequence[TaskSpec]
                     ) -> StreamingDataset:
        """The same inputs with other targets and task specs."""
        return StreamingDataset(self.source, self.rows, targets, tasks,
                                preprocessing=self.preprocessing, loader=self.loader,
                                scale=self.scale)

    def materialize(self) -> MultiTaskDataset:
        """The whole dataset decoded into memory as float (only for data that fits)."""
        return MultiTaskDataset(self.inputs[:], self.targets, self.tasks)

    def fingerprint(self) -> str:
        """A short hash of the source, the rows, the preprocessing and the targets."""
        h = hashlib.sha256(self.source.fingerprint())
        h.update(self.rows.numpy().tobytes())
        if self.preprocessing is not None:
            h.update(repr(sorted(self.preprocessing.to_dict().items())).encode())
        for name in sorted(self.targets):
            h.update(name.encode())
            h.update(self.targets[name].contiguous().numpy().tobytes())
        return h.hexdigest()[:16]

    # ------------------------------------------------------------------ batches
    def batches(
        self,
        batch_size: int,
        *,
        shuffle: bool = False,
        generator: torch.Generator | None = None,
        drop_last: bool = False,
    ) -> Iterator[tuple[Tensor, BatchTargets]]:
        """Yield ``(inputs, {task: targets})``, in the order the in-memory dataset would.

        Shuffled batches go through the training transform (augmentation) seeded per batch
        from one draw of ``generator`` per epoch; other batches through the evaluation one.
        """
        n = len(self)
        order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
        stop = n - n % batch_size if drop_last and n >= batch_size else n
        positions = [order[s : s + batch_size] for s in range(0, stop, batch_size)]
        augment = shuffle and self.augments
        # one draw per epoch (none without augmentation: the order stays the in-memory one)
        base_seed = int(torch.randint(2**62, (1,), generator=generator)) if augment else 0
        for b, (idx, raw) in enumerate(zip(positions, self._read(positions), strict=True)):
            if augment:
                gen = torch.Generator().manual_seed(base_seed + b)
                x = self.preprocessing.train_transform(gen)(raw)
            else:
                x = self.transform(raw)
            yield x, BatchTargets(self.targets, idx)

    def _read(self, positions: list[Tensor]) -> Iterator[Tensor]:
        rows = [self.rows[p] for p in positions]
        workers = self.loader.workers()
        # a second pass while one is under way (nested loops) reads in this process: the
        # persistent workers serve one pass at a time
        if self.source.in_memory or workers == 0 or len(rows) <= 1 or self._busy:
            for r in rows:
                yield self.source.read(r)
            return
        loader, sampler = self._data_loader(workers)
        sampler.batches = [r.tolist() for r in rows]
        self._busy = True
        try:
            yield from loader
        finally:  # also when the caller stops early (max_steps, an error)
            self._busy = False

    def _data_loader(self, workers: int) -> tuple[torch.utils.data.DataLoader, _EpochBatches]:
        if self._loader is None:
            self._sampler = _EpochBatches()
            pin = self.loader.pin_memory
            self._loader = torch.utils.data.DataLoader(
                _Rows(self.source),
                batch_sampler=self._sampler,
                collate_fn=_as_batch,
                num_workers=workers,
                pin_memory=torch.cuda.is_available() if pin is None else bool(pin),
                persistent_workers=self.loader.persistent_workers,
                prefetch_factor=self.loader.prefetch_factor,
            )
        assert self._sampler is not None
        return self._loader, self._sampler


class LazyInputs:
    """``dataset.inputs`` of a :class:`StreamingDataset`: rows decoded when indexed."""

    def __init__(self, dataset: StreamingDataset):
        self._data = dataset

    def __len__(self) -> int:
        return len(self._data)

    @property
    def shape(self) -> torch.Size:
        return torch.Size((len(self._data), *self._data.input_shape))

    def dim(self) -> int:
        return 1 + len(self._data.input_shape)

    def __getitem__(self, key: Any) -> Tensor:
        positions = torch.arange(len(self._data))[key]
        if positions.ndim == 0:
            return self[[int(positions)]][0]
        rows = self._data.rows[positions]
        out = [self._data.transform(self._data.source.read(rows[s : s + 256]))
               for s in range(0, len(rows), 256)]
        if not out:
            return torch.empty((0, *self._data.input_shape))
        return torch.cat(out)

    def __iter__(self) -> Iterator[Tensor]:
        for i in range(len(self._data)):
            yield self[i]

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        raise DatasetError(
            "the inputs of a streaming dataset are read lazily and are not one array; index "
            "them (dataset.inputs[:100]) or call dataset.materialize() for data that fits in "
            "memory"
        )
