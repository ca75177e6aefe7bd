"""The soft forward of the policy phase: one block per index shared by all tasks, per-task mixing.

The discrete executor (:mod:`mtlsearch.engine.model`) runs fixed routes; the policy phase needs, per
task and block, ``v * block(x) + (1 - v) * block.shortcut(x)`` with a continuous ``v``. The
supernet wraps a materialized *hard-sharing* :class:`~mtlsearch.engine.model.MultiTaskModel` (its block
and head modules, so its state dict is that model's) and adds that mixing. While every task
still executes every block, the activations are computed once; from the first block with a
policy on, the T tasks' activations are stacked along the batch (one pass per block, like the
core's trie executor), so a soft forward costs about T hard-sharing forwards.

Example:
    >>> import torch
    >>> from mtlsearch import SharingGraph, TaskSpec, create_space, materialize
    >>> space = create_space("mlp", input_shape=(4,), widths=(8, 8))
    >>> tasks = [TaskSpec("a"), TaskSpec("b")]
    >>> net = PolicySupernet(materialize(SharingGraph.hard_sharing(["a", "b"], 2), space, tasks))
    >>> net.policy_blocks
    [1]
    >>> out = net(torch.zeros(3, 4), [None, torch.tensor([1.0, 0.0])])
    >>> sorted(out)
    ['a', 'b']
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from mtlsearch.engine.model import MultiTaskModel, module_key
from mtlsearch.errors import GraphError, MTLSearchError

__all__ = ["PolicySupernet"]


class PolicySupernet(nn.Module):
    """Soft select-or-skip forward over a hard-sharing model's blocks and heads.

    Args:
        model: A materialized hard-sharing model (one node per block index, no skips or masks).

    Attributes:
        model: The wrapped model; training the supernet trains its weights.
        task_specs: The model's task specs (so :func:`mtlsearch.engine.train.task_losses` applies).
        policy_blocks: Indices of the blocks a task may skip (the search space's ``skip`` is
            not ``"none"``); the others always run.
    """

    def __init__(self, model: MultiTaskModel):
        super().__init__()
        graph = model.graph
        if graph.branches_per_depth() != [1] * graph.num_blocks or any(graph.skips().values()) or graph.masks():
            raise GraphError(
                "PolicySupernet needs a hard-sharing model (one node per block, no skips or "
                "masks); materialize SharingGraph.hard_sharing(...) first"
            )
        self.model = model
        self.task_specs = model.task_specs
        self.tasks = model.tasks
        self._blocks = [model.blocks[module_key(graph.block_nodes(i)[0])] for i in range(graph.num_blocks)]
        self._heads = [model.heads[module_key(t)] for t in self.tasks]
        self.policy_blocks = [b.index for b in model.space.blocks if b.skip != "none"]

    def forward(self, x: Tensor, decisions: Sequence[Tensor | None] | None = None) -> dict[str, Tensor]:
        """Task outputs under per-block execute weights.

        Args:
            x: A batch of inputs.
            decisions: One entry per block: ``None`` (every task executes it) or a tensor of
                execute weights in [0, 1] (only for policy blocks), ``(tasks,)`` for the whole
                batch or ``(tasks, batch)`` per sample. ``None`` for all blocks is the
                hard-sharing forward.
        """
        n = len(self._blocks)
        decisions = [None] * n if decisions is None else list(decisions)
        if len(decisions) != n:
            raise MTLSearchError(f"need one decision entry per block ({n}), got {len(decisions)}")
        T, B = len(self.tasks), x.shape[0]
        h, stacked = x, False  # stacked: h holds the T tasks' activations, (T*B, ...)
        for i, (block, v) in enumerate(zip(self._blocks, decisions)):
            if v is None:
                h = block(h)
                continue
            if i not in self.policy_blocks:
                raise MTLSearchError(f"block {i} cannot be skipped, so its decision must be None")
            fx, sc = block(h), block.shortcut(h)
            ones = [1] * (fx.ndim - 1)
            per_sample = v.ndim == 2  # (T, B): one decision per task and sample
            if not stacked:  # same input for all tasks: mix the shared result per task
                v = v.to(fx.dtype).reshape(T, B if per_sample else 1, *ones)
                h = (v * fx.unsqueeze(0) + (1 - v) * sc.unsqueeze(0)).reshape(T * B, *fx.shape[1:])
                stacked = True
            else:
                v = v.to(fx.dtype)
                v = (v.reshape(T * B) if per_sample else v.repeat_interleave(B)).reshape(T * B, *ones)
                h = v * fx + (1 - v) * sc
        if not stacked:
            return {t: head(h) for t, head in zip(self.tasks, self._heads)}
        parts = h.split(B)
        return {t: head(p) for t, head, p in zip(self.tasks, self._heads, parts)}

    def forward_macs(self, decided: Sequence[bool] | None = None) -> int:
        """Forward MACs per sample of :meth:`forward` when ``decided[i]`` says block ``i`` has a
        decision (is not ``None``); default: no decisions, the hard-sharing forward.

        Blocks before the first decided one run once; from there on every block runs on the T
        tasks' stacked activations (a decided block also computes its shortcut), then the T
        heads. This is what a policy-phase step costs, up to T times a hard-sharing forward.
        """
        n = len(self._blocks)
        decided = [False] * n if decided is None else [bool(d) for d in decided]
        if len(decided) != n:
            raise MTLSearchError(f"need one entry per block ({n}), got {len(decided)}")
        space, T = self.model.space, len(self.tasks)
        macs, copies = 0, 1
        for i, d in enumerate(decided):
            copies = T if d else copies  # stacked from the first decided block on
            macs += copies * space.block_cost(i).macs
            if d:
                macs += T * space.skip_cost(i).macs
        macs += sum(space.head_cost(s).macs for s in self.task_specs)
        return int(macs)

    def weights(self) -> list[nn.Parameter]:
        """The network's parameters (blocks and heads)."""
        return list(self.model.parameters())

    def set_weights_trainable(self, flag: bool) -> None:
        """Switch gradients of the network's weights on or off (the policy phase needs none)."""
        for p in self.model.parameters():
            p.requires_grad_(flag)
