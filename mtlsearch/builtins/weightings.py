"""Entry point ``builtin_weightings``: the loss weightings and torchjd's aggregators, lazily.

Each row names the class (``"module:Class"``) with the attributes ``mtlsearch weightings``
shows; they are checked against the class when it is first used.
"""

from __future__ import annotations

from typing import Any

from mtlsearch.hookspecs import WeightingRegistrar, hookimpl

_BUILTIN = "mtlsearch.engine.weighting.builtin"
_AGGREGATORS = "mtlsearch.engine.weighting.aggregators"  # classes made from torchjd's

#: Loss weightings: name, class in ``engine.weighting.builtin``, description, attributes.
LOSS_WEIGHTINGS: tuple[tuple[str, str, str, dict[str, Any]], ...] = (
    ("equal", "EqualWeighting", "sum of the task losses (fixed task weights)",
     {"distributed": True}),
    ("uw", "UncertaintyWeighting", "uncertainty weighting: learned log-variances (Kendall 2018)",
     {"distributed": True}),
    ("dwa", "DynamicWeightAverage", "dynamic weight average: loss ratios of the last two epochs",
     {}),
    ("gradnorm", "GradNorm", "GradNorm: balance gradient norms at the last shared layer",
     {"all_tasks": True}),
    ("rlw", "RandomLossWeighting", "random loss weighting: softmax of normal draws each step",
     {"distributed": True}),
)

#: torchjd aggregators (gradient weightings: every task in every step): name, class exposed by
#: :mod:`mtlsearch.engine.weighting`, description, the modules they require.
AGGREGATORS: tuple[tuple[str, str, str, tuple[str, ...]], ...] = (
    ("upgrad", "UPGradWeighting", "UPGrad: each task's gradient projected onto the dual cone of "
     "all, averaged (Quinton & Rey 2024)", ("qpsolvers", "quadprog")),
    ("mgda", "MGDAWeighting", "MGDA: min-norm point of the task gradients' convex hull "
     "(Désidéri 2012; Sener & Koltun 2018)", ()),
    ("dualproj", "DualProjWeighting", "the mean gradient projected onto the dual cone of the "
     "task gradients (GEM, Lopez-Paz & Ranzato 2017)", ("qpsolvers", "quadprog")),
    ("pcgrad", "PCGradWeighting", "PCGrad: project away conflicting components (Yu et al. 2020)",
     ()),
    ("imtl_g", "IMTLGWeighting", "IMTL-G: equal projections on the aggregate (Liu et al. 2021)",
     ()),
    ("cagrad", "CAGradWeighting", "CAGrad: best worst-task improvement near the mean gradient "
     "(Liu et al. 2021)", ("cvxpy", "clarabel")),
    ("nash_mtl", "NashMTLWeighting", "Nash-MTL: a bargaining solution of the task gradients "
     "(Navon et al. 2022)", ("cvxpy", "ecos")),
    ("aligned_mtl", "AlignedMTLWeighting", "Aligned-MTL: align the gradients' principal "
     "components (Senushkin et al. 2023)", ()),
    ("config", "ConFIGWeighting", "ConFIG: a conflict-free direction with equal cosines "
     "(Liu et al. 2024)", ()),
    ("graddrop", "GradDropWeighting", "GradDrop: drop gradient signs by their consistency "
     "(Chen et al. 2020)", ()),
    ("gradvac", "GradVacWeighting", "Gradient Vaccine: pull pairwise cosines to their running "
     "targets (Wang et al. 2021)", ()),
    ("fairgrad", "FairGradWeighting", "FairGrad: alpha-fair allocation of the update "
     "(Ban & Ji 2024)", ("scipy",)),
    ("excess_mtl", "ExcessMTLWeighting", "ExcessMTL: weights from per-task excess risks "
     "(He et al. 2024)", ()),
)

#: Tiny sizes: the settings that keep a conformance step cheap (most need none).
TINY: dict[str, dict[str, Any]] = {"nash_mtl": {"optim_niter": 2}}


@hookimpl
def register_weightings(register: WeightingRegistrar) -> None:
    """Contribute the built-in loss weightings and the torchjd aggregators."""
    for name, cls, description, attributes in LOSS_WEIGHTINGS:
        register(name, f"{_BUILTIN}:{cls}", tiny=TINY.get(name), description=description,
                 **attributes)
    for name, cls, description, requires in AGGREGATORS:
        register(name, f"mtlsearch.engine.weighting:{cls}", tiny=TINY.get(name),
                 description=description, gradient=True, all_tasks=True, requires=requires,
                 module=_AGGREGATORS)
