"""Every bad input refused before any work: each parameter validated, named, and explained (no Spark here)."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lib.core.errors import ConfigError, DsFormatError, ParameterError
from lib.settings.config import PARAMETERS, RunConfig, check_local_warehouse

REPO = Path(__file__).resolve().parent.parent
DS = "2024-03-28"
LONG = "x" * 5000
SQL = "stocks;drop table x"
SHELL = "$(rm -rf ~)"

# Several bad values per parameter: wrong type, out of range, empty where not allowed, too long, SQL and shell
# metacharacters, unicode. Every parameter of RunConfig has an entry (test_every_parameter_has_bad_values).
BAD_VALUES: dict[str, list] = {
    "ds": ["2024/03/28", "", None, 20240328, "2024-13-01", "2024-02-30", SQL, "２０２４-03-28", "2999-01-02"],
    "start_ds": ["03/01/2024", 20240301, "2024-04-01", "1999-12-31", SHELL, "2024-03-3１"],
    "env": ["cloud", "", None, "LOCAL", 1, SQL, "lócal"],
    "warehouse": ["", None, 5, "a\x00b", "wh\n", "s3://bucket/wh", "file:///tmp/wh", "/proc/wh", "x/" + "y" * 300, LONG],
    "catalog": ["", None, "my catalog", "local;drop", "`local`", "local.x", "1local", "cätalog", "a" * 65, 7, SHELL],
    "namespace": ["", None, "stocks;drop", "stocks drop", "`stocks`", "stocks.x", "9stocks", "stöcks", "s" * 65, SQL],
    "api_base_url": ["http://", "api.polygon.io", "ftp://api.polygon.io", "https://user:pw@api.polygon.io",
                     "https://api.polygon.io:0", "https://api.polygon.io:99999", "https://api.polygon.io/?apiKey=k",
                     "https://exa mple.com", "https://bücher.de", "https://api.polygon.io#x", "http://[::1", 5,
                     "https://" + "a" * 3000, "http://a;b"],  # fmt: skip
    "strategy": ["fastest", "", None, "AUTO", 3, SQL],
    "run_dir": [5, "a\x00b", "/proc/runs", "runs/" + "r" * 300, LONG, ["runs"]],
    "api_key_secret_id": ["a b", "polygon;rm", "key\n", 5, "ключ", "s" * 3000],
    "simulator_tickers": ["abc", 0, -1, 100_001, True, 1.5, "", None, "1e3", "٣"],
    "max_calls_per_minute": ["abc", -1, float("nan"), float("inf"), True, 10**400, "", None, "1,000"],
    "adjusted": ["maybe", 2, None, "", 1.0, "tru"],
    "max_attempts": ["abc", 0, 21, True, False, 2.5, "", None, "5;", "五"],
    "request_timeout_s": [0, "0", -1, 601, float("nan"), "inf", "abc", True, "", None],
    "concurrency": [0, 1025, "many", True, -5, None],
    "symbols": [123, "AAPL;rm", ["AAPL", 5], ["A" * 21], "ÄPPL", ["AAPL"] * 1001, {"AAPL": 1}, "[AAPL", True],
    "top_n": [0, 1001, "eight", True, 2.5, None],
    "lookback_days": [-1, 36_501, "year", True, 1.5, None],
    "quality": ["{outlier_z: ", "[1, 2]", 5, '{"foo": 1}', '{"outlier_z": -1}', '{"outlier_z": "high"}',
                '{"outlier_z": NaN}', '{"outlier_min_days": 2.5}', '{"severity": {"outliers": "fatal"}}',
                '{"severity": {"nope": "error"}}', '{"severity": "error"}', "{" * 500, "x" * 20_000, "2024-13-45"],  # fmt: skip
    "simulator_options": ['{"latency_ms": -5}', "{latency_ms: ", '{"latency_ms": "slow"}', '{"tickers": 10}',
                          '{"host": "0.0.0.0"}', '{"fault_rate": 1.5}', '{"faults": "500,boom"}',
                          '{"defects": "dup:AAPL"}', '{"defects": "dup:AAPL:2024-02-30"}', '{"fail_tickers": "A;B"}',
                          '{"retry_after": true}', '{"seed": -1}', "[1]", 7, '{"latency_ms": .inf}'],  # fmt: skip
    "adjust": ["adjusted", "", None, "RAW", 1, SQL],
    "wap_branch": ["main", "audit-2024", "audit branch", "audit;drop", "`b`", "b" * 65, 5, "brânch"],
    "spark_master": ["yarn", "local[0]", "local[x]", "local[", "spark://", "spark://host", "spark://host:0",
                     "spark://h:7077/path", "spark://u:p@h:7077", "mesos://h:5050", 5, "local[*];rm"],  # fmt: skip
    "stream_url": ["http://socket.polygon.io", "ws://", "wss://u:p@h/stocks", "wss://h:99999", "wss://h/?apiKey=k",
                   "socket.polygon.io", 5, "wss://h o"],  # fmt: skip
    "horizon_days": [0, 251, "week", True, 1.5, None, -5],
    "keep_run_tags_days": [0, 36_501, "month", True, 1.5, None, -1],
}

# Obvious string forms, as papermill -p and Glue job arguments give them, and the value they become.
COERCED = [
    ("max_attempts", "5", 5),
    ("max_attempts", 5.0, 5),
    ("simulator_tickers", " 10 ", 10),
    ("request_timeout_s", "0.5", 0.5),
    ("max_calls_per_minute", "5", 5.0),
    ("adjusted", "false", False),
    ("adjusted", "TRUE", True),
    ("symbols", "aapl, brk.a", ("AAPL", "BRK.A")),
    ("symbols", '["msft", "I:SPX"]', ("MSFT", "I:SPX")),
    ("quality", '{"outlier_z": "6"}', {"outlier_z": 6.0}),
    ("quality", "", {}),
    ("simulator_options", '{"latency_ms": 20, "faults": ["500", "reset"], "fault_seed": null}',
     {"latency_ms": 20.0, "faults": "500,reset", "fault_seed": None}),  # fmt: skip
    ("simulator_options", "{defects: 'dup:AAPL:2024-03-28'}", {"defects": "dup:AAPL:2024-03-28"}),
    ("start_ds", "null", None),
    ("horizon_days", "250", 250),
    ("lookback_days", 0, 0),
]

GOOD = [
    ("api_base_url", "https://api.polygon.io"),
    ("api_base_url", "http://127.0.0.1:8765"),
    ("api_base_url", "https://[::1]:8443/v1"),
    ("spark_master", "local"),
    ("spark_master", "local[4]"),
    ("spark_master", "local[*]"),
    ("spark_master", "spark://127.0.0.1:7077"),
    ("stream_url", "wss://socket.polygon.io/stocks"),
    ("stream_url", "ws://127.0.0.1:8765/stocks"),
    ("wap_branch", "audit_2024_03_28"),
    ("catalog", "glue_catalog"),
    ("namespace", "_stocks2"),
    ("api_key_secret_id", "arn:aws:secretsmanager:us-east-1:123456789012:secret:polygon/api-key-AbCdEf"),
    ("adjust", "split"),
]


def build(name: str, value):
    params = {"ds": DS, name: value}
    return RunConfig.from_params(**params)


def test_every_parameter_has_bad_values():
    assert set(BAD_VALUES) == set(PARAMETERS)


def test_every_notebook_parameter_is_validated():
    """Each name assigned in a notebook's parameters cell is a RunConfig parameter, so the runner and Glue check it."""
    for notebook in sorted((REPO / "notebooks").glob("*.ipynb")):
        cells = json.loads(notebook.read_text())["cells"]
        source = next("".join(c["source"]) for c in cells if "parameters" in c.get("metadata", {}).get("tags", []))
        names = {target.id for node in ast.parse(source).body if isinstance(node, ast.Assign) for target in node.targets}
        assert names <= set(PARAMETERS), f"{notebook.name}: {sorted(names - set(PARAMETERS))} escape validation"


