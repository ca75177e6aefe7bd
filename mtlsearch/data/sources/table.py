"""``csv:PATH`` (``.csv``, ``.tsv``, ``.parquet``) and pandas DataFrames: columns as tasks.

``targets=`` names the task columns; the inputs are ``inputs=`` or every other column, and
must be numbers (a text column among the inputs is refused with its name: encode it first or
leave it out with ``inputs=``). Kinds are inferred per column
(:mod:`mtlsearch.data.sources.infer`), empty cells are missing labels.

Example:
    >>> import pandas as pd
    >>> df = pd.DataFrame({"x1": range(40), "x2": [i % 7 for i in range(40)],
    ...                    "smiling": ["yes", "no"] * 20})
    >>> splits = from_dataframe(df, targets="smiling")
    >>> splits.task_names, splits.input_shape, splits.info["label_maps"]["smiling"]
    (['smiling'], (2,), ['no', 'yes'])
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from mtlsearch.data.builtin._common import check_fractions, check_seed
from mtlsearch.data.checks import check_inputs
from mtlsearch.data.preprocess import Preprocessing
from mtlsearch.data.sources._build import make_splits, name_list
from mtlsearch.data.sources.infer import infer_tasks
from mtlsearch.errors import DatasetError
from mtlsearch.tasks.names import check_task_names

__all__ = ["load_table", "from_dataframe", "read_table", "missing_columns_error"]

_FORMATS = {".csv": "csv", ".tsv": "tsv", ".txt": "csv", ".parquet": "parquet", ".pq": "parquet"}


def read_table(path: str | Path) -> Any:
    """A CSV / TSV / Parquet file as a pandas DataFrame (the format from the extension)."""
    try:
        import pandas as pd
    except ImportError:  # pragma: no cover - pandas is a dependency of the data extra
        raise DatasetError("reading tables needs pandas: pip install 'mtlsearch[data]'") from None
    path = Path(path)
    if not path.is_file():
        hint = " (it is a folder)" if path.is_dir() else ""
        raise DatasetError(f"no such table file: {path}{hint}; check the path (relative paths "
                           f"start at {Path.cwd()})")
    fmt = _FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise DatasetError(f"{path}: unknown table format {path.suffix!r}; use one of "
                           f"{', '.join(sorted(_FORMATS))}")
    try:
        if fmt == "parquet":
            return pd.read_parquet(path)
        return pd.read_csv(path, sep="\t" if fmt == "tsv" else ",", skipinitialspace=True)
    except ImportError as exc:
        raise DatasetError(f"reading {path} needs pyarrow: pip install pyarrow ({exc})") from None
    except (ValueError, OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"cannot read the table {path}: {exc}") from None


def missing_columns_error(where: str, option: str, missing: list[str], columns: list[str]
                          ) -> DatasetError:
    """The error for ``option`` naming columns the table does not have (lists those it has)."""
    shown = ", ".join(map(repr, columns[:30])) + (" ..." if len(columns) > 30 else "")
    return DatasetError(f"{where}{option} names columns that do not exist: {missing}; the "
                        f"columns are {shown}")


def _column_values(df: Any, column: str) -> np.ndarray:
    """A column as numbers when it holds only numbers (NaN for empty cells), else objects."""
    series = df[column]
    if series.dtype.kind in "biuf":
        return series.to_numpy()
    return series.astype(object).where(series.notna(), None).to_numpy()


def from_dataframe(
    df: Any,
    targets: Any,
    *,
    inputs: Any = None,
    kinds: Mapping[str, str] | None = None,
    metric: Any = None,
    pos_weight: Any = None,
    seed: int = 0,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    name: str = "dataframe",
    where: str = "",
) -> Any:
    """Splits from a pandas DataFrame: ``targets`` columns are tasks, ``inputs`` the features.

    Args:
        df: The table, one row per sample.
        targets: Task columns (a list or ``"a,b"``).
        inputs: Feature columns (default: every column that is not a target).
        kinds: ``{column: kind}`` overriding the inferred kinds.
        metric, pos_weight: Binary tasks' options (see :func:`mtlsearch.data.sources.load_npz`).
        seed, val_fraction, test_fraction: The seeded split.
        name: The dataset's name.

    Raises:
        DatasetError: columns that do not exist (the ones that do are listed), text or missing
            values among the inputs, mixed types or a single class in a task column.
    """
    source = f"{where.rstrip(': ') or name}"
    seed = check_seed(source, seed)
    val_fraction, test_fraction = check_fractions(source, val_fraction, test_fraction)
    columns = [str(c) for c in df.columns]
    df = df.set_axis(columns, axis=1)
    target_cols = name_list(source, "targets", targets)
    if target_cols is None:
        raise DatasetError(f"{source}: name the task columns with targets=a,b (the columns are "
                           f"{columns[:30]})")
    missing = [c for c in target_cols if c not in columns]
    if missing:
        raise missing_columns_error(where, "targets", missing, columns)
    input_cols = name_list(source, "inputs", inputs)
    if input_cols is None:
        input_cols = [c for c in columns if c not in target_cols]
    missing = [c for c in input_cols if c not in columns]
    if missing:
        raise missing_columns_error(where, "inputs", missing, columns)
    both = [c for c in input_cols if c in target_cols]
    if both:
        raise DatasetError(f"{where}columns {both} are both inputs and targets; a task's label "
                           "must not be one of its inputs")
    if not input_cols:
        raise DatasetError(f"{where}no input columns are left; name them with inputs=")
    if len(df) == 0:
        raise DatasetError(f"{where}the table has no rows")
    check_task_names(target_cols)
    text = [c for c in input_cols if df[c].dtype.kind not in "biuf"]
    if text:
        examples = {c: df[c].dropna().iloc[0] if df[c].notna().any() else None for c in text[:3]}
        raise DatasetError(
            f"{where}input columns {text} are not numbers (e.g. {examples}); encode them "
            "(pandas.get_dummies for categories) or leave them out with inputs=<numeric columns>"
        )
    X = np.array(df[input_cols].to_numpy(dtype=np.float32), copy=True)  # pandas: read-only
    if not np.isfinite(X).all():
        bad = [c for c in input_cols if not np.isfinite(df[c].to_numpy(dtype=np.float64)).all()]
        counts = {c: int((~np.isfinite(df[c].to_numpy(dtype=np.float64))).sum()) for c in bad[:5]}
        raise DatasetError(
            f"{where}input columns have missing or infinite values ({counts} rows); impute "
            "them (df.fillna) or drop those rows first"
        )
    X = check_inputs(X, what=f"the inputs of {source}")
    labels = {c: _column_values(df, c) for c in target_cols}
    inferred = infer_tasks(labels, kinds, where=where)
    return make_splits(
        name, len(X), inferred, None, X,
        seed=seed, val_fraction=val_fraction, test_fraction=test_fraction,
        metric=metric, pos_weight=pos_weight, where=where or None,
        info={"input_columns": input_cols},
        # the export records the input columns: predict on a new table finds them by name
        preprocessing=Preprocessing(input_columns=tuple(input_cols)),
        kwargs={"targets": target_cols, "inputs": input_cols, "kinds": dict(kinds or {}),
                "metric": metric, "pos_weight": pos_weight},
    )


def load_table(
    path: str | Path,
    *,
    targets: Any = None,
    inputs: Any = None,
    kinds: Mapping[str, str] | None = None,
    metric: Any = None,
    pos_weight: Any = None,
    seed: int = 0,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
) -> Any:
    """``csv:PATH``: a CSV, TSV or Parquet table, ``targets`` columns as tasks.

    See :func:`from_dataframe` for the arguments. The dataset is named ``csv:<absolute path>``
    (``parquet:`` for Parquet), so ``load_dataset(splits.name, **splits.kwargs)`` loads it
    again.
    """
    path = Path(path)
    df = read_table(path)
    fmt = _FORMATS[path.suffix.lower()]
    splits = from_dataframe(
        df, targets, inputs=inputs, kinds=kinds, metric=metric, pos_weight=pos_weight,
        seed=seed, val_fraction=val_fraction, test_fraction=test_fraction,
        name=f"{'parquet' if fmt == 'parquet' else 'csv'}:{path.resolve()}", where=f"{path}: ",
    )
    splits.info["source"] = {"format": fmt, "path": str(path)}
    return splits
