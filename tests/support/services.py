"""What the tests need from the machine, and the policy when it is missing: `unavailable` skips
the test, saying why, or fails it with CRDTDOC_REQUIRE_SERVICES=1 (CI).

A pytest plugin (tests/conftest.py loads it) with the fixtures for the tests of several hubs:
`pg_url`, a fresh PostgreSQL database on the local server (dropped afterwards), and `redis`, a
`redis-server` process of the test's own on a free port, so a test can restart Redis without
touching anyone else's. `benchmarks.processes` starts both.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import NoReturn

import pytest

from benchmarks.processes import (
    LOCAL_POSTGRES,
    ServiceUnavailable,
    postgres_database,
    redis_server,
)
from benchmarks.processes import RedisServer as RedisServer

PG_ADMIN_URL = os.environ.get("CRDTDOC_TEST_POSTGRES", LOCAL_POSTGRES)


def unavailable(why: object) -> NoReturn:
    """Skips the test for want of `why` (fails it under CRDTDOC_REQUIRE_SERVICES=1)."""
    if os.environ.get("CRDTDOC_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{why} (CRDTDOC_REQUIRE_SERVICES=1: the service must be there)")
    pytest.skip(str(why))


@pytest.fixture
def pg_url() -> Iterator[str]:
    with contextlib.ExitStack() as stack:
        try:
            url = stack.enter_context(postgres_database(PG_ADMIN_URL, prefix="crdtdoc_test"))
        except ServiceUnavailable as exc:
            unavailable(exc)
        yield url


@pytest.fixture
def redis() -> Iterator[RedisServer]:
    with contextlib.ExitStack() as stack:
        try:
            server = stack.enter_context(redis_server())
        except ServiceUnavailable as exc:
            unavailable(exc)
        yield server
