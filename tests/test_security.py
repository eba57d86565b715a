"""Secrets: the API key travels only in the Authorization header and leaves no trace in logs, errors, run records or tables."""

from __future__ import annotations

import asyncio
import datetime as dt
import http.server
import io
import json
import logging
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from lib.polygon import ClientSettings, PolygonClient

REPO = Path(__file__).resolve().parent.parent
CANARY = "canary-7f3c9e1d5b2a4680-do-not-leak"


class StubServer:
    """A tiny HTTP server on loopback answering every GET with `respond(handler) -> (status, headers, body)`.

    It records each request's path and headers, so a test can see what reached it (and with which key).
    """

    def __init__(self, respond):
        self.requests: list[dict] = []
        stub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (the http.server protocol)
                stub.requests.append({"path": self.path, "headers": dict(self.headers)})
                status, headers, body = respond(self)
                payload = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):  # keep test output quiet
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> StubServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


def settings_for(base_url: str, key: str = CANARY, **overrides) -> ClientSettings:
    values = dict(base_url=base_url, api_key=key, timeout_s=5.0, max_attempts=2, backoff_initial_s=0.01, backoff_max_s=0.02)
    return ClientSettings(**(values | overrides))


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# -- logging ------------------------------------------------------------------------------------------------------


def test_log_filter_redacts_key_in_message_args_and_traceback():
    from lib.secrets import RedactingFilter

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactingFilter([CANARY]))
    logger = logging.getLogger("tests.security.filter")
    logger.propagate = False
    logger.addHandler(handler)
    try:
        logger.warning("calling with key %s", CANARY)
        logger.warning(f"inline key {CANARY}")
        try:
            raise RuntimeError(f"GET http://x/v3/reference/tickers?apiKey={CANARY} failed")
        except RuntimeError:
            logger.exception("request failed")
    finally:
        logger.removeHandler(handler)
    output = stream.getvalue()
    assert CANARY not in output
    assert output.count("***") >= 3, output
    assert "request failed" in output and "RuntimeError" in output


def test_redaction_covers_loggers_and_handlers_set_up_after_the_key_is_resolved(monkeypatch):
    from lib.secrets import resolve_api_key

    monkeypatch.setenv("POLYGON_API_KEY", CANARY)
    assert resolve_api_key(uses_simulator=False) == CANARY
    # A library logger and a handler that exist only after the key was resolved (what a notebook's later cell does).
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logger = logging.getLogger("tests.security.later")
    logger.propagate = False
    logger.addHandler(handler)
    try:
        logger.error("Authorization: Bearer %s", CANARY)
        try:
            raise ValueError(CANARY)
        except ValueError:
            logger.exception("boom")
    finally:
        logger.removeHandler(handler)
    output = stream.getvalue()
    assert CANARY not in output
    assert "Authorization: Bearer ***" in output


# -- what goes over the wire --------------------------------------------------------------------------------------


def test_key_travels_only_in_the_authorization_header():
    from lib.async_client import AsyncPolygonClient

    def respond(handler):
        return 200, {}, {"status": "OK", "results": [{"ticker": "AAA"}], "count": 1}

    with StubServer(respond) as stub:
        PolygonClient(settings_for(stub.base_url)).tickers(as_of=dt.date(2024, 3, 28))

        async def fetch():
            async with AsyncPolygonClient(settings_for(stub.base_url)) as client:
                await client.grouped_daily(dt.date(2024, 3, 28))
                await client.open_close("AAA", dt.date(2024, 3, 28))

        asyncio.run(fetch())
    assert len(stub.requests) == 3
    for request in stub.requests:
        assert CANARY not in request["path"], request["path"]
        assert request["headers"].get("Authorization") == f"Bearer {CANARY}"
        other_headers = {k: v for k, v in request["headers"].items() if k.lower() != "authorization"}
        assert CANARY not in json.dumps(other_headers)


def test_connection_errors_never_carry_the_key():
    """requests' and aiohttp's errors quote the URL: the key is not in the URL, so no error can quote it."""
    from lib.async_client import AsyncPolygonClient
    from lib.errors import PolygonRequestFailed

    base_url = f"http://127.0.0.1:{closed_port()}"
    with pytest.raises(PolygonRequestFailed) as sync_error:
        PolygonClient(settings_for(base_url)).tickers(as_of=dt.date(2024, 3, 28))

    async def fetch():
        async with AsyncPolygonClient(settings_for(base_url)) as client:
            await client.open_close("AAA", dt.date(2024, 3, 28))

    with pytest.raises(PolygonRequestFailed) as async_error:
        asyncio.run(fetch())
    for error in (sync_error.value, async_error.value):
        chain, seen = [], error
        while seen is not None:  # the message, and every exception it was raised from or during
            chain.append(f"{type(seen).__name__}: {seen!s} {seen!r}")
            seen = seen.__cause__ or seen.__context__
        text = "\n".join(chain)
        assert "connection" in text.lower() or "failed" in text.lower(), text
        assert CANARY not in text


