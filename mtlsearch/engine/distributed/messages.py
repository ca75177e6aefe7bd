"""Talking between ranks: the ``torchrun`` environment and JSON messages broadcast as bytes (never pickles)."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

from mtlsearch.errors import DistributedAbort, MTLSearchError

log = logging.getLogger(__name__)

#: Seconds a rank may wait in one collective (rank 0 may compute alone for long: the
#: reference, an affinity stage, a policy phase). ``MTLSEARCH_DIST_TIMEOUT`` overrides it.
DEFAULT_TIMEOUT_S = 6 * 3600


class LeaderStopped(Exception):
    """Raised on a follower when rank 0 stopped the current training (pruned, an error)."""


# ----------------------------------------------------------------------------- environment
@dataclass(frozen=True)
class TorchrunEnv:
    """What ``torchrun`` tells each process through its environment."""

    rank: int
    world_size: int
    local_rank: int


def torchrun_env(environ: Mapping[str, str] | None = None) -> TorchrunEnv | None:
    """The rank, world size and local rank set by ``torchrun``; ``None`` outside it (or N=1).

    Example:
        >>> torchrun_env({"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1"})
        TorchrunEnv(rank=1, world_size=2, local_rank=1)
        >>> torchrun_env({}) is None
        True
    """
    env = os.environ if environ is None else environ
    if "WORLD_SIZE" not in env:
        return None
    try:
        world = int(env["WORLD_SIZE"])
        rank = int(env.get("RANK", "0"))
        local = int(env.get("LOCAL_RANK", str(rank)))
    except ValueError:
        raise MTLSearchError(
            f"WORLD_SIZE/RANK/LOCAL_RANK must be integers, got {env.get('WORLD_SIZE')!r}/"
            f"{env.get('RANK')!r}/{env.get('LOCAL_RANK')!r}; start the ranks with torchrun"
        ) from None
    if world <= 1:
        return None
    if not 0 <= rank < world:
        raise MTLSearchError(f"RANK={rank} is outside 0..{world - 1} (WORLD_SIZE={world})")
    return TorchrunEnv(rank, world, local)


# ----------------------------------------------------------------------------- JSON messages
def encode_json(obj: Any) -> Tensor:
    """``obj`` as UTF-8 JSON bytes in a 1-D ``uint8`` tensor (values JSON cannot hold are
    written as their ``str()``; NaN and infinities as JSON's usual extensions)."""
    data = json.dumps(obj, separators=(",", ":"), default=str).encode("utf-8")
    return torch.frombuffer(bytearray(data), dtype=torch.uint8)


def decode_json(tensor: Tensor) -> Any:
    """The object :func:`encode_json` wrote into ``tensor``."""
    data = tensor.detach().to("cpu", torch.uint8).numpy().tobytes()
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DistributedAbort(
            f"a message between the ranks is not valid JSON ({exc}); the ranks are out of "
            "step: restart torchrun"
        ) from None


def broadcast_json(
    obj: Any = None, *, src: int = 0, device: torch.device | str = "cpu", group: Any = None
) -> Any:
    """Send ``obj`` (on rank ``src``) to every rank; every rank returns the object.

    Two broadcasts: the length (``int64``), then the bytes. ``device`` must be CUDA with the
    ``nccl`` backend. No pickle: a message can only carry JSON.
    """
    device = torch.device(device)
    if dist.get_rank() == src:
        payload = encode_json(obj).to(device)
        size = torch.tensor([payload.numel()], dtype=torch.int64, device=device)
    else:
        size = torch.zeros(1, dtype=torch.int64, device=device)
    dist.broadcast(size, src, group=group)
    if dist.get_rank() != src:
        payload = torch.empty(int(size.item()), dtype=torch.uint8, device=device)
    dist.broadcast(payload, src, group=group)
    return obj if dist.get_rank() == src else decode_json(payload)


def broadcast_bool(value: bool, device: torch.device) -> bool:
    flag = torch.tensor([1 if value else 0], dtype=torch.int64, device=device)
    dist.broadcast(flag, 0)
    return bool(flag.item())


def broadcast_tensors(tensors: Sequence[Tensor]) -> None:
    """Copy rank 0's values of ``tensors`` into every rank's, one broadcast per dtype."""
    by_dtype: dict[torch.dtype, list[Tensor]] = {}
    for t in tensors:
        by_dtype.setdefault(t.dtype, []).append(t)
    for group in by_dtype.values():
        flat = torch.cat([t.detach().reshape(-1) for t in group])
        dist.broadcast(flat, 0)
        offset = 0
        with torch.no_grad():
            for t in group:
                t.copy_(flat[offset : offset + t.numel()].view_as(t))
                offset += t.numel()


