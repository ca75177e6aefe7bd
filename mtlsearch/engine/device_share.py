"""How many candidate trainings share one GPU.

A search trains many small candidates, and one small CNN leaves an H100-class GPU mostly
idle. Several worker processes on one device keep it busy; how many fit is a memory
question. The rule (docs/gpu.md, "Several trainings on one GPU"):

    trainings = min(cap, floor(share x free memory / (peak of one training + context)))

* **peak of one training**: measured, not guessed: one training step of the *largest*
  candidate the search can propose (every task its own branch: the single-task tree, the most
  parameters, optimizer state and activations) at the search's batch size and input shape,
  read from ``torch.cuda.max_memory_allocated`` (:func:`measure_training_peak`);
* **context**: what each extra process costs before it allocates a tensor (its CUDA context
  and the caching allocator's slack), :data:`CONTEXT_BYTES`, 500 MiB: a conservative figure
  for recent drivers (the context alone is 300-500 MiB), not measured here;
* **share**: :data:`MEMORY_SHARE` of the free memory, the rest left for fragmentation and
  for the other processes' growth;
* **cap**: at most :data:`MAX_TRAININGS` (and never more than the CPU cores that feed them).

At least one training always runs: a candidate larger than the rule allows still trains
alone, as it would without sharing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from mtlsearch.defaults import usable_cores
from mtlsearch.errors import MTLSearchError

__all__ = ["CONTEXT_BYTES", "MEMORY_SHARE", "MAX_TRAININGS", "DeviceShare",
           "trainings_per_device", "measure_training_peak", "plan_device_share"]

#: Memory one more process on the GPU costs before its first tensor (CUDA context, allocator).
CONTEXT_BYTES = 500 * 2**20
#: Share of the GPU's free memory the trainings may fill together.
MEMORY_SHARE = 0.8
#: Most trainings on one GPU: beyond this the kernels of small models queue on the device.
MAX_TRAININGS = 8


@dataclass(frozen=True)
class DeviceShare:
    """The decision and the figures it came from (what ``search`` logs and records)."""

    trainings: int
    peak_bytes: int
    free_bytes: int
    context_bytes: int
    share: float
    cap: int

    def describe(self) -> str:
        """One line: how many and why."""
        mib = 2**20
        return (f"{self.trainings} training(s) on the GPU: {self.share:.0%} of "
                f"{self.free_bytes / mib:,.0f} MiB free / ({self.peak_bytes / mib:,.0f} MiB "
                f"peak of the largest candidate + {self.context_bytes / mib:,.0f} MiB per "
                f"process), at most {self.cap}")


def trainings_per_device(peak_bytes: int, free_bytes: int, *,
                         context_bytes: int = CONTEXT_BYTES, share: float = MEMORY_SHARE,
                         cap: int = MAX_TRAININGS) -> DeviceShare:
    """How many trainings with this measured peak fit in ``free_bytes`` (the module's rule).

    Example:
        >>> trainings_per_device(300 * 2**20, 10 * 2**30).trainings  # 0.8 x 10 GiB / 800 MiB
        8
        >>> trainings_per_device(3 * 2**30, 10 * 2**30).trainings    # 8 GiB / 3.5 GiB
        2
    """
    if peak_bytes < 0 or free_bytes < 0 or context_bytes < 0:
        raise MTLSearchError(f"memory figures must not be negative: peak {peak_bytes}, free "
                             f"{free_bytes}, context {context_bytes}")
    if not 0 < share <= 1:
        raise MTLSearchError(f"share must be in (0, 1], got {share}")
    if cap < 1:
        raise MTLSearchError(f"cap must be at least 1, got {cap}")
    fit = math.floor(share * free_bytes / max(1, peak_bytes + context_bytes))
    return DeviceShare(max(1, min(cap, fit)), int(peak_bytes), int(free_bytes),
                       int(context_bytes), float(share), int(cap))


def measure_training_peak(space: Any, dataset: Any, *, batch_size: int,
                          device: torch.device | str) -> int:
    """Peak bytes of one training step of the largest candidate (the single-task tree).

    One forward + backward + Adam step on the first batch of ``dataset`` (the training
    split: its tasks and input shape), in a fresh model that is freed afterwards.

    Raises:
        MTLSearchError: ``device`` is not a CUDA device (only CUDA reports peak memory).
    """
    from mtlsearch.engine.model import materialize
    from mtlsearch.engine.train import task_losses
    from mtlsearch.graph.sharing import SharingGraph

    device = torch.device(device)
    if device.type != "cuda":
        raise MTLSearchError(f"measuring a training's GPU memory needs a CUDA device, got "
                             f"{device}; on the CPU, workers follow the cores instead")
    tasks = list(dataset.tasks)
    graph = SharingGraph.single_task([t.name for t in tasks], space.num_blocks)
    inputs, batch_targets = next(iter(dataset.batches(batch_size)))
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    base = torch.cuda.memory_allocated(device)
    model = materialize(graph, space, tasks).to(device)
    optimizer = torch.optim.Adam(model.parameters())
    x = inputs.to(device)
    targets = {t.name: batch_targets[t.name].to(device) for t in tasks}
    try:
        losses = task_losses(model, model(x), targets)
        sum(losses.values()).backward()
        optimizer.step()
        torch.cuda.synchronize(device)
        return int(torch.cuda.max_memory_allocated(device) - base)
    finally:
        del model, optimizer, x
        torch.cuda.empty_cache()


def plan_device_share(space: Any, dataset: Any, *, batch_size: int,
                      device: torch.device | str, cap: int | None = None) -> DeviceShare:
    """Measure the largest candidate on ``device`` and apply the rule; ``cap`` defaults to
    :data:`MAX_TRAININGS` and the usable CPU cores, whichever is smaller."""
    device = torch.device(device)
    peak = measure_training_peak(space, dataset, batch_size=batch_size, device=device)
    free, _total = torch.cuda.mem_get_info(device)
    limit = cap if cap is not None else min(MAX_TRAININGS, usable_cores())
    return trainings_per_device(peak, free, cap=limit)
