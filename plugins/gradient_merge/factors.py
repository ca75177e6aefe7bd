"""Tensor-train factors of captured gradients (section 3.2 of the Selective Sharing paper).

Each captured gradient ``G`` (a branch's first-layer weight gradient, e.g. ``(out, in)`` or
``(out, in, kh, kw)``) is decomposed with tensorly's TT-SVD into cores ``D_i`` of shape
``(r_{i-1}, n_i, r_i)`` (rank capped at ``rank``). The cores themselves are not comparable
between tasks: a TT is unique only up to an invertible change of basis on every bond, so two
nearly equal gradients can have very different cores (the paper flattens the cores; measured
here, that erased the planted task structure). Each row ``B`` of ``C_t`` is therefore a fixed
random sketch of the TT tensor, computed from the cores without forming the tensor
(:func:`tt_sketch`): it does not depend on the gauge, and distances between sketches estimate
distances between the rank-``rank`` gradients. An epoch's rows stacked give ``C_t`` (eq. 5).

Example:
    >>> import numpy as np
    >>> g = np.arange(12.0).reshape(3, 4)
    >>> cores = tt_cores(g, rank=3)
    >>> bool(np.allclose(tt_reconstruct(cores), g))
    True
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import tensorly as tl
from tensorly.decomposition import tensor_train

from mtlsearch.errors import MTLSearchError

__all__ = [
    "tt_cores",
    "tt_reconstruct",
    "tt_sketch",
    "sketch_projections",
    "factor_vector",
    "factor_vectors",
    "normalise_rows",
]


def tt_cores(tensor: np.ndarray, *, rank: int) -> list[np.ndarray]:
    """Tensor-train cores of ``tensor`` with every TT rank capped at ``rank``, sign-fixed.

    Args:
        tensor: A NumPy array of order >= 1.
        rank: Largest TT rank (>= 1); ranks never exceed what the shape allows.

    Returns:
        Cores ``D_i`` of shape ``(r_{i-1}, n_i, r_i)`` with ``r_0 = r_d = 1``.

    Raises:
        MTLSearchError: for a rank below 1 or an empty tensor.

    Example:
        >>> [c.shape for c in tt_cores(np.ones((4, 5)), rank=2)]
        [(1, 4, 2), (2, 5, 1)]
    """
    if not isinstance(rank, (int, np.integer)) or rank < 1:
        raise MTLSearchError(f"the tensor-train rank must be an integer >= 1, got {rank!r}")
    array = np.asarray(tensor, dtype=np.float64)
    if array.size == 0:
        raise MTLSearchError("cannot factorise an empty gradient")
    if array.ndim == 1:  # TT of a vector is the vector itself
        return [array.reshape(1, -1, 1).copy()]
    # tensorly needs one rank per bond; cap each by what the unfolding allows
    shape = array.shape
    ranks = [1]
    for k in range(1, array.ndim):
        left, right = int(np.prod(shape[:k])), int(np.prod(shape[k:]))
        ranks.append(int(min(rank, left, right)))
    ranks.append(1)
    factors = tensor_train(tl.tensor(array), rank=ranks)
    return [np.asarray(tl.to_numpy(f), dtype=np.float64) for f in factors]


def tt_reconstruct(cores: Sequence[np.ndarray]) -> np.ndarray:
    """The full tensor of TT ``cores`` (contracting the bonds in order)."""
    result = np.asarray(cores[0])
    for core in cores[1:]:
        result = np.tensordot(result, core, axes=([result.ndim - 1], [0]))
    return result.reshape(result.shape[1:-1])


def sketch_projections(shape: Sequence[int], *, size: int, seed: int = 0) -> list[np.ndarray]:
    """Gaussian vectors ``(size, n_k)`` per mode: ``size`` random rank-one probes of a tensor."""
    if size < 1:
        raise MTLSearchError(f"the sketch size must be at least 1, got {size}")
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((size, int(n))) for n in shape]


def tt_sketch(cores: Sequence[np.ndarray], projections: Sequence[np.ndarray]) -> np.ndarray:
    """Inner products of the TT tensor with rank-one probes, scaled by ``1/sqrt(size)``.

    Probe ``j`` is ``u_1j (x) u_2j (x) ... (x) u_dj`` with the rows of ``projections``; the
    products are contracted core by core, never forming the full tensor. With Gaussian
    probes, ``E[<sketch(A), sketch(B)>] = <A, B>`` (a Johnson-Lindenstrauss sketch), so
    Euclidean distances between sketches estimate distances between the gradients.
    """
    size = projections[0].shape[0]
    carry = np.ones((size, 1))
    for core, probe in zip(cores, projections, strict=True):
        a, j, b = core.shape
        mixed = (carry @ core.reshape(a, j * b)).reshape(size, j, b)  # plain BLAS: fast
        carry = (mixed * probe[:, :, None]).sum(axis=1)
    return carry[:, 0] / np.sqrt(size)


def factor_vector(
    tensor: np.ndarray, *, rank: int, projections: Sequence[np.ndarray]
) -> np.ndarray:
    """One row ``B`` of ``C_t``: the sketch of ``tensor``'s rank-``rank`` tensor train."""
    return tt_sketch(tt_cores(tensor, rank=rank), projections)