@pytest.mark.parametrize(("name", "value"), [(n, v) for n, values in BAD_VALUES.items() for v in values])
def test_bad_value_is_refused_naming_the_parameter(name, value, tmp_path):
    with pytest.raises(ParameterError) as refused:
        build(name, value)
    error = refused.value
    assert error.name == name, f"{error.name!r} named for a bad {name}: {error}"
    assert str(error).startswith(name), str(error)
    assert len(str(error)) < 700 and "\n" not in str(error), "the message is one line of reasonable length"


@pytest.mark.parametrize(("name", "value", "expected"), COERCED)
def test_string_forms_are_coerced(name, value, expected):
    config = build(name, value)
    assert getattr(config, name) == (expected if expected is not None else config.ds)


@pytest.mark.parametrize(("name", "value"), GOOD)
def test_good_values_pass(name, value):
    assert getattr(build(name, value), name) == value


def test_defaults_and_the_params_files_validate():
    from lib.settings.command_line import load_params_file

    config = RunConfig.from_params(ds=DS)
    assert (config.adjust, config.wap_branch, config.spark_master, config.stream_url, config.horizon_days) == (
        "total_return", "", "", "", 5,
    )  # fmt: skip
    assert RunConfig.from_params(**load_params_file(REPO / "params/local.yaml")).namespace == "stocks"
    glue = {k: v for k, v in load_params_file(REPO / "params/glue.yaml").items() if k != "glue"}
    assert RunConfig.from_params(**glue).env == "glue"


