"""AdaShare's policy regularisers and schedules (paper section 3, equations 2-5).

Policy logits have shape ``(tasks, blocks, 2)``; column 0 is *execute*, column 1 *skip*, so the
execute probability is ``α = softmax(logits)[..., 0]``. Blocks here are the *policy blocks*
(those the search space lets a task skip), numbered ``l = 1..L`` from the input.

Example:
    >>> import torch
    >>> logits = torch.zeros(2, 3, 2)          # α = 0.5 everywhere
    >>> round(float(sparsity_loss(logits)), 4)  # 6 * log(0.5)
    -4.1589
    >>> float(sharing_loss(logits))             # equal policies share everything
    0.0
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.nn import functional as F

from mtlsearch.errors import MTLSearchError

__all__ = [
    "EXECUTE",
    "SKIP",
    "execute_probability",
    "soft_decisions",
    "sparsity_loss",
    "sharing_loss",
    "depth_weights",
    "curriculum_count",
    "learning_mask",
    "temperature",
    "annealed_temperature",
]

EXECUTE, SKIP = 0, 1
SPARSITY_KINDS = ("paper", "code")
DEPTH_WEIGHTS = ("shifted", "paper", "code")


def execute_probability(logits: Tensor) -> Tensor:
    """``α`` of shape ``(tasks, blocks)``: the probability that each task executes each block."""
    return F.softmax(logits, dim=-1)[..., EXECUTE]


def soft_decisions(logits: Tensor, tau: float, samples: int | None = None) -> Tensor:
    """Gumbel-softmax soft execute decisions ``v[..., EXECUTE]`` (equation 2), differentiable.

    Uses :func:`torch.nn.functional.gumbel_softmax` (the global torch RNG draws the noise).
    As ``tau -> 0`` the decisions become one-hot samples of the policy. ``samples=None``
    draws one decision per (task, block), shape ``(tasks, blocks)``; ``samples=B`` draws one
    per sample of a batch of ``B`` too, shape ``(tasks, blocks, B)``.
    """
    if tau <= 0:
        raise MTLSearchError(f"the Gumbel-softmax temperature must be positive, got {tau}")
    if samples is not None:
        logits = logits.unsqueeze(2).expand(*logits.shape[:2], samples, logits.shape[-1])
    return F.gumbel_softmax(logits, tau=tau, hard=False, dim=-1)[..., EXECUTE]


def sparsity_loss(logits: Tensor, *, kind: str = "paper") -> Tensor:
    """``L_sparsity``: ``paper`` is equation 3, ``Σ log α``; ``code`` is the official code's
    cross-entropy towards *skip*, ``Σ -log(1 - α)``. Both fall as blocks get skipped."""
    logp = F.log_softmax(logits, dim=-1)
    if kind == "paper":
        return logp[..., EXECUTE].sum()
    if kind == "code":
        return -logp[..., SKIP].sum()
    raise MTLSearchError(f"unknown sparsity loss {kind!r}; choose one of {list(SPARSITY_KINDS)}")


def depth_weights(num_blocks: int, *, kind: str = "shifted") -> Tensor:
    """Per-block weights of ``L_sharing`` for policy blocks ``l = 1..L`` (from the input).

    ``shifted`` (default) ``(L - l + 1)/L``: the paper's emphasis on the bottom blocks, but
    every block keeps a weight of at least ``1/L`` (``[1]``, ``[1, 1/2]``, ``[1, 3/4, 1/2, 1/4]``
    for L = 1, 2, 4). ``paper`` is eq. 4's ``(L - l)/L``: the last block weighs 0, so with
    few policy blocks much of the policy gets no sharing pressure (all of it when L = 1).
    ``code`` is the official code's ``l/L`` (its ``(l + 1)/L`` for ``l = 0..L-1``): top blocks
    weigh most, the opposite of the paper's text.
    """
    if num_blocks < 1:
        raise MTLSearchError(f"need at least one policy block, got {num_blocks}")
    pos = torch.arange(1, num_blocks + 1, dtype=torch.float32)  # l = 1..L
    if kind == "shifted":
        return (num_blocks - pos + 1) / num_blocks
    if kind == "paper":
        return (num_blocks - pos) / num_blocks
    if kind == "code":
        return pos / num_blocks
    raise MTLSearchError(f"unknown sharing depth weights {kind!r}; choose one of {list(DEPTH_WEIGHTS)}")


def sharing_loss(logits: Tensor, *, weights: str | Tensor = "shifted") -> Tensor:
    """``L_sharing`` (equation 4): ``Σ_{k1<k2} Σ_l w_l |α_{l,k1} - α_{l,k2}|``.

    Each unordered task pair counts once (the paper's double sum counts it twice, the same as
    doubling ``λ_sh``). ``weights`` names a :func:`depth_weights` kind or is a tensor of
    per-block weights.
    """
    alpha = execute_probability(logits)
    w = depth_weights(alpha.shape[1], kind=weights) if isinstance(weights, str) else weights
    diff = (alpha[:, None, :] - alpha[None, :, :]).abs()  # (T, T, L)
    pairs = torch.triu(torch.ones(alpha.shape[0], alpha.shape[0], dtype=torch.bool), diagonal=1)
    return (diff[pairs] * w.to(alpha)).sum()


def curriculum_count(progress: float, num_blocks: int, fraction: float) -> int:
    """How many of the *last* policy blocks learn a policy at ``progress`` (0..1) of the policy
    phase: one more block every ``fraction / num_blocks`` of it, all of them from ``fraction``
    on (``fraction = 0``: no curriculum). The paper's "epoch l trains the last l blocks" is
    ``fraction = num_blocks / policy_epochs``."""
    if not 0.0 <= fraction <= 1.0:
        raise MTLSearchError(f"the curriculum fraction must lie in [0, 1], got {fraction}")
    if fraction == 0.0:
        return num_blocks
    return min(num_blocks, 1 + math.floor(progress * num_blocks / fraction + 1e-9))


def learning_mask(progress: float, num_blocks: int, fraction: float) -> Tensor:
    """Boolean ``(num_blocks,)``: which policy blocks learn now (the last ``curriculum_count``)."""
    mask = torch.zeros(num_blocks, dtype=torch.bool)
    mask[num_blocks - curriculum_count(progress, num_blocks, fraction) :] = True
    return mask


def temperature(alternation: int, *, tau0: float, decay: float) -> float:
    """``τ`` during alternation ``a`` (0-based): ``tau0 * decay**a`` (the official code uses
    ``decay = 0.965``)."""
    return tau0 * decay**alternation


def annealed_temperature(progress: float, *, tau0: float, final_ratio: float) -> float:
    """``τ`` at ``progress`` (0..1) of the policy steps: geometric from ``tau0`` to
    ``tau0 * final_ratio``, one small step per policy step instead of a jump per alternation."""
    return tau0 * final_ratio ** min(1.0, max(0.0, progress))
