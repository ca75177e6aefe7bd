"""How raw inputs become the float tensors a network takes: resize, scale, normalise, augment.

A :class:`Preprocessing` is plain data (JSON through :meth:`~Preprocessing.to_dict` and
:meth:`~Preprocessing.from_dict`): a dataset carries it (``DatasetSplits.preprocessing``), a
search trains with it, an export records it and :func:`~mtlsearch.export.load` gives it back
(``model.preprocessing``), so new inputs are prepared exactly as the training inputs were.

The steps, in order, all built on :mod:`torchvision.transforms.v2`:

1. decode (files only): any format PIL reads, converted to ``channels`` (1 = grey, 3 = RGB);
2. resize to ``image_size`` (``(height, width)``; tensors resized with antialiasing, so a
   file and the same pixels given as an array become the same tensor);
3. train only: augmentation (random crop after zero padding, random horizontal flip), drawn
   per sample from a :class:`torch.Generator` or from torch's global seed;
4. ``uint8`` to ``float32`` (divided by 255 when ``scale``; floats are kept as they are);
5. normalisation by the dataset's ``mean``/``std`` (per channel for images, per column for
   tables). A pretrained backbone's own normalisation is applied inside the network (the search
   space's ``input_normalization``), so leave ``mean``/``std`` unset there.

Example:
    >>> import torch
    >>> prep = Preprocessing(image_size=(8, 8), channels=3, mean=(0.5,) * 3, std=(0.25,) * 3,
    ...                      augment=Augmentation(flip=True, crop=1))
    >>> images = torch.randint(0, 256, (4, 3, 10, 12), dtype=torch.uint8)
    >>> prep.train_transform(torch.Generator().manual_seed(0))(images).shape
    torch.Size([4, 3, 8, 8])
    >>> Preprocessing.from_dict(prep.to_dict()) == prep
    True
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from mtlsearch.errors import DatasetError

__all__ = [
    "IMAGE_SUFFIXES",
    "Augmentation",
    "BatchTransform",
    "Preprocessing",
    "list_images",
]

#: File name endings taken as images when a folder is listed (PIL reads them all).
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm",
                  ".pgm")
_INTERPOLATIONS = ("bilinear", "bicubic", "nearest")
_PIL_MODES = {1: "L", 3: "RGB"}
_MAX_SIDE = 65536  # larger than any real image side; a typo such as 640000 is refused


def _check_int(value: Any, what: str, *, low: int = 1, high: int = _MAX_SIDE) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not (
        low <= int(value) <= high
    ):
        raise DatasetError(f"{what} must be an integer from {low} to {high}, got {value!r}")
    return int(value)


@dataclass(frozen=True)
class Augmentation:
    """Train-only augmentation: random horizontal flips and random crops after padding.

    Args:
        flip: Flip each training image left-right with probability 0.5.
        crop: Pad each side by ``crop`` pixels (zeros) and take a random crop of the
            original size (the CIFAR recipe); ``None`` or ``0``: no crop.

    Example:
        >>> Augmentation(flip=True, crop=4).to_dict()
        {'flip': True, 'crop': 4}
    """

    flip: bool = False
    crop: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.flip, bool):
            raise DatasetError(f"augment flip must be true or false, got {self.flip!r}")
        if self.crop is not None:
            object.__setattr__(self, "crop", _check_int(self.crop, "augment crop (padding in "
                                                        "pixels)", low=0, high=4096) or None)

    @property
    def active(self) -> bool:
        """Whether any augmentation is on."""
        return self.flip or bool(self.crop)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form: ``{"flip": bool, "crop": padding or None}``."""
        return {"flip": self.flip, "crop": self.crop}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> Augmentation:
        """The inverse of :meth:`to_dict`; an unknown key is an error naming the known ones."""
        if data is None:
            return cls()
        if not isinstance(data, Mapping):
            raise DatasetError(f"augment must be an object such as {{'flip': true, 'crop': 4}}, "
                               f"got {type(data).__name__}")
        _refuse_unknown(data, cls, "augment")
        return cls(**dict(data))


