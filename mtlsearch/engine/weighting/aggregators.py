"""Gradient aggregators from torchjd, one registered weighting per aggregator.

Each step, the Jacobian of the task losses with respect to the *shared* parameters (one row
per task: ``torchjd.autojac.backward``) is aggregated by a ``torchjd.aggregation`` aggregator
into their ``.grad`` (``torchjd.autojac.jac_to_grad``); every task-specific parameter gets its
own task's gradient by one ordinary backward pass. Nothing of the aggregation is ours: the
constructor's keyword arguments go to the torchjd class as they are (lists become tensors
for its tensor arguments, e.g. ``pref_vector``).

Tested with torchjd 0.18 (its ``backward`` / ``jac_to_grad`` split came in 0.9, and 0.x
releases change the interface): ``pyproject.toml`` pins ``>=0.18,<0.19``. UPGrad and DualProj
need torchjd's ``quadprog_projector`` extra (a dependency of mtlsearch); CAGrad and Nash-MTL
need ``pip install "torchjd[cagrad,nash_mtl]"`` (cvxpy), FairGrad scipy.

Example:
    >>> sorted(AGGREGATORS)[:3]
    ['aligned_mtl', 'cagrad', 'config']
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor

from mtlsearch.engine.weighting.base import GradientWeighting, WeightingStep
from mtlsearch.errors import MTLSearchError

__all__ = ["AGGREGATORS", "AggregatorSpec", "TorchJDAggregator"]


class TorchJDAggregator(GradientWeighting):
    """A torchjd aggregator over the shared parameters' Jacobian (see the module docstring).

    Subclasses set :attr:`aggregator` (the class name in ``torchjd.aggregation``); keyword
    arguments of the constructor are that class's. ``parallel_chunk_size`` (not passed on)
    is torchjd's: ``None`` differentiates every task in one vectorised pass, ``1`` one after
    the other (slower; what a compiled forward pass needs, and the trainer sets it then).
    """

    aggregator: ClassVar[str] = ""
    defaults: ClassVar[Mapping[str, Any]] = {}
    tensor_args: ClassVar[tuple[str, ...]] = ("pref_vector", "leak")
    needs_n_tasks: ClassVar[bool] = False
    #: It draws from torch's global generator (PCGrad's order, GradDrop, GradVac): run it seeded
    #: from the training's seed, so the training stays deterministic and the caller's
    #: random state is left as it was.
    uses_global_rng: ClassVar[bool] = False

    def __init__(self, *, parallel_chunk_size: int | None = None, **kwargs: Any):
        self.kwargs = {**self.defaults, **kwargs}
        self.parallel_chunk_size = parallel_chunk_size
        self.last: Tensor | None = None
        self._check_arguments()

    def _check_arguments(self) -> None:
        import inspect

        signature = inspect.signature(self._torchjd_class().__init__)
        extra = {"n_tasks": 0} if self.needs_n_tasks else {}
        try:
            signature.bind(None, **self.kwargs, **extra)
        except TypeError as exc:
            raise MTLSearchError(f"weighting {self.name!r} cannot take {self.kwargs}: {exc} "
                                 f"(torchjd's {self.aggregator}{signature})") from None

    @classmethod
    def _torchjd_class(cls) -> type:
        import torchjd.aggregation

        return getattr(torchjd.aggregation, cls.aggregator)

    def setup(self, tasks: Sequence[str], *, device: torch.device, seed: int = 0) -> None:
        super().setup(tasks, device=device, seed=seed)
        missing = self.missing()
        if missing:
            raise MTLSearchError(
                f"weighting {self.name!r} needs {missing}, which are not installed: "
                f"pip install \"torchjd[{self.extra}]\"")
        kwargs = {k: torch.as_tensor(v, dtype=torch.float32, device=device)
                  if k in self.tensor_args and v is not None else v
                  for k, v in self.kwargs.items()}
        self._kwargs = kwargs
        self._functions: dict[tuple[str, ...], Any] = {}
        self.function = self._function_for(tuple(tasks))
        self.generator = torch.Generator().manual_seed(int(seed) + 3)

    def _function_for(self, tasks: tuple[str, ...]) -> Any:
        """torchjd's aggregator for the gradients of ``tasks``: one per group of tasks, as
        some keep state sized by their number of rows (Nash-MTL, GradVac)."""
        if tasks not in self._functions:
            extra = {"n_tasks": len(tasks)} if self.needs_n_tasks else {}
            self._functions[tasks] = self._torchjd_class()(**self._kwargs, **extra)
        return self._functions[tasks]

    @property
    def extra(self) -> str:
        """torchjd's extra that installs :attr:`requires`."""
        return {"cvxpy": self.name, "scipy": "fairgrad"}.get(
            next(iter(self.requires), ""), "quadprog_projector")

    def backward(self, losses: Mapping[str, Tensor], step: WeightingStep) -> None:
        """Shared parameters: torchjd's aggregation of the per-task gradients; each task's
        own parameters: its gradient (one ordinary backward pass of the sum)."""
        from torchjd.autojac import backward, jac_to_grad

        split = step.split
        values = [losses[t] for t in split.tasks]
        specific = [p for t in split.tasks for p in split.specific[t]]
        shared = list(split.shared)
        if specific:
            torch.autograd.backward(sum(values), inputs=specific, retain_graph=bool(shared))
        if not shared:
            return
        chunk = self.parallel_chunk_size or step.parallel_chunk_size
        backward(values, inputs=shared, parallel_chunk_size=chunk)  # .jac: a row per task
        if self.uses_global_rng:
            cuda = list(range(torch.cuda.device_count())) if self.device.type == "cuda" else []
            with torch.random.fork_rng(devices=cuda):
                torch.manual_seed(int(torch.randint(2**62, (1,), generator=self.generator)))
                self._aggregate_groups(split, jac_to_grad)
        else:
            self._aggregate_groups(split, jac_to_grad)

    def _aggregate_groups(self, split: Any, jac_to_grad: Any) -> None:
        """Each group of shared parameters aggregated over the tasks that reach it (one group,
        every task, under hard sharing)."""
        groups = split.shared_groups or ((split.tasks, split.shared),)
        index = {t: i for i, t in enumerate(split.tasks)}
        self.last = None
        for tasks, params in groups:
            if tasks != split.tasks:  # keep the rows of the tasks that reach these blocks
                rows = torch.tensor([index[t] for t in tasks], device=params[0].jac.device)
                for p in params:
                    p.jac = p.jac.index_select(0, rows)
            weights = jac_to_grad(list(params), self._function_for(tasks))
            if tasks == split.tasks and weights is not None:
                self.last = weights.detach()

    def weights(self) -> dict[str, float] | None:
        """The weights of the last aggregation (aggregators that combine rows with weights)."""
        if self.last is None:
            return None
        return dict(zip(self.tasks, self.last.float().tolist()))


