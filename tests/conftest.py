"""Shared fixtures: one local Spark session with an Iceberg catalog under a temporary warehouse; Debian's chromium."""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
# `make test` runs the files on two pytest-xdist workers, a file to a worker (--dist loadfile, so a module's shared
# warehouse is built once). The slowest files go first, so both workers start on a long one and end together.
SLOW_FIRST = (
    "test_e2e.py", "test_lab.py", "test_history.py", "test_reliability.py", "test_security.py", "test_dashboard.py",
    "test_wap.py", "test_stream.py", "test_cluster.py", "test_notebooks_nbval.py", "test_glue.py",
    "test_quality_gate_e2e.py", "test_forecast.py",
)  # fmt: skip


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(SLOW_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: a file keeps its own order


@pytest.fixture(scope="session")
def warehouse(tmp_path_factory):
    return tmp_path_factory.mktemp("warehouse")


@pytest.fixture(scope="session")
def spark(warehouse):
    from lib.storage.session import build_local_session

    session = build_local_session("local", warehouse, app_name="tests", shuffle_partitions=2)
    yield session
    session.stop()


@pytest.fixture(scope="session")
def chromium():
    """Debian's chromium: installed by scripts/install_chromium.sh as root; skipped only when that is impossible."""
    found = shutil.which("chromium")
    if not found and os.geteuid() == 0:
        # One install at a time: pytest-xdist workers that both need a browser would race for apt's lock.
        with open(Path(tempfile.gettempdir()) / "stocks-install-chromium.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not shutil.which("chromium"):
                subprocess.run(["bash", str(REPO / "scripts" / "install_chromium.sh")], check=True, timeout=900)
        found = shutil.which("chromium")
    if not found:
        pytest.skip("chromium is missing and we are not root: sudo apt-get install -y chromium")
    return found