def _refuse_unknown(data: Mapping[str, Any], cls: type, what: str) -> None:
    known = [f.name for f in fields(cls)]
    unknown = sorted(str(k) for k in data if k not in known)
    if unknown:
        raise DatasetError(f"{what} has unknown keys {unknown}; the known keys are {known}")


@dataclass(frozen=True)
class Preprocessing:
    """How a dataset's raw inputs become the network's float inputs (see the module doc).

    Args:
        image_size: ``(height, width)`` images are resized to (an int: square); ``None``:
            kept at their size (all inputs must then share it to form a batch).
        channels: 1 (grey) or 3 (RGB): decoded files are converted to it, and arrays with
            another channel count are refused; ``None``: as decoded/given.
        scale: ``uint8`` inputs are divided by 255 (to ``[0, 1]``); float inputs are never
            rescaled.
        mean, std: The dataset's normalisation, ``(x - mean) / std`` per channel (images) or
            per column (tables); both or neither.
        augment: Train-only :class:`Augmentation` (images only).
        interpolation: ``"bilinear"`` (default), ``"bicubic"`` or ``"nearest"`` (for label
            maps).
        input_columns: For table datasets, the columns that form the inputs, in order
            (recorded so that ``predict`` on a new table takes the same columns).

    Example:
        >>> Preprocessing(image_size=32, channels=3).image_size
        (32, 32)
    """

    image_size: tuple[int, int] | None = None
    channels: int | None = None
    scale: bool = True
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    augment: Augmentation = field(default_factory=Augmentation)
    interpolation: str = "bilinear"
    input_columns: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        set_ = object.__setattr__  # frozen: normalise the fields once, here
        size = self.image_size
        if size is not None:
            if isinstance(size, (int, np.integer)) and not isinstance(size, bool):
                size = (size, size)
            if not isinstance(size, Sequence) or isinstance(size, str) or len(size) != 2:
                raise DatasetError(f"image_size must be (height, width) or one integer, got "
                                   f"{self.image_size!r}")
            set_(self, "image_size", tuple(_check_int(n, "image_size") for n in size))
        if self.channels is not None and (
            isinstance(self.channels, bool) or not isinstance(self.channels, (int, np.integer))
            or int(self.channels) not in _PIL_MODES
        ):
            raise DatasetError(f"channels must be 1 (grey) or 3 (RGB), got {self.channels!r}")
        if not isinstance(self.scale, bool):
            raise DatasetError(f"scale must be true or false, got {self.scale!r}")
        if (self.mean is None) != (self.std is None):
            raise DatasetError("give both mean and std (the dataset's normalisation), or neither")
        if self.mean is not None:
            mean, std = _floats(self.mean, "mean"), _floats(self.std, "std")
            if len(mean) != len(std):
                raise DatasetError(f"mean has {len(mean)} values but std has {len(std)}; give "
                                   "one of each per channel (or per input column)")
            if any(s <= 0 for s in std):
                raise DatasetError(f"std must be positive (it divides), got {list(std)}")
            if self.channels is not None and len(mean) not in (1, self.channels) and (
                self.input_columns is None
            ):
                raise DatasetError(f"mean and std have {len(mean)} values for {self.channels} "
                                   "channels; give one value per channel")
            set_(self, "mean", mean)
            set_(self, "std", std)
        if isinstance(self.augment, Mapping):
            set_(self, "augment", Augmentation.from_dict(self.augment))
        if not isinstance(self.augment, Augmentation):
            raise DatasetError(f"augment must be an Augmentation or a dict, got "
                               f"{type(self.augment).__name__}")
        if self.interpolation not in _INTERPOLATIONS:
            raise DatasetError(f"interpolation {self.interpolation!r} is not known; choose one "
                               f"of {list(_INTERPOLATIONS)}")
        if self.input_columns is not None:
            cols = self.input_columns
            if isinstance(cols, str) or not isinstance(cols, Sequence) or not cols or not all(
                isinstance(c, str) and c for c in cols
            ):
                raise DatasetError(f"input_columns must be a non-empty list of column names, got "
                                   f"{cols!r}")
            if len(set(cols)) != len(cols):
                raise DatasetError(f"input_columns names a column twice: {list(cols)}")
            set_(self, "input_columns", tuple(cols))
            if self.mean is not None and len(self.mean) not in (1, len(cols)):
                raise DatasetError(f"mean and std have {len(self.mean)} values for "
                                   f"{len(cols)} input columns; give one per column")

    # ------------------------------------------------------------------------- JSON form
    def to_dict(self) -> dict[str, Any]:
        """The JSON form (lists for tuples); :meth:`from_dict` reads it back equal."""
        return {
            "image_size": list(self.image_size) if self.image_size else None,
            "channels": self.channels,
            "scale": self.scale,
            "mean": list(self.mean) if self.mean is not None else None,
            "std": list(self.std) if self.std is not None else None,
            "augment": self.augment.to_dict(),
            "interpolation": self.interpolation,
            "input_columns": list(self.input_columns) if self.input_columns else None,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Preprocessing:
        """Build from :meth:`to_dict`'s form; unknown keys are refused, naming the known ones.

        Raises:
            DatasetError: not an object, an unknown key or an invalid value.
        """
        if not isinstance(data, Mapping):
            raise DatasetError(f"a preprocessing record must be an object, got "
                               f"{type(data).__name__}")
        _refuse_unknown(data, cls, "the preprocessing record")
        values = dict(data)
        for key in ("mean", "std", "input_columns", "image_size"):
            if isinstance(values.get(key), list):
                values[key] = tuple(values[key])
        return cls(**values)

    def without_augmentation(self) -> Preprocessing:
        """The same preprocessing with augmentation off (what prediction applies)."""
        return replace(self, augment=Augmentation())

    @property
    def is_image(self) -> bool:
        """Whether inputs are images (an ``image_size`` or ``channels`` is set)."""
        return self.image_size is not None or self.channels is not None

    # ------------------------------------------------------------------------ transforms
    def train_transform(self, generator: torch.Generator | None = None) -> BatchTransform:
        """The training transform: resize, augment (per sample), scale, normalise.

        Args:
            generator: Draws the augmentation; ``None`` uses torch's global RNG (so
                ``torch.manual_seed`` makes a run repeat).
        """
        return BatchTransform(self, train=True, generator=generator)

    def eval_transform(self) -> BatchTransform:
        """The evaluation/prediction transform: resize, scale, normalise (no augmentation)."""
        return BatchTransform(self, train=False)

    def torchvision_transform(self, *, train: bool = False) -> Any:
        """The same steps as a per-sample :class:`torchvision.transforms.v2.Compose`.

        For users' own ``Dataset`` pipelines (one image at a time, torch's global RNG). On a
        ``uint8`` image tensor its eval form gives what :meth:`eval_transform` gives.
        """
        from torchvision.transforms import v2

        steps: list[Any] = [v2.ToImage()]
        if self.image_size is not None:
            steps.append(v2.Resize(self.image_size, interpolation=self._mode(), antialias=True))
        if train and self.augment.crop:
            size = self.image_size
            steps.append(_LazyRandomCrop(self.augment.crop) if size is None else v2.RandomCrop(
                size, padding=self.augment.crop))
        if train and self.augment.flip:
            steps.append(v2.RandomHorizontalFlip(0.5))
        steps.append(v2.ToDtype(torch.float32, scale=self.scale))
        if self.mean is not None:
            steps.append(v2.Normalize(list(self.mean), list(self.std)))
        return v2.Compose(steps)

    def _mode(self) -> Any:
        from torchvision.transforms import InterpolationMode

        return InterpolationMode(self.interpolation)

    # ------------------------------------------------------------------------ new inputs
    def load_image(self, path: str | Path) -> Tensor:
        """One image file decoded to ``uint8`` ``(C, H, W)``, converted and resized.

        Raises:
            DatasetError: a missing file, or one PIL cannot read (named, with the fix).
        """
        from PIL import Image, UnidentifiedImageError
        from torchvision.transforms.v2 import functional as F

        path = Path(path)
        if not path.is_file():
            raise DatasetError(f"no image file {path}; check the path (or the file name in the "
                               "label table)")
        try:
            with Image.open(path) as img:
                img.load()
                mode = _PIL_MODES.get(self.channels or 0)
                if mode is None:  # keep grey as grey and everything else (palette, CMYK) RGB
                    mode = "L" if img.mode in ("L", "1", "I;16", "I", "F") else "RGB"
                if img.mode != mode:
                    img = img.convert(mode)
                image = F.pil_to_tensor(img)
        except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
            raise DatasetError(f"cannot read the image {path} ({type(exc).__name__}: "
                               f"{str(exc)[:200]}); replace or remove the file") from None
        return self.resize(image)

    def resize(self, images: Tensor) -> Tensor:
        """``images`` (``(C, H, W)`` or ``(N, C, H, W)``) resized to ``image_size``."""
        from torchvision.transforms.v2 import functional as F

        if self.image_size is None or tuple(images.shape[-2:]) == self.image_size:
            return images
        if images.is_floating_point() or images.dtype == torch.uint8:
            return F.resize(images, list(self.image_size), interpolation=self._mode(),
                            antialias=True)
        return F.resize(images.float(), list(self.image_size), interpolation=self._mode(),
                        antialias=True)

    def prepare_files(self, paths: Sequence[str | Path]) -> Tensor:
        """New image files as the network's inputs: decode, resize, scale, normalise.

        Raises:
            DatasetError: no paths, a missing or unreadable file (named), or images of
                different sizes without an ``image_size`` to bring them to one.
        """
        paths = list(paths)
        if not paths:
            raise DatasetError("no image files to prepare; give at least one")
        images = [self.load_image(p) for p in paths]
        return self.eval_transform()(_stack(images, paths))

    def prepare_array(self, array: np.ndarray | Tensor) -> Tensor:
        """A new batch of inputs as the network's inputs (no augmentation).

        Images may be ``(N, C, H, W)``, ``(N, H, W, C)`` when ``channels`` tells them apart,
        or ``(N, H, W)`` (grey); ``uint8`` is scaled when ``scale``, floats are kept. Tables
        are ``(N, columns)``.

        Raises:
            DatasetError: not numbers, or a channel count other than ``channels``.
        """
        if not isinstance(array, Tensor):
            array = np.asarray(array)
            if array.dtype.kind not in "biuf":
                raise DatasetError(f"the inputs are not numbers (dtype {array.dtype}); give a "
                                   "numeric array")
            array = torch.from_numpy(np.ascontiguousarray(array))
        return self.eval_transform()(array, batched=True)

    def prepare_table(self, table: Mapping[str, Any] | Any, *, where: str = "the table") -> Tensor:
        """The ``input_columns`` of a table (a DataFrame or ``{column: values}``) as inputs.

        Raises:
            DatasetError: no ``input_columns`` recorded, a missing column (the ones there are
                listed), or a column that is not numbers.
        """
        if not self.input_columns:
            raise DatasetError("this preprocessing records no input_columns, so a table cannot "
                               "be read as inputs; give the inputs as an array (.npz)")
        present = [str(c) for c in table.keys()]
        missing = [c for c in self.input_columns if c not in present]
        if missing:
            shown = ", ".join(present[:30]) + (" ..." if len(present) > 30 else "")
            raise DatasetError(f"{where} has no column(s) {missing}, which the model takes as "
                               f"inputs; its columns are: {shown}")
        columns = []
        for name in self.input_columns:
            values = np.asarray(table[name])
            if values.dtype.kind not in "biuf":
                try:
                    values = values.astype(np.float64)
                except (TypeError, ValueError):
                    raise DatasetError(f"column {name!r} of {where} is not numbers (e.g. "
                                       f"{values[0]!r}); the model takes it as a number"
                                       ) from None
            columns.append(values.astype(np.float32))
        return self.prepare_array(np.stack(columns, axis=1))


def _floats(values: Any, what: str) -> tuple[float, ...]:
    if isinstance(values, (int, float)) and not isinstance(values, bool):
        values = (values,)
    try:
        out = tuple(float(v) for v in values if not isinstance(v, bool))
    except (TypeError, ValueError):
        out = ()
    if not out or len(out) != len(list(values)) or not all(math.isfinite(v) for v in out):
        raise DatasetError(f"{what} must be a list of finite numbers (one per channel), got "
                           f"{values!r}")
    return out


def _stack(images: Sequence[Tensor], names: Sequence[Any]) -> Tensor:
    shapes = {tuple(im.shape) for im in images}
    if len(shapes) > 1:
        first = tuple(images[0].shape)
        odd = next(i for i, im in enumerate(images) if tuple(im.shape) != first)
        raise DatasetError(f"the images differ in size ({names[0]} is {first}, {names[odd]} is "
                           f"{tuple(images[odd].shape)}); set image_size to resize them to one")
    return torch.stack(list(images))


class _LazyRandomCrop(torch.nn.Module):
    """``RandomCrop`` to the image's own size, for preprocessing without an ``image_size``."""

    def __init__(self, padding: int):
        super().__init__()
        self.padding = padding

    def forward(self, image: Any) -> Any:
        from torchvision.transforms import v2

        return v2.RandomCrop(tuple(image.shape[-2:]), padding=self.padding)(image)


class BatchTransform:
    """A :class:`Preprocessing` applied to a batch: ``(N, C, H, W)`` (or one ``(C, H, W)``).

    Also takes a list of decoded images (PIL images or ``uint8`` tensors). Tables
    ``(N, columns)`` are only converted and normalised. Augmentation is drawn per sample.

    Example:
        >>> t = Preprocessing(channels=1).eval_transform()
        >>> t(torch.full((2, 1, 3, 3), 255, dtype=torch.uint8)).max().item()
        1.0
    """

    def __init__(self, prep: Preprocessing, *, train: bool,
                 generator: torch.Generator | None = None):
        self.prep, self.train, self.generator = prep, train, generator

    def __repr__(self) -> str:
        return f"BatchTransform({self.prep!r}, train={self.train})"

    def __call__(self, inputs: Tensor | Sequence[Any], *, batched: bool | None = None) -> Tensor:
        """Transform ``inputs``; ``batched=True`` takes a 3-D tensor as ``(N, H, W)`` grey
        images, ``False`` as one ``(C, H, W)`` image, ``None`` guesses by ``channels``."""
        x = self._as_batch(inputs)
        single = False
        prep = self.prep
        if prep.is_image or x.dim() >= 3:
            if x.dim() == 3 and prep.is_image and batched is not True and (
                batched is False or prep.channels is None or x.shape[0] == prep.channels
            ) and not isinstance(inputs, (list, tuple)):
                x, single = x.unsqueeze(0), True  # one image (C, H, W)
            x = self._layout(x)
            x = prep.resize(x)
            if self.train and prep.augment.active:
                x = self._augment(x)
        x = self._to_float(x)
        if prep.mean is not None:
            x = self._normalize(x)
        return x[0] if single else x

    # ------------------------------------------------------------------------------ steps
    def _as_batch(self, inputs: Tensor | Sequence[Any]) -> Tensor:
        if isinstance(inputs, Tensor):
            return inputs
        if isinstance(inputs, np.ndarray):
            return torch.from_numpy(np.ascontiguousarray(inputs))
        from torchvision.transforms.v2 import functional as F

        images = []
        for item in inputs:
            if not isinstance(item, Tensor):
                mode = _PIL_MODES.get(self.prep.channels or 0)
                if mode is not None and getattr(item, "mode", mode) != mode:
                    item = item.convert(mode)
                item = F.pil_to_tensor(item) if hasattr(item, "getbands") else torch.as_tensor(
                    np.asarray(item))
            images.append(self.prep.resize(self._layout(item.unsqueeze(0)))[0])
        if not images:
            raise DatasetError("no images to transform; give at least one")
        return _stack(images, [f"image {i}" for i in range(len(images))])

    def _layout(self, x: Tensor) -> Tensor:
        """``(N, C, H, W)`` from ``(N, H, W)`` or channel-last, checked against ``channels``."""
        want = self.prep.channels
        if x.dim() == 3:
            x = x.unsqueeze(1)  # (N, H, W): grey images
        if x.dim() != 4:
            raise DatasetError(f"images must be (N, C, H, W), (N, H, W, C) or (N, H, W); got "
                               f"shape {tuple(x.shape)}")
        if want is not None and x.shape[1] != want and x.shape[-1] == want:
            x = x.permute(0, 3, 1, 2).contiguous()  # channel-last (as decoders and PIL give)
        if want is not None and x.shape[1] != want:
            if want == 3 and x.shape[1] == 1:
                x = x.expand(-1, 3, -1, -1)
            else:
                raise DatasetError(f"the images have {x.shape[1]} channels but the model takes "
                                   f"{want}; convert them (e.g. to RGB) first")
        return x

    def _augment(self, x: Tensor) -> Tensor:
        from torchvision.transforms.v2 import functional as F

        n, c, h, w = x.shape
        gen = self.generator
        pad = self.prep.augment.crop
        if pad:
            # Every sample its own crop: pad once, then gather each sample's window.
            padded = F.pad(x, [pad, pad, pad, pad], fill=0)
            top = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
            left = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
            rows = (top[:, None] + torch.arange(h))[:, None, :, None]
            cols = (left[:, None] + torch.arange(w))[:, None, None, :]
            x = padded[torch.arange(n)[:, None, None, None], torch.arange(c)[None, :, None, None],
                       rows.to(padded.device), cols.to(padded.device)]
        if self.prep.augment.flip:
            flip = torch.rand(n, generator=gen) < 0.5
            if bool(flip.any()):
                x = x.clone()
                idx = flip.nonzero().flatten().to(x.device)
                x[idx] = F.horizontal_flip(x[idx])
        return x

    def _to_float(self, x: Tensor) -> Tensor:
        if x.dtype == torch.uint8 and self.prep.scale:
            from torchvision.transforms.v2 import functional as F

            return F.to_dtype(x, torch.float32, scale=True)
        if x.dtype == torch.bool or not x.is_floating_point() or x.dtype != torch.float32:
            return x.to(torch.float32)
        return x

    def _normalize(self, x: Tensor) -> Tensor:
        mean = torch.tensor(self.prep.mean, dtype=x.dtype, device=x.device)
        std = torch.tensor(self.prep.std, dtype=x.dtype, device=x.device)
        if x.dim() == 4:
            from torchvision.transforms.v2 import functional as F

            if len(mean) == 1 and x.shape[1] != 1:
                mean, std = mean.expand(x.shape[1]), std.expand(x.shape[1])
            return F.normalize(x, mean.tolist(), std.tolist())
        return (x - mean) / std  # tables: per column


def list_images(folder: str | Path) -> list[Path]:
    """The image files directly in ``folder`` (by suffix, see :data:`IMAGE_SUFFIXES`), sorted.

    Raises:
        DatasetError: no such folder, or no image in it.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(f"no folder {folder}; give a folder of images")
    found = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in
                   IMAGE_SUFFIXES)
    if not found:
        raise DatasetError(f"{folder} holds no image files (looked for {', '.join(IMAGE_SUFFIXES)})")
    return found
