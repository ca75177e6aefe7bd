"""The fault tests of ``test_reliability_journal.py`` against a real PostgreSQL server.

Start one with ``source scripts/start_postgres.sh`` (it exports
``MTLSEARCH_TEST_POSTGRES_URL``). Without the variable these tests skip locally, and FAIL
when ``CI`` is set: in CI a skipped database test would hide a broken set-up.
"""

from __future__ import annotations

import os
import uuid

import pytest
from test_reliability_journal import (
    check_many_workers_exact_budget,
    check_sigint_stops_cleanly_and_resumes,
    check_sigkill_is_failed_and_retried,
)

from mtlsearch.study.storage import budget_lock, open_storage

URL = os.environ.get("MTLSEARCH_TEST_POSTGRES_URL")
HEARTBEAT = {"MTLSEARCH_HEARTBEAT_INTERVAL": "1", "MTLSEARCH_GRACE_PERIOD": "3"}


@pytest.fixture
def url():
    if not URL:
        if os.environ.get("CI"):
            pytest.fail("CI is set but MTLSEARCH_TEST_POSTGRES_URL is not: run "
                        "`source scripts/start_postgres.sh` before the tests")
        pytest.skip("no PostgreSQL: `source scripts/start_postgres.sh` to run these tests")
    return URL


def _name(tag: str) -> str:  # the database outlives a test run: never reuse a study name
    return f"{tag}-{uuid.uuid4().hex[:8]}"


def test_storage_has_heartbeats_and_a_retry_callback(url, monkeypatch):
    for key, value in HEARTBEAT.items():
        monkeypatch.setenv(key, value)
    storage = open_storage(url)
    assert storage.get_heartbeat_interval() == 1
    assert storage.grace_period == 3
    assert storage.get_heartbeat_stale_trial_callback() is not None
    with budget_lock(url):  # an advisory lock on the server; re-entrant across calls
        pass


def test_four_workers_forty_trials_exactly(url, tmp_path):
    check_many_workers_exact_budget(url, _name("many"), tmp_path)


def test_sigkilled_worker_trial_is_failed_by_heartbeat_and_retried(url, tmp_path, monkeypatch):
    for key, value in HEARTBEAT.items():
        monkeypatch.setenv(key, value)
    check_sigkill_is_failed_and_retried(url, _name("kill"), tmp_path, wait_stale=4.0,
                                           **HEARTBEAT)


def test_sigint_stops_cleanly_and_restart_resumes(url, tmp_path):
    check_sigint_stops_cleanly_and_resumes(url, _name("sigint"), tmp_path, **HEARTBEAT)