def test_the_error_says_what_was_expected_and_what_to_do():
    with pytest.raises(ParameterError) as refused:
        build("max_attempts", "abc")
    error = refused.value
    assert (error.name, error.value, error.expected) == ("max_attempts", "abc", "an integer from 1 to 20")
    assert "got 'abc'" in str(error) and "Example: -p max_attempts 5" in str(error)
    with pytest.raises(ParameterError, match=r"simulator_options\.latency_ms must be at least 0, got -5") as refused:
        build("simulator_options", {"latency_ms": -5})
    assert (refused.value.name, refused.value.field) == ("simulator_options", "latency_ms")


def test_ds_errors_stay_ds_format_errors():
    with pytest.raises(DsFormatError, match="ds must be YYYY-MM-DD, got '2024/03/28'"):
        build("ds", "2024/03/28")


def test_key_and_url_credentials_never_shown(monkeypatch):
    key = "pk-canary-9f8e7d6c"
    monkeypatch.setenv("POLYGON_API_KEY", key)
    for name, value in [("api_base_url", f"https://api.polygon.io/v1?apiKey={key}"),
                        ("api_base_url", f"https://me:{key}@api.polygon.io"), ("namespace", key),
                        ("stream_url", f"wss://socket.polygon.io/stocks?token={key}")]:  # fmt: skip
        with pytest.raises(ParameterError) as refused:
            build(name, value)
        assert key not in str(refused.value) and name in str(refused.value)


def test_long_values_are_truncated():
    with pytest.raises(ParameterError) as refused:
        build("namespace", "n" * 10_000)
    assert "(10,000 characters)" in str(refused.value) and len(str(refused.value)) < 400


# --- the local warehouse: refused when it cannot be made, and nothing is created to find out ------------------------


