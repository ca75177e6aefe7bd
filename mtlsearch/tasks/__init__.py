"""Tasks: what is predicted and how it is judged (the first input of the flow).

A :class:`TaskSpec` is plain data (name, kind, classes, weight); a :class:`TaskKind` turns it
into targets, a loss, metrics and a head. ``kinds`` holds the spec, the kind interface and the
built-in vector kinds (binary, multiclass, regression, ranking); ``dense`` the per-pixel kinds
(segmentation, depth, normals, edges) and their decoder heads. Kinds are registered through
the ``register_task_kinds`` hook. This subpackage imports only the base modules (``errors``,
``hookspecs``, ``registry``); everything else may import it.

Example:
    >>> from mtlsearch.tasks import TaskSpec, get_task_kind
    >>> get_task_kind(TaskSpec("digit", kind="multiclass", num_classes=10).kind).name
    'multiclass'
"""

from __future__ import annotations

from mtlsearch.tasks.kinds import (
    MetricAccumulator,
    TaskKind,
    TaskSpec,
    VectorHead,
    get_task_kind,
    list_task_kinds,
)
from mtlsearch.tasks.names import check_task_name, display_name

__all__ = [
    "MetricAccumulator",
    "TaskKind",
    "TaskSpec",
    "VectorHead",
    "check_task_name",
    "display_name",
    "get_task_kind",
    "list_task_kinds",
]
