"""docs/datasets.md's overview table names every registered dataset (and every file source)."""

from __future__ import annotations

import re
from pathlib import Path

from mtlsearch.builtins.datasets import SOURCES
from mtlsearch.registry import list_datasets

DOC = Path(__file__).resolve().parents[1] / "docs" / "datasets.md"


def _table_names() -> list[str]:
    lines = DOC.read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if re.match(r"\|\s*name\s*\|", line))
    names = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        match = re.match(r"\|\s*`([^`]+)`\s*\|", line)
        assert match, f"docs/datasets.md: a table row without a `name`: {line!r}"
        names.append(match.group(1))
    return names


def test_every_registered_dataset_is_in_the_table():
    names = _table_names()
    missing = sorted(set(list_datasets()) - set(names))
    assert not missing, f"docs/datasets.md's table lacks the registered datasets {missing}"
    sources = sorted({name for name, _, _ in SOURCES} - set(names))
    assert not sources, f"docs/datasets.md's table lacks the file sources {sources}"
    assert len(names) == len(set(names)), "a dataset is listed twice"


def test_the_table_lists_no_dataset_that_does_not_exist():
    known = set(list_datasets()) | {name for name, _, _ in SOURCES}
    assert not sorted(set(_table_names()) - known)
