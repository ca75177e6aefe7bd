"""Entry point ``builtin_tasks``: the vector task kinds (binary, multiclass, regression, ranking).

The kinds are instances whose module imports torch; the task-kind registry is built only when
a task is trained or checked, so the hook imports them then.
"""

from __future__ import annotations

from mtlsearch.hookspecs import TaskKindRegistrar, hookimpl


@hookimpl
def register_task_kinds(register: TaskKindRegistrar) -> None:
    """Contribute the vector kinds (:func:`mtlsearch.tasks.kinds.register_task_kinds`)."""
    from mtlsearch.tasks import kinds

    kinds.register_task_kinds(register)
