"""Shared fixtures: one local Spark session with an Iceberg catalog under a temporary warehouse."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def warehouse(tmp_path_factory):
    return tmp_path_factory.mktemp("warehouse")


@pytest.fixture(scope="session")
def spark(warehouse):
    from lib.session import build_local_session

    session = build_local_session("local", warehouse, app_name="tests", shuffle_partitions=2)
    yield session
    session.stop()