def _capped_ranks(shape: Sequence[int], rank: int) -> list[int]:
    """TT ranks ``[1, r_1, ..., 1]``, each capped at ``rank`` and at what its unfolding allows."""
    ranks = [1]
    for k in range(1, len(shape)):
        left, right = int(np.prod(shape[:k])), int(np.prod(shape[k:]))
        ranks.append(int(min(rank, left, right)))
    return [*ranks, 1]


def factor_vectors(
    tensors: np.ndarray, *, rank: int, projections: Sequence[np.ndarray]
) -> np.ndarray:
    """:func:`factor_vector` of every ``tensors[b]`` at once: row ``b`` is its sketch.

    The same TT-SVD as :func:`tt_cores` (tensorly's ``tensor_train``: left to right, each
    unfolding's SVD truncated at the capped rank, ``S V^T`` carried on), done as one batched
    LAPACK call per bond over every tensor, then the same core-by-core sketch. It gives
    :func:`factor_vector`'s rows up to rounding (the TT tensor, hence its sketch, does not
    depend on the SVDs' signs or bases), without tensorly's per-call overhead, which dominated
    when a few hundred small gradients are factorised per batch.
    """
    if not isinstance(rank, (int, np.integer)) or rank < 1:
        raise MTLSearchError(f"the tensor-train rank must be an integer >= 1, got {rank!r}")
    tensors = np.asarray(tensors, dtype=np.float64)
    if tensors.ndim < 2 or tensors.shape[0] == 0 or tensors[0].size == 0:
        raise MTLSearchError("factor_vectors takes a non-empty stack of gradients (batch, ...)")
    batch, shape = tensors.shape[0], tensors.shape[1:]
    ranks = _capped_ranks(shape, int(rank))
    cores = []
    unfolding = tensors
    for k in range(len(shape) - 1):
        unfolding = unfolding.reshape(batch, ranks[k] * shape[k], -1)
        u, s, vt = np.linalg.svd(unfolding, full_matrices=False)
        r = ranks[k + 1]
        cores.append(u[:, :, :r].reshape(batch, ranks[k], shape[k], r))
        unfolding = s[:, :r, None] * vt[:, :r, :]
    cores.append(unfolding.reshape(batch, ranks[-2], shape[-1], 1))
    size = projections[0].shape[0]
    carry = np.ones((batch, size, 1))
    for core, probe in zip(cores, projections, strict=True):
        _, a, j, b = core.shape
        mixed = (carry @ core.reshape(batch, a, j * b)).reshape(batch, size, j, b)
        carry = np.einsum("bsjr,sj->bsr", mixed, probe)
    return carry[:, :, 0] / np.sqrt(size)


def normalise_rows(matrix: np.ndarray) -> np.ndarray:
    """Rows scaled to unit Euclidean norm (all-zero rows stay zero)."""
    matrix = np.asarray(matrix, dtype=np.float64)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.where(norms > 0, norms, 1.0)
