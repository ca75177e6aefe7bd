"""One candidate on several GPUs: DistributedDataParallel under ``torchrun``.

``torchrun --nproc-per-node N -m mtlsearch search ...`` (or a script calling
:func:`mtlsearch.search` started by ``torchrun``) starts N processes, the *ranks*. This module
lets them train every candidate together:

* Rank 0 owns everything Optuna: the storage, the study, each trial, the strategy's proposal
  and the scoring. The other ranks never open the storage.
* Every training that goes through :meth:`SearchContext.train <mtlsearch.strategy.context.SearchContext.train>`
  on rank 0 (the single-task reference, the candidate of each trial, and the trainings a
  strategy runs through ``ctx.train`` inside its proposal) is announced to the other ranks as
  one JSON message, broadcast as bytes in a ``uint8`` tensor (never
  ``broadcast_object_list``, which pickles): the graph JSON, the training settings (seed
  included) and whether rank 0 has per-step callbacks. Every rank materializes the same
  model, wraps it in ``DistributedDataParallel`` and trains on its shard of every batch: the
  batches are the single-process run's (same seed, same order, same size), cut into N
  contiguous shards, and each rank's loss is scaled by ``N * shard / batch`` so that the
  averaged gradient is the whole batch's. Batch normalisation is synchronised over the ranks
  (:class:`SyncBatchNorm` semantics, on the CPU too), so the statistics are the whole batch's.
  The metrics therefore match a single-process run up to floating-point summation order.
* Rank 0 validates, runs the epoch callbacks (pruning, observers, a dynamic strategy's
  ``on_epoch_end``) and broadcasts the outcome: a new graph (every rank re-materializes it and
  wraps it again; the new wrapper copies rank 0's weights to every rank), or a stop (pruned,
  an error), or nothing. Rank 0 also decides when training ends (early stopping, step budget)
  and tells the others. With per-step callbacks (a strategy's ``on_backward``, which only
  rank 0 runs) rank 0's weights are broadcast after the callbacks, before each optimizer step,
  so a callback that edits weights cannot make the ranks drift apart.
* Stages that train with their own loop, not ``ctx.train`` (the recombined networks of
  ``affinity_tree``'s ``full``/``subset`` estimators, ``gumbel_policy``'s policy phase), run on
  rank 0 alone while the others wait.

This is our equivalent of Optuna's ``TorchDistributedTrial`` (in the separate
``optuna-integration`` package): rank 0 alone talks to Optuna, the others follow what it
broadcasts.

Example:
    >>> decode_json(encode_json({"op": "train", "lr": 0.001}))
    {'op': 'train', 'lr': 0.001}
"""

from __future__ import annotations

from mtlsearch.engine.distributed.ddp import DDPTraining, shard_bounds
from mtlsearch.engine.distributed.messages import (
    DEFAULT_TIMEOUT_S,
    TorchrunEnv,
    broadcast_json,
    decode_json,
    encode_json,
    torchrun_env,
)
from mtlsearch.engine.distributed.session import Session, torchrun_session
from mtlsearch.engine.distributed.sync_batchnorm import sync_batchnorm, unsync_batchnorm
from mtlsearch.errors import DistributedAbort

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "DDPTraining",
    "DistributedAbort",
    "Session",
    "TorchrunEnv",
    "broadcast_json",
    "decode_json",
    "encode_json",
    "shard_bounds",
    "sync_batchnorm",
    "torchrun_env",
    "torchrun_session",
    "unsync_batchnorm",
]
