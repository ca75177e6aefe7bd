"""Entry point ``builtin_dense_tasks``: the per-pixel task kinds (segmentation, depth, normals,
edges), imported when the task-kind registry is first built."""

from __future__ import annotations

from mtlsearch.hookspecs import TaskKindRegistrar, hookimpl


@hookimpl
def register_task_kinds(register: TaskKindRegistrar) -> None:
    """Contribute the dense kinds (:func:`mtlsearch.tasks.dense.kinds.register_task_kinds`)."""
    from mtlsearch.tasks.dense import kinds

    kinds.register_task_kinds(register)
