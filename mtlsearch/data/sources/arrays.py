"""``npz:PATH``: an ``.npz`` with an input array and one label array per task.

The input array is ``X`` (``input_key=``); the tasks are every other array unless ``tasks=``
picks them (``exclude=`` drops some). Kinds are inferred (:mod:`mtlsearch.data.sources.infer`)
unless ``kinds=`` names them. The file is read member by member with every header checked
(:class:`mtlsearch.safety.NpzReader`), and only the arrays used are read.

Example:
    >>> import numpy as np, tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "d.npz")
    >>> np.savez(path, X=np.random.rand(40, 3), smile=np.arange(40) % 2, ids=np.arange(40))
    >>> load_npz(path, exclude="ids").task_names
    ['smile']
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mtlsearch.data.builtin._common import check_fractions, check_seed
from mtlsearch.data.dataset import read_npz
from mtlsearch.data.sources._build import make_splits, name_list
from mtlsearch.data.sources.infer import infer_tasks

__all__ = ["load_npz"]


def load_npz(
    path: str | Path,
    *,
    tasks: Any = None,
    exclude: Any = None,
    input_key: str = "X",
    kinds: Mapping[str, str] | None = None,
    metric: Any = None,
    pos_weight: Any = None,
    seed: int = 0,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    name: str | None = None,
) -> Any:
    """Load an ``.npz``: ``input_key`` is the input, the chosen arrays are tasks.

    Args:
        path: The ``.npz`` file.
        tasks: Array names to use as tasks (a list or ``"a,b"``); default: all but the input
            and ``exclude``.
        exclude: Array names that are not tasks (ids, weights, ...).
        input_key: The input array's name.
        kinds: ``{task: kind}`` overriding the inferred kinds.
        metric: Primary metric of binary tasks (a name, or ``{task: name}``).
        pos_weight: ``"balanced"``, a number, or ``{task: value}`` for binary tasks' loss.
        seed, val_fraction, test_fraction: The seeded split.
        name: The dataset's name (default ``npz:<absolute path>``).

    Returns:
        Splits named ``npz:<absolute path>``: ``load_dataset(splits.name, **splits.kwargs)``
        loads them again (a study records both).

    Raises:
        DatasetError: a missing file or array (the arrays there are listed), bad labels.
    """
    source = f"npz {path}"
    seed = check_seed(source, seed)
    val_fraction, test_fraction = check_fractions(source, val_fraction, test_fraction)
    path = Path(path)
    X, labels, names = read_npz(path, tasks=name_list(source, "tasks", tasks),
                                exclude=name_list(source, "exclude", exclude),
                                input_key=input_key)
    inferred = infer_tasks(labels, kinds, where=f"{path}: ")
    # NAME:PATH, so a study can load the same data again: load_dataset(name, **kwargs)
    return make_splits(
        name or f"npz:{path.resolve()}", len(X), inferred, None, X,
        seed=seed, val_fraction=val_fraction, test_fraction=test_fraction,
        metric=metric, pos_weight=pos_weight, where=f"{path}: ",
        info={"source": {"format": "npz", "path": str(path), "input_key": input_key}},
        kwargs={"tasks": names, "input_key": input_key, "kinds": dict(kinds or {}),
                "metric": metric, "pos_weight": pos_weight},
    )