def test_warehouse_that_cannot_hold_folders_is_refused_without_creating_anything(tmp_path):
    a_file = tmp_path / "file"
    a_file.write_text("")
    dangling = tmp_path / "dangling"
    dangling.symlink_to(tmp_path / "nowhere" / "deeper")
    cases = {
        a_file: "is a file, not a folder",
        a_file / "wh": "is a file, not a folder",
        a_file / "deeper" / "wh": "is a file, not a folder",
        dangling / "wh": "symbolic link to nowhere",
        Path("/proc/stocks-warehouse"): "holds no folders",
        tmp_path / ("w" * 256): "longer than the file system allows",
    }
    for warehouse, problem in cases.items():
        with pytest.raises(ParameterError, match=problem) as refused:
            check_local_warehouse(warehouse)
        assert refused.value.name == "warehouse" and "Point -p warehouse at a folder you can write" in str(refused.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dangling", "file"], "validation created something"
    assert RunConfig.from_params(ds=DS, warehouse=str(tmp_path / "new" / "wh")).warehouse
    assert not (tmp_path / "new").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere: permissions cannot refuse it")
def test_unwritable_warehouse_is_refused(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    with pytest.raises(ParameterError, match="not writable"):
        check_local_warehouse(locked / "wh")


# --- identifiers meet SQL quoted --------------------------------------------------------------------------------------


def test_identifiers_are_quoted_for_sql():
    from lib.storage.catalog import quote_identifier, table_identifier

    assert quote_identifier("local", "stocks") == "`local`.`stocks`"
    assert quote_identifier("we`ird") == "`we``ird`"
    config = RunConfig.from_params(ds=DS, catalog="glue_catalog", namespace="select")
    assert table_identifier(config, "stock_prices", "snapshots") == "`glue_catalog`.`select`.`stock_prices`.`snapshots`"


# --- the same refusal from the runner, a notebook run alone and a Glue job ---------------------------------------------

RUNNER_CASES = [
    ("namespace", "stocks;drop"),
    ("namespace", "stocks drop"),
    ("catalog", "loc`al"),
    ("max_attempts", "abc"),
    ("simulator_tickers", "abc"),
    ("max_calls_per_minute", "abc"),
    ("request_timeout_s", "0"),
    ("api_base_url", "http://"),
    ("simulator_options", '{"latency_ms": -5}'),
    ("simulator_options", "{latency_ms: "),
    ("quality", "{outlier_z: [}"),
    ("ds", "2024-13-45"),
]


@pytest.mark.parametrize(("name", "value"), RUNNER_CASES)
def test_runner_refuses_before_any_notebook_starts(name, value, tmp_path):
    warehouse, runs = tmp_path / "wh", tmp_path / "runs"
    command = [sys.executable, "-m", "lib.run", "-f", "params/local.yaml", "--runs-root", str(runs),
               "-p", "warehouse", str(warehouse), "-p", name, value]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k not in ("POLYGON_API_KEY", "MASSIVE_API_KEY")}
    run = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert run.returncode == 2, run.stdout[-2000:] + run.stderr[-2000:]
    assert run.stderr.startswith(f"error: {name}") and run.stderr.count("\n") == 1, run.stderr
    assert "Traceback" not in run.stdout + run.stderr
    assert not list(tmp_path.rglob("*.ipynb")), "a notebook started although the input was refused"
    assert not warehouse.exists() and not runs.exists(), "the refused run created something"


def test_runner_refuses_a_bad_warehouse_before_any_notebook_starts(tmp_path):
    a_file = tmp_path / "file"
    a_file.write_text("")
    command = [sys.executable, "-m", "lib.run", "-f", "params/local.yaml", "--runs-root", str(tmp_path / "runs"),
               "-p", "warehouse", str(a_file / "wh")]  # fmt: skip
    run = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert run.returncode == 2 and run.stderr.startswith("error: warehouse") and "Traceback" not in run.stderr
    assert not (tmp_path / "runs").exists()


def test_a_notebook_run_alone_refuses_in_its_config_cell(tmp_path):
    """papermill straight on 01_ingest: the second cell's RunConfig.from_params raises the typed error, no Spark."""
    import papermill

    warehouse = tmp_path / "wh"
    with pytest.raises(papermill.PapermillExecutionError) as failed:
        papermill.execute_notebook(
            str(REPO / "notebooks/01_ingest.ipynb"), str(tmp_path / "01_ingest.ipynb"), cwd=str(REPO),
            parameters={"ds": DS, "start_ds": DS, "warehouse": str(warehouse), "run_dir": str(tmp_path / "run"),
                        "namespace": "stocks;drop"},
            kernel_name="python3", progress_bar=False, log_output=False,
        )  # fmt: skip
    assert failed.value.ename == "ParameterError" and failed.value.evalue.startswith("namespace must be")
    assert not warehouse.exists()


def test_glue_job_arguments_are_refused_the_same_way():
    from lib.glue.job_args import resolve_parameters

    injected = {"ds": DS, "start_ds": "", "env": "glue", "warehouse": "s3://lake/wh", "namespace": "stocks",
                "max_attempts": 5, "simulator_options": {}, "lookback_days": 365}  # fmt: skip
    for name, value in [("namespace", "stocks;drop"), ("max_attempts", "abc"), ("simulator_options", "{latency_ms: "),
                        ("simulator_options", '{"latency_ms": -1}'), ("lookback_days", "x"), ("warehouse", "wh")]:  # fmt: skip
        with pytest.raises(ParameterError) as refused:
            resolve_parameters(injected, ["job.py", "--JOB_NAME", "j", f"--{name}", value])
        assert refused.value.name == name
    assert resolve_parameters(injected, ["job.py", "--max_attempts", "7"]) == {"max_attempts": 7}


def test_glue_submission_refuses_before_anything(capsys):
    from lib.glue.__main__ import main

    notebook, params = str(REPO / "notebooks/01_ingest.ipynb"), str(REPO / "params/glue.yaml")
    code = main(["script", notebook, "-f", params, "-p", "namespace", "stocks;drop"])
    assert code == 2 and capsys.readouterr().err.startswith("error: namespace must be")


# --- the summary speaks of this run only -------------------------------------------------------------------------------


def test_summary_after_a_failed_ingest_names_it_and_claims_no_quality(tmp_path, monkeypatch, capsys):
    from lib.running import runner as run

    earlier = {"checks_run": 15, "failed": 1, "failed_errors": 0, "checks": []}
    monkeypatch.setattr(run, "quality_summary", lambda params: earlier)  # an earlier run's rows for this ds
    monkeypatch.setattr(run, "table_rows", lambda params: {"stock_prices": {"run_rows": 10, "total_rows": 10}})
    params = {"ds": DS, "start_ds": DS, "warehouse": str(tmp_path / "wh"), "run_dir": str(tmp_path / "run")}
    failed = [{"notebook": "01_ingest", "status": "failed", "seconds": 1.0, "error": "PolygonAuthError: refused"},
              *({"notebook": n, "status": "not run", "seconds": None} for n in ("02_monthly_rollup", "03_quality"))]  # fmt: skip
    record = run.write_record(params, failed, "range", "now", 1.0, "failed")
    assert record["quality"] is None and record["calls"] is None
    ok = [{"notebook": n, "status": "ok", "seconds": 1.0} for n in ("01_ingest", "02_monthly_rollup", "03_quality")]
    assert run.write_record(params, ok, "range", "now", 1.0, "ok")["quality"] == earlier

    monkeypatch.setattr(run, "run_once", lambda *args: dict(record, seconds=1.0))
    args = run.parse_args(["--runs-root", str(tmp_path / "runs")])
    assert run.main_range(args, params) == 1
    out = capsys.readouterr().out
    assert "01_ingest failed: PolygonAuthError: refused" in out and "not run: 02_monthly_rollup, 03_quality" in out
    assert "quality:" not in out and "stock_prices" not in out


# --- random input: validated, or refused by name, never another exception --------------------------------------------

ANY_VALUE = st.one_of(
    st.text(),
    st.integers(),
    st.floats(),
    st.booleans(),
    st.none(),
    st.lists(st.text(max_size=8), max_size=4),
    st.dictionaries(st.text(max_size=12), st.one_of(st.text(max_size=8), st.integers(), st.floats()), max_size=3),
)
FAST = settings(max_examples=60, deadline=None, database=None)  # no .hypothesis/ folder in the repository


def _validates_or_names(name: str, value) -> None:
    try:
        build(name, value) if name != "ds" else RunConfig.from_params(ds=value)
    except ConfigError as exc:
        assert name in str(exc), f"a refused {name} not named: {exc}"
    # any other exception fails the test: that is the property


@pytest.mark.parametrize("name", PARAMETERS)
@FAST
@given(text=st.text())
def test_random_text_validates_or_is_refused_by_name(name, text):
    _validates_or_names(name, text)


@pytest.mark.parametrize("name", PARAMETERS)
@FAST
@given(value=ANY_VALUE)
def test_random_values_validate_or_are_refused_by_name(name, value):
    _validates_or_names(name, value)


@pytest.mark.parametrize("name", ["simulator_options", "quality"])
@FAST
@given(options=st.dictionaries(st.sampled_from(["latency_ms", "seed", "fault_rate", "faults", "fail_tickers", "defects",
                                                  "retry_after", "slow_ms", "fault_seed", "outlier_z", "vwap_tolerance",
                                                  "outlier_min_days", "severity", "array_tolerance"]),
                               ANY_VALUE, max_size=4))  # fmt: skip
def test_random_mappings_validate_or_are_refused_by_name(name, options):
    _validates_or_names(name, options)
    _validates_or_names(name, json.dumps(options, default=str))  # as it comes from -p or a Glue argument
