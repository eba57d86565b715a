"""Secrets: the API key travels only in the Authorization header and leaves no trace in logs, errors, run records or tables."""

from __future__ import annotations

import asyncio
import datetime as dt
import http.server
import io
import json
import logging
import socket
import threading
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from lib.ingestion.rest_client import ClientSettings, PolygonClient

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
    from lib.core.redaction import RedactingFilter

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
    from lib.core.api_key import resolve_api_key

    monkeypatch.delenv("MASSIVE_API_KEY", raising=False)
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
    from lib.ingestion.async_client import AsyncPolygonClient

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
    from lib.core.errors import PolygonRequestFailed
    from lib.ingestion.async_client import AsyncPolygonClient

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
    from lib.running.runner import public_parameters

    recorded = public_parameters(
        {"ds": "2024-03-28", "api_key": CANARY, "polygon_token": CANARY, "api_key_secret_id": "prod/polygon",
         "api_base_url": f"https://api.example.com/v1?apiKey={CANARY}"}
    )  # fmt: skip
    assert CANARY not in json.dumps(recorded)
    assert recorded["ds"] == "2024-03-28" and recorded["api_base_url"] == "https://api.example.com/v1"


# -- where the key comes from: MASSIVE_API_KEY or POLYGON_API_KEY, or a Secrets Manager secret -----------------------

OTHER_CANARY = "canary-massive-0b9e44c1d2f3-do-not-leak"


