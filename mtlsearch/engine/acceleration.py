"""How training and evaluation use an accelerator: mixed precision, memory format, compile, data.

The trainer asks :func:`resolve` once per fit. Every choice is a :class:`TrainConfig` field
whose ``None`` means "the fast choice for this device": bf16 autocast on a GPU that supports
it, channels-last for image inputs on CUDA, the whole dataset copied to the
GPU when it takes at most a quarter of the free memory (otherwise each batch goes through
pinned memory with a non-blocking copy). ``torch.compile`` is opt-in (``compile=True``): it
pays off only on long runs. Every choice is deterministic: same seed, same result on the CPU.

Example:
    >>> import torch
    >>> from mtlsearch.engine.train import TrainConfig
    >>> resolve(TrainConfig(), torch.device("cpu"), input_ndim=4).amp
    False
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from mtlsearch.data.dataset import MultiTaskDataset

__all__ = [
    "Acceleration",
    "resolve",
    "prepare_model",
    "uses_channels_last",
    "to_device_batch",
    "device_dataset",
]

log = logging.getLogger(__name__)

# Share of the GPU's free memory a dataset may take to be kept there whole.
DEVICE_DATA_SHARE = 0.25


@dataclass(frozen=True)
class Acceleration:
    """The resolved choices for one fit (see the module docstring)."""

    amp: bool
    channels_last: bool
    compile: bool
    data_on_device: bool

    def autocast(self, device: torch.device) -> contextlib.AbstractContextManager:
        """bf16 autocast when ``amp``, else a no-op context."""
        if not self.amp:
            return contextlib.nullcontext()
        return torch.autocast(device.type, dtype=torch.bfloat16)


def _bf16_supported(device: torch.device) -> bool:
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    return False


def _fits_on_device(dataset: Any, device: torch.device) -> bool:
    if dataset is None or device.type != "cuda":
        return False
    if not isinstance(dataset, MultiTaskDataset):
        return False  # a streaming dataset is read batch by batch (pinned memory)
    size = dataset.inputs.numel() * dataset.inputs.element_size()
    size += sum(t.numel() * t.element_size() for t in dataset.targets.values())
    free, _ = torch.cuda.mem_get_info(device)
    return size <= DEVICE_DATA_SHARE * free


def resolve(
    config: Any,
    device: torch.device,
    *,
    input_ndim: int,
    datasets: Sequence[Any] = (),
) -> Acceleration:
    """Turn a :class:`~mtlsearch.engine.train.TrainConfig`'s ``None`` (automatic) fields into choices.

    Args:
        config: The training settings (``amp``, ``channels_last``, ``compile``,
            ``data_on_device``).
        device: Where training runs.
        input_ndim: Dimensions of one batch of inputs (4 for images).
        datasets: The splits that would be copied to the device (a streaming dataset,
            :class:`mtlsearch.data.streaming.StreamingDataset`, never is: its batches go
            through its DataLoader's pinned memory).
    """
    cuda = device.type == "cuda"
    amp = _bf16_supported(device) if config.amp is None else bool(config.amp)
    if amp and device.type == "cpu":
        amp = False  # bf16 autocast on the CPU is slower than fp32 on most machines
    if config.channels_last is None:
        # CUDA only. On the CPU channels-last is faster (small-CNN train step 1.5x, ResNet-18
        # 1.2x) but torch 2.15's CPU backward of a channels-last 1x1 stride-2 convolution with
        # 8 input channels on 64x64 inputs segfaults (a ResNet projection): opt-in there.
        channels_last = device.type == "cuda"
    else:
        channels_last = bool(config.channels_last)
    channels_last = channels_last and input_ndim == 4
    if config.data_on_device is None:
        on_device = cuda and all(_fits_on_device(d, device) for d in datasets if d is not None)
    else:
        on_device = bool(config.data_on_device) and device.type != "cpu"
        streamed = [d for d in datasets if d is not None and not isinstance(d, MultiTaskDataset)]
        if on_device and streamed:
            log.warning("data_on_device=True is ignored: a streaming dataset is read batch by "
                        "batch")
            on_device = False
    return Acceleration(amp=amp, channels_last=channels_last, compile=bool(config.compile),
                        data_on_device=on_device)


def uses_channels_last(model: torch.nn.Module) -> bool:
    """Whether the model's 4-D weights are stored channels-last.

    Weights with one input channel or a 1x1 kernel look the same in both layouts; the first
    weight whose layout can be told decides.
    """
    for p in model.parameters():
        if p.dim() == 4:
            last = p.is_contiguous(memory_format=torch.channels_last)
            if last != p.is_contiguous():
                return last
    return False


def prepare_model(model: torch.nn.Module, accel: Acceleration) -> torch.nn.Module:
    """Convert ``model`` in place to the chosen memory format; return what to call forward on.

    The returned callable is ``torch.compile(model)`` when compiling (the model itself stays
    the owner of the weights: state dicts, callbacks and exports use it), else ``model``.
    """
    if accel.channels_last:
        model.to(memory_format=torch.channels_last)
    if accel.compile:
        return torch.compile(model)
    return model


def device_dataset(dataset: MultiTaskDataset, device: torch.device) -> MultiTaskDataset:
    """A copy of ``dataset`` whose tensors live on ``device`` (same rows, same order)."""
    new = object.__new__(MultiTaskDataset)
    new.inputs = dataset.inputs.to(device)
    new.tasks = dataset.tasks
    new.targets = {k: v.to(device) for k, v in dataset.targets.items()}
    return new


def to_device_batch(
    batch: tuple[Tensor, Mapping[str, Tensor]],
    device: torch.device,
    tasks: Sequence[str],
    *,
    channels_last: bool = False,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Move the inputs and the targets of ``tasks`` (only those are read) to ``device``.

    CPU tensors bound for CUDA go through pinned memory so the copy is asynchronous and
    the host never waits for the GPU inside a training step.
    """
    x, y = batch
    cuda = device.type == "cuda"

    def move(t: Tensor) -> Tensor:
        if t.device == device:
            return t
        if cuda and t.device.type == "cpu":
            return t.pin_memory().to(device, non_blocking=True)
        return t.to(device)

    x = move(x)
    if channels_last and x.dim() == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    return x, {t: move(y[t]) for t in tasks}
