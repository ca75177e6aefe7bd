"""Every registered strategy and search space passes the shared conformance checks."""

from __future__ import annotations

import pytest

from mtlsearch.registry import list_spaces, list_strategies
from mtlsearch.testing import check_space, check_strategy


@pytest.mark.parametrize("name", list_spaces())
def test_space_conforms(name):
    check_space(name)


@pytest.mark.parametrize("name", list_strategies())
def test_strategy_conforms(name):
    check_strategy(name)