@dataclass(frozen=True)
class AggregatorSpec:
    """One registered aggregator: torchjd class, defaults, optional modules, search space."""

    name: str
    aggregator: str
    description: str
    defaults: Mapping[str, Any] = field(default_factory=dict)
    requires: tuple[str, ...] = ()
    needs_n_tasks: bool = False
    suggest: Callable[[Any], dict[str, Any]] | None = None
    tiny: Mapping[str, Any] | None = None
    uses_global_rng: bool = False


_QP = ("qpsolvers", "quadprog")
_SPECS = [
    AggregatorSpec("upgrad", "UPGrad", "UPGrad: each task's gradient projected onto the dual "
                   "cone of all, averaged (Quinton & Rey 2024)", requires=_QP),
    AggregatorSpec("dualproj", "DualProj", "the mean gradient projected onto the dual cone of "
                   "the task gradients (GEM, Lopez-Paz & Ranzato 2017)", requires=_QP),
    AggregatorSpec("mgda", "MGDA", "MGDA: min-norm point of the task gradients' convex hull "
                   "(Désidéri 2012; Sener & Koltun 2018)"),
    AggregatorSpec("pcgrad", "PCGrad", "PCGrad: project away conflicting components "
                   "(Yu et al. 2020)", uses_global_rng=True),
    AggregatorSpec("imtl_g", "IMTLG", "IMTL-G: equal projections on the aggregate "
                   "(Liu et al. 2021)"),
    AggregatorSpec("cagrad", "CAGrad", "CAGrad: best worst-task improvement near the mean "
                   "gradient (Liu et al. 2021)", defaults={"c": 0.5},
                   requires=("cvxpy", "clarabel"),
                   suggest=lambda t: {"c": t.suggest_float("cagrad_c", 0.1, 0.9)}),
    AggregatorSpec("nash_mtl", "NashMTL", "Nash-MTL: a bargaining solution of the task "
                   "gradients (Navon et al. 2022)", requires=("cvxpy", "ecos"),
                   needs_n_tasks=True, tiny={"optim_niter": 2}),
    AggregatorSpec("aligned_mtl", "AlignedMTL", "Aligned-MTL: align the gradients' principal "
                   "components (Senushkin et al. 2023)",
                   suggest=lambda t: {"scale_mode": t.suggest_categorical(
                       "aligned_mtl_scale_mode", ["min", "median", "rmse"])}),
    AggregatorSpec("config", "ConFIG", "ConFIG: a conflict-free direction with equal cosines "
                   "(Liu et al. 2024)"),
    AggregatorSpec("graddrop", "GradDrop", "GradDrop: drop gradient signs by their "
                   "consistency (Chen et al. 2020)", uses_global_rng=True),
    AggregatorSpec("gradvac", "GradVac", "Gradient Vaccine: pull pairwise cosines to their "
                   "running targets (Wang et al. 2021)",
                   uses_global_rng=True,
                   suggest=lambda t: {"beta": t.suggest_float("gradvac_beta", 0.01, 0.99)}),
    AggregatorSpec("fairgrad", "FairGrad", "FairGrad: alpha-fair allocation of the update "
                   "(Ban & Ji 2024)", defaults={"alpha": 1.0}, requires=("scipy",),
                   suggest=lambda t: {"alpha": t.suggest_float("fairgrad_alpha", 0.1, 3.0)}),
    AggregatorSpec("excess_mtl", "ExcessMTL", "ExcessMTL: weights from per-task excess risks "
                   "(He et al. 2024)"),
]


def _make(spec: AggregatorSpec) -> type[TorchJDAggregator]:
    suggest = spec.suggest

    def suggest_method(cls: type, trial: Any) -> dict[str, Any]:
        return suggest(trial) if suggest is not None else {}

    defaults = dict(spec.defaults) or "torchjd's own"
    doc = (f"{spec.description}.\n\n    torchjd's ``{spec.aggregator}`` over the shared "
           f"parameters' Jacobian; keyword arguments are its own (defaults: {defaults}).")
    return type(f"{spec.aggregator}Weighting", (TorchJDAggregator,), {
        "__doc__": doc,
        "__module__": __name__,
        "name": spec.name,
        "description": spec.description,
        "aggregator": spec.aggregator,
        "defaults": dict(spec.defaults),
        "requires": spec.requires,
        "needs_n_tasks": spec.needs_n_tasks,
        "uses_global_rng": spec.uses_global_rng,
        "suggest": classmethod(suggest_method),
    })


#: ``{name: (weighting class, tiny kwargs)}`` of every torchjd aggregator registered.
AGGREGATORS: dict[str, tuple[type[TorchJDAggregator], Mapping[str, Any] | None]] = {
    s.name: (_make(s), s.tiny) for s in _SPECS}
