"""Loss weighting and gradient aggregation: how the tasks are weighed where they share.

A plugin kind of its own (``register_weightings``), composed with any architecture: the
trainer builds the weighting ``TrainConfig.weighting`` names and calls it once per step
(:mod:`mtlsearch.engine.weighting.base` has the interface and its lifecycle). Built in, and
registered through the ``builtin_weightings`` entry point (:mod:`mtlsearch.builtins.weightings`,
lazily: listing them imports no torch) exactly as a third-party plugin would be:

* loss weightings (:mod:`~mtlsearch.engine.weighting.builtin`): ``equal`` (the default),
  ``uw`` (uncertainty, Kendall et al. 2018), ``dwa`` (dynamic weight average, Liu et al.
  2019), ``gradnorm`` (Chen et al. 2018), ``rlw`` (random loss weighting, Lin et al. 2021);
* gradient aggregators from torchjd (:mod:`~mtlsearch.engine.weighting.aggregators`):
  ``upgrad``, ``mgda``, ``pcgrad``, ``cagrad``, ``nash_mtl``, ``imtl_g``, ``dualproj``,
  ``aligned_mtl``, ``config``, ``graddrop``, ``gradvac``, ``fairgrad``, ``excess_mtl``.

docs/weighting.md is the user's page.

Example:
    >>> from mtlsearch.registry import create_weighting
    >>> create_weighting("dwa", temperature=1.0).temperature
    1.0
"""

from __future__ import annotations

from typing import Any

from mtlsearch.engine.weighting.aggregators import AGGREGATORS, TorchJDAggregator
from mtlsearch.engine.weighting.base import (
    BACKWARD_SHARE,
    GradientWeighting,
    ParameterSplit,
    Weighting,
    WeightingStep,
    split_parameters,
)
from mtlsearch.engine.weighting.builtin import (
    DynamicWeightAverage,
    EqualWeighting,
    GradNorm,
    RandomLossWeighting,
    UncertaintyWeighting,
)
from mtlsearch.errors import MTLSearchError

__all__ = [
    "BACKWARD_SHARE",
    "DynamicWeightAverage",
    "EqualWeighting",
    "GradNorm",
    "GradientWeighting",
    "ParameterSplit",
    "RandomLossWeighting",
    "TorchJDAggregator",
    "UncertaintyWeighting",
    "Weighting",
    "WeightingStep",
    "make_weighting",
    "split_parameters",
]

# Each torchjd aggregator class by its own name (``UPGradWeighting``, ...), where the lazy
# registrations of mtlsearch.builtins.weightings find them.
globals().update({cls.__name__: cls for cls, _ in AGGREGATORS.values()})


def make_weighting(name: str, kwargs: Any = None) -> Weighting:
    """The weighting ``name`` built with ``kwargs``, checked to be a :class:`Weighting`."""
    from mtlsearch.registry import create_weighting

    weighting = create_weighting(name, **dict(kwargs or {}))
    if not isinstance(weighting, Weighting):
        raise MTLSearchError(f"weighting {name!r} built {type(weighting).__name__}, not a "
                             "mtlsearch Weighting (subclass mtlsearch.Weighting)")
    return weighting
