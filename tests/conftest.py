"""Shared fixtures: one local Spark session with an Iceberg catalog under a temporary warehouse; Debian's chromium."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def warehouse(tmp_path_factory):
    return tmp_path_factory.mktemp("warehouse")


@pytest.fixture(scope="session")
def spark(warehouse):
    from lib.session import build_local_session

    session = build_local_session("local", warehouse, app_name="tests", shuffle_partitions=2)
    yield session
    session.stop()


@pytest.fixture(scope="session")
def chromium():
    """Debian's chromium: installed by scripts/install_chromium.sh as root; skipped only when that is impossible."""
    found = shutil.which("chromium")
    if not found and os.geteuid() == 0:
        subprocess.run(["bash", str(REPO / "scripts" / "install_chromium.sh")], check=True, timeout=900)
        found = shutil.which("chromium")
    if not found:
        pytest.skip("chromium is missing and we are not root: sudo apt-get install -y chromium")
    return found