def test_next_url_naming_another_host_never_receives_the_key():
    with StubServer(lambda h: (200, {}, {"status": "OK", "results": [{"ticker": "EVIL"}]})) as other_host:

        def respond(handler):
            if "cursor=" in handler.path:
                return 200, {}, {"status": "OK", "results": [{"ticker": "BBB"}], "count": 1}
            next_url = f"{other_host.base_url}/v3/reference/tickers?cursor=page2&apiKey=LEAKED"
            return 200, {}, {"status": "OK", "results": [{"ticker": "AAA"}], "count": 1, "next_url": next_url}

        with StubServer(respond) as api:
            records = PolygonClient(settings_for(api.base_url)).tickers(as_of=dt.date(2024, 3, 28))
    assert other_host.requests == [], "the client followed next_url to another host"
    assert [r["ticker"] for r in records] == ["AAA", "BBB"]
    second = urlsplit(api.requests[1]["path"])
    assert second.path == "/v3/reference/tickers" and "cursor=page2" in second.query
    assert "apikey" not in second.query.lower(), "an apiKey in next_url was passed on"


def test_simulator_binds_loopback_by_default():
    from lib.simulator.__main__ import parse_args
    from lib.simulator.process import SimulatorProcess

    assert parse_args([]).host == "127.0.0.1"
    with SimulatorProcess(tickers=2) as simulator:
        assert urlsplit(simulator.base_url).hostname == "127.0.0.1"


def test_run_record_drops_secret_parameters_and_url_queries():
    from lib.run import public_parameters

    recorded = public_parameters(
        {"ds": "2024-03-28", "api_key": CANARY, "polygon_token": CANARY, "api_key_secret_id": "prod/polygon",
         "api_base_url": f"https://api.example.com/v1?apiKey={CANARY}"}
    )  # fmt: skip
    assert CANARY not in json.dumps(recorded)
    assert recorded["ds"] == "2024-03-28" and recorded["api_base_url"] == "https://api.example.com/v1"


# -- the canary run -----------------------------------------------------------------------------------------------


@pytest.mark.e2e
@pytest.mark.timeout(2400)
def test_canary_key_leaves_no_trace_in_anything_a_run_produces(tmp_path):
    """All four notebooks with a canary key, then every byte the run wrote is searched for it."""
    from lib.simulator.process import SimulatorProcess

    warehouse, run_dir = tmp_path / "warehouse", tmp_path / "runs" / "2024-03-28"
    env = dict(os.environ, POLYGON_API_KEY=CANARY)
    with SimulatorProcess(tickers=5, api_key=CANARY) as simulator:
        command = [
            sys.executable, "-m", "lib.run", "-f", "params/local.yaml", "--ds", "2024-03-28", "--start-ds", "2024-03-25",
            "-p", "warehouse", str(warehouse), "-p", "run_dir", str(run_dir), "-p", "api_base_url", simulator.base_url,
        ]  # fmt: skip
        run = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=1500)
    assert run.returncode == 0, f"{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
    # The run really used the key: the simulator accepts only the canary, and the tables hold its bars.
    record = json.loads((run_dir / "run.json").read_text())
    assert record["tables"]["stock_prices"]["total_rows"] > 0, record["tables"]
    assert [n["notebook"] for n in record["notebooks"]] == ["01_ingest", "02_monthly_rollup", "03_quality", "04_trends"]

    produced = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.suffix == ".parquet" for p in produced) and any(p.name.endswith(".metadata.json") for p in produced)
    assert any(p.suffix == ".ipynb" for p in produced) and any(p.suffix == ".png" for p in produced)
    needle = CANARY.encode()
    hits = [str(p) for p in produced if needle in p.read_bytes()]
    assert hits == [], f"the key was written to {hits}"
    assert CANARY not in run.stdout and CANARY not in run.stderr
    # Parquet pages are compressed, so also read every cell of every table back.
    from pyiceberg.catalog.sql import SqlCatalog

    from lib.catalog import SCHEMAS

    cat = SqlCatalog("local", uri=f"sqlite:///{warehouse / 'catalog.db'}", warehouse=warehouse.resolve().as_uri())
    for name in SCHEMAS:
        cells = cat.load_table(f"stocks.{name}").scan().to_pandas().astype(str).to_csv()
        assert CANARY not in cells, f"the key is stored in {name}"
