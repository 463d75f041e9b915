"""Shared test settings: Hypothesis profiles, and the seed printed for every randomized test."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

pytest_plugins = ["tests.support.services"]  # the pg_url and redis fixtures

settings.register_profile(
    "default",
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)
settings.register_profile(
    "long",
    parent=settings.get_profile("default"),
    max_examples=2000,
)
settings.load_profile("long" if os.environ.get("CRDTDOC_LONG") else "default")
