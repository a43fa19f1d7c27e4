"""The fault suite as tests (``pytest -m chaos``; ``make chaos`` prints the table).

Outside ``make test`` (minutes, real subprocesses killed with SIGKILL).  Each
scenario must deliver everything exactly once, and the fault must really have
happened (a kill, a 429, a poisoned event) - a quiet run proves nothing.
"""

from __future__ import annotations

import re

import pytest

from bench.chaos import SCENARIOS
from tests.conftest import PG_URL

pytestmark = pytest.mark.chaos

#: What each scenario's note must show, so that the fault is known to have struck.
EVIDENCE = {
    "duplicate_storm": r"^200 requests",
    "kill_dispatchers": r"^[1-9]\d* dispatchers killed",
    "kill_workers": r"^[1-9]\d* workers killed",
    "crm_outage_day": r"^0 dead during the outage",
    "rate_limit_storm": r"^[1-9]\d* answers were 429",
    "poisoned_events": r"'failed': [1-9]",
    "database_restart": r"^[1-9]\d* (lock periods|backends terminated)",
}


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.__name__ for s in SCENARIOS])
@pytest.mark.parametrize("backend", ["sqlite"] + (["postgres"] if PG_URL else []))
def test_no_fault_loses_or_duplicates(scenario, backend, tmp_path, request):
    # PostgreSQL: the suite's own database of this worker (the scenario empties it first).
    database_url = request.getfixturevalue("pg_database") if backend == "postgres" else None
    row = scenario(tmp_path, database_url, 1)
    assert (row.duplicates, row.lost) == (0, 0), row
    assert row.delivered == row.sent > 0
    assert re.search(EVIDENCE[scenario.__name__], row.note), row.note