@pytest.fixture
def no_env_key(monkeypatch):
    """Neither key variable set (whatever the developer's shell holds); the test sets what it needs."""
    for name in ("MASSIVE_API_KEY", "POLYGON_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.mark.parametrize("names", [("MASSIVE_API_KEY",), ("POLYGON_API_KEY",), ("MASSIVE_API_KEY", "POLYGON_API_KEY")])
def test_key_comes_from_either_name_or_from_both_holding_the_same_key(no_env_key, names):
    from lib.core.api_key import resolve_api_key

    for name in names:
        no_env_key.setenv(name, OTHER_CANARY)
    assert resolve_api_key(uses_simulator=False) == OTHER_CANARY


def test_two_different_keys_stop_the_run_and_say_which_to_unset(no_env_key):
    from moto import mock_aws

    from lib.core.api_key import resolve_api_key
    from lib.core.errors import ApiKeyConflictError, ConfigError

    no_env_key.setenv("MASSIVE_API_KEY", OTHER_CANARY)
    no_env_key.setenv("POLYGON_API_KEY", CANARY)
    messages = []
    with mock_aws():  # were the secret read, it would be read from moto, never from a real account
        for arguments in ({"uses_simulator": False}, {"uses_simulator": True}, {"uses_simulator": False, "secret_id": "x"}):
            with pytest.raises(ApiKeyConflictError) as conflict:
                resolve_api_key(**arguments)
            assert isinstance(conflict.value, ConfigError)
            messages.append(str(conflict.value))
    for message in messages:
        assert message.startswith("MASSIVE_API_KEY and POLYGON_API_KEY are both set in the environment, to different keys")
        assert "before any request" in message and "Unset POLYGON_API_KEY to use MASSIVE_API_KEY" in message
        assert CANARY not in message and OTHER_CANARY not in message


def test_both_names_values_are_redacted_from_logs(no_env_key):
    from lib.core.api_key import resolve_api_key
    from lib.core.errors import ApiKeyConflictError

    no_env_key.setenv("MASSIVE_API_KEY", OTHER_CANARY)
    no_env_key.setenv("POLYGON_API_KEY", CANARY)
    with pytest.raises(ApiKeyConflictError):
        resolve_api_key(uses_simulator=False)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logger = logging.getLogger("tests.security.both_names")
    logger.propagate = False
    logger.addHandler(handler)
    try:
        logger.warning("MASSIVE_API_KEY=%s POLYGON_API_KEY=%s", OTHER_CANARY, CANARY)
    finally:
        logger.removeHandler(handler)
    assert stream.getvalue().strip() == "MASSIVE_API_KEY=*** POLYGON_API_KEY=***"


@pytest.fixture
def secrets_manager(no_env_key, tmp_path):
    """moto's Secrets Manager in this process: fake credentials, no profile, no endpoint override."""
    from moto import mock_aws

    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_REGION"):
        no_env_key.delenv(name, raising=False)
    no_env_key.setenv("AWS_ACCESS_KEY_ID", "testing")
    no_env_key.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    no_env_key.setenv("AWS_DEFAULT_REGION", "us-east-1")
    no_env_key.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    no_env_key.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    with mock_aws():
        import boto3

        yield boto3.client("secretsmanager", region_name="us-east-1")


@pytest.mark.parametrize(
    "stored",
    [f"{OTHER_CANARY}\n", json.dumps({"MASSIVE_API_KEY": OTHER_CANARY}), json.dumps({"POLYGON_API_KEY": OTHER_CANARY}),
     json.dumps({"api_key": OTHER_CANARY}), json.dumps({"MASSIVE_API_KEY": OTHER_CANARY, "POLYGON_API_KEY": OTHER_CANARY})],
    ids=["plain", "massive", "polygon", "api_key", "both-equal"],
)  # fmt: skip
def test_secret_holds_the_key_as_plain_text_or_as_json_under_either_name(secrets_manager, stored):
    from lib.core.api_key import resolve_api_key

    secrets_manager.create_secret(Name="massive/api-key", SecretString=stored)
    assert resolve_api_key(uses_simulator=False, secret_id="massive/api-key") == OTHER_CANARY


def test_a_named_secret_wins_over_the_environment(secrets_manager, no_env_key):
    from lib.core.api_key import resolve_api_key

    secrets_manager.create_secret(Name="massive/api-key", SecretString=json.dumps({"MASSIVE_API_KEY": OTHER_CANARY}))
    no_env_key.setenv("MASSIVE_API_KEY", CANARY)
    assert resolve_api_key(uses_simulator=False, secret_id="massive/api-key") == OTHER_CANARY


def test_a_secret_with_two_different_keys_or_no_known_field_is_refused_without_showing_them(secrets_manager):
    from lib.core.api_key import resolve_api_key
    from lib.core.errors import ApiKeyConflictError, ConfigError

    two = json.dumps({"MASSIVE_API_KEY": OTHER_CANARY, "POLYGON_API_KEY": CANARY})
    secrets_manager.create_secret(Name="stocks/two-keys", SecretString=two)
    with pytest.raises(ApiKeyConflictError) as conflict:
        resolve_api_key(uses_simulator=False, secret_id="stocks/two-keys")
    assert "in the secret 'stocks/two-keys'" in str(conflict.value)
    assert "Delete the field POLYGON_API_KEY to use MASSIVE_API_KEY" in str(conflict.value)
    secrets_manager.create_secret(Name="stocks/unknown-field", SecretString=json.dumps({"key": OTHER_CANARY}))
    with pytest.raises(ConfigError, match="none of the fields MASSIVE_API_KEY, POLYGON_API_KEY, api_key") as missing:
        resolve_api_key(uses_simulator=False, secret_id="stocks/unknown-field")
    for error in (conflict.value, missing.value):
        assert CANARY not in str(error) and OTHER_CANARY not in str(error)


def test_runner_refuses_two_different_keys_with_exit_2_before_any_notebook(no_env_key, tmp_path, capsys):
    from lib.running import runner as run

    no_env_key.setenv("MASSIVE_API_KEY", OTHER_CANARY)
    no_env_key.setenv("POLYGON_API_KEY", CANARY)
    no_env_key.setattr(run, "run_notebooks", lambda *args, **kwargs: pytest.fail("a notebook started"))
    warehouse, run_dir = tmp_path / "warehouse", tmp_path / "run"
    assert run.main(["-p", "warehouse", str(warehouse), "-p", "run_dir", str(run_dir)]) == 2
    output = capsys.readouterr()
    assert output.err.startswith("error: MASSIVE_API_KEY and POLYGON_API_KEY are both set") and not output.out
    assert "Unset POLYGON_API_KEY" in output.err and CANARY not in output.err and OTHER_CANARY not in output.err
    assert not warehouse.exists() and not run_dir.exists()


@pytest.mark.parametrize(
    "name, api_base_url, expected",
    [("MASSIVE_API_KEY", "", "https://api.massive.com"), ("POLYGON_API_KEY", "", "https://api.massive.com"),
     ("MASSIVE_API_KEY", "https://api.polygon.io", "https://api.polygon.io")],
)  # fmt: skip
def test_runner_with_a_key_targets_massive_unless_told_otherwise(no_env_key, tmp_path, name, api_base_url, expected):
    from lib.running.runner import parse_args, resolve_parameters

    no_env_key.setenv(name, OTHER_CANARY)
    argv = ["-p", "warehouse", str(tmp_path / "w"), "-p", "run_dir", str(tmp_path / "r"), "-p", "api_base_url", api_base_url]
    assert resolve_parameters(parse_args(argv))["api_base_url"] == expected


# -- the canary run -----------------------------------------------------------------------------------------------


# The canary run of every notebook: tests/test_e2e.py::test_canary_key_leaves_no_trace_in_anything_a_run_produces
# (it shares the end-to-end run instead of running the pipeline a second time).
