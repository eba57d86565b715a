"""AWS Glue: `python -m lib.glue` against moto's server on loopback, and the job script run locally."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import uuid
import zipfile
from pathlib import Path

import nbformat
import pytest
import yaml

from lib.glue.__main__ import main

pytestmark = pytest.mark.glue
REPO = Path(__file__).resolve().parent.parent
DS, START = "2024-03-05", "2024-03-01"
REGION = "us-east-1"
# Must never leave this machine: set as $POLYGON_API_KEY while submitting, then looked for everywhere.
SENTINEL_KEY = "pk-sentinel-never-in-a-job-0123456789"


@pytest.fixture(scope="module")
def moto_endpoint():
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    import requests

    # Job runs go STARTING -> RUNNING -> SUCCEEDED, one step per get_job_run, so --wait really polls.
    transition = {"model_name": "glue::job_run", "transition": {"progression": "manual", "times": 1}}
    requests.post(f"{endpoint}/moto-api/state-manager/set-transition", json=transition, timeout=10).raise_for_status()
    yield endpoint
    requests.post(f"{endpoint}/moto-api/state-manager/unset-transition", json={"model_name": "glue::job_run"}, timeout=10)
    server.stop()


@pytest.fixture
def aws(moto_endpoint, monkeypatch, tmp_path):
    """AWS_* pointing at moto only (no profile, no real credentials), and the two clients the tests read with."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_REGION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("POLYGON_API_KEY", SENTINEL_KEY)
    import boto3

    return {service: boto3.client(service, region_name=REGION) for service in ("s3", "glue", "secretsmanager")}


def write_params(tmp_path: Path, assets_bucket: str, **glue_overrides) -> tuple[Path, dict]:
    """params/glue.yaml with its S3 locations moved to `assets_bucket` and a unique job name prefix."""
    params = yaml.safe_load((REPO / "params" / "glue.yaml").read_text())
    params.update(ds=DS, start_ds=START)
    glue = params["glue"]
    for field in ("script_location", "package_location", "notebook_location", "temp_dir"):
        glue[field] = f"s3://{assets_bucket}/{field.split('_')[0]}/"
    glue["job_name_prefix"] = f"t{uuid.uuid4().hex[:8]}-"
    glue.update(glue_overrides)
    path = tmp_path / "glue.yaml"
    path.write_text(yaml.safe_dump(params))
    return path, params


@pytest.fixture
def assets(aws, tmp_path):
    bucket = f"glue-assets-{uuid.uuid4().hex[:10]}"
    aws["s3"].create_bucket(Bucket=bucket)
    path, params = write_params(tmp_path, bucket)
    return {"bucket": bucket, "params_file": path, "params": params}


def s3_read(s3, uri: str) -> bytes:
    bucket, key = uri.removeprefix("s3://").split("/", 1)
    return s3.get_object(Bucket=bucket, Key=key)["Body"].read()


def test_submit_wait_creates_the_job_uploads_and_succeeds(aws, assets):
    command = [
        sys.executable, "-m", "lib.glue", "submit", "notebooks/01_ingest.ipynb", "-f", str(assets["params_file"]),
        "-p", "ds", DS, "--wait", "--poll-seconds", "0.05",
    ]  # fmt: skip
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    job_name = f"{assets['params']['glue']['job_name_prefix']}01_ingest"
    assert "RUNNING" in done.stdout and "state: SUCCEEDED" in done.stdout
    run_id = next(line.split(": ", 1)[1] for line in done.stdout.splitlines() if line.startswith("run id: "))
    assert "log group: " in done.stdout and "/output" in done.stdout

    job = aws["glue"].get_job(JobName=job_name)["Job"]
    assert job["GlueVersion"] == "5.0"
    assert (job["WorkerType"], job["NumberOfWorkers"]) == ("G.1X", 2)
    assert job["Role"] == assets["params"]["glue"]["role_arn"]
    arguments = job["DefaultArguments"]
    assert arguments["--datalake-formats"] == "iceberg"
    conf = dict(pair.split("=", 1) for pair in arguments["--conf"].split(" --conf "))
    assert conf == {
        "spark.sql.extensions": "org.apache.iceberg.spark.extensions.IcebergSparkSessionExtensions",
        "spark.sql.catalog.glue_catalog": "org.apache.iceberg.spark.SparkCatalog",
        "spark.sql.catalog.glue_catalog.catalog-impl": "org.apache.iceberg.aws.glue.GlueCatalog",
        "spark.sql.catalog.glue_catalog.io-impl": "org.apache.iceberg.aws.s3.S3FileIO",
        "spark.sql.catalog.glue_catalog.warehouse": "s3://my-stocks-lake/warehouse",
    }
    assert "exchange_calendars==4.13.2" in arguments["--additional-python-modules"].split(",")
    assert arguments["--TempDir"] == f"s3://{assets['bucket']}/temp/"

    script = s3_read(aws["s3"], job["Command"]["ScriptLocation"]).decode()
    compile(script, "job.py", "exec")
    assert f'ds = "{DS}"' in script and 'env = "glue"' in script and "resolve_parameters(" in script
    package = zipfile.ZipFile(io.BytesIO(s3_read(aws["s3"], arguments["--extra-py-files"])))
    names = set(package.namelist())
    assert {"lib/__init__.py", "lib/running/steps.py", "lib/storage/session.py", "lib/glue/job_args.py",
            "lib/storage/spark_conf/log4j2.properties", "lib/presentation/report_templates/run.html.j2"} <= names
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]

    run = aws["glue"].get_job_run(JobName=job_name, RunId=run_id)["JobRun"]
    assert run["Arguments"]["--ds"] == DS
    everything = json.dumps({"job": job, "run": run}, default=str) + script
    assert SENTINEL_KEY not in everything, "the Polygon key reached the job"


def test_submit_again_replaces_the_definition(aws, assets, tmp_path, capsys):
    args = ["submit", "notebooks/02_monthly_rollup.ipynb", "-f", str(assets["params_file"])]
    assert main(args) == 0
    job_name = f"{assets['params']['glue']['job_name_prefix']}02_monthly_rollup"
    assert aws["glue"].get_job(JobName=job_name)["Job"]["NumberOfWorkers"] == 2
    (tmp_path / "bigger").mkdir()
    prefix = assets["params"]["glue"]["job_name_prefix"]
    bigger, _ = write_params(tmp_path / "bigger", assets["bucket"], number_of_workers=5, job_name_prefix=prefix)
    assert main(["submit", "notebooks/02_monthly_rollup.ipynb", "-f", str(bigger), "-p", "ds", "2024-03-04"]) == 0
    out = capsys.readouterr().out
    assert f"job {job_name} updated" in out and "does not implement UpdateJob" in out
    job = aws["glue"].get_job(JobName=job_name)["Job"]
    assert job["NumberOfWorkers"] == 5 and job["GlueVersion"] == "5.0"
    assert 'ds = "2024-03-04"' in s3_read(aws["s3"], job["Command"]["ScriptLocation"]).decode()


def test_update_errors_propagate_on_aws_itself():
    """The delete+create fallback is for endpoints without UpdateJob; on AWS an update_job error is raised."""
    import boto3
    from botocore.exceptions import ClientError
    from botocore.stub import Stubber

    from lib.glue.deploy import put_job

    glue = boto3.client("glue", region_name=REGION, endpoint_url="https://glue.us-east-1.amazonaws.com",
                        aws_access_key_id="x", aws_secret_access_key="x")  # fmt: skip
    definition = {"Role": "r", "Command": {"Name": "glueetl", "ScriptLocation": "s3://b/k.py"}}
    with Stubber(glue) as stub:
        stub.add_response("get_job", {"Job": {"Name": "j"}}, {"JobName": "j"})
        stub.add_client_error("update_job", service_error_code="500", http_status_code=500)
        with pytest.raises(ClientError):
            put_job(glue, "j", definition, log=lambda _: None)
        stub.assert_no_pending_responses()


def test_failed_run_exits_non_zero_with_glue_error_message(aws, assets, monkeypatch, capsys):
    """moto's job runs always end SUCCEEDED, so only get_job_run is answered here with a FAILED run."""
    from botocore.awsrequest import AWSResponse

    from lib.glue import deploy

    failed = {
        "JobRunState": "FAILED",
        "ErrorMessage": "AnalysisException: Table not found: stock_prices",
        "LogGroupName": "/aws-glue/jobs",
    }

    asked: dict = {}

    def remember_request(params, **_):
        asked.update(params)

    def answer_failed(**_):
        run = {"Id": asked["RunId"], "JobName": asked["JobName"], **failed}
        return AWSResponse("http://stub", 200, {}, None), {"JobRun": run}

    class FailingRuns(deploy.Aws):
        def __init__(self, settings, client_factory=None):
            super().__init__(settings, client_factory)
            self.glue.meta.events.register("before-parameter-build.glue.GetJobRun", remember_request)
            self.glue.meta.events.register("before-call.glue.GetJobRun", answer_failed)

    monkeypatch.setattr(deploy, "Aws", FailingRuns)
    code = main(
        ["submit", "notebooks/02_monthly_rollup.ipynb", "-f", str(assets["params_file"]), "--wait", "--poll-seconds", "0"]
    )
    captured = capsys.readouterr()
    assert code == 1
    assert "state: FAILED" in captured.out
    assert "ended FAILED: AnalysisException: Table not found: stock_prices" in captured.err
    assert "/aws-glue/jobs/output" in captured.err


def test_missing_bucket_is_a_clear_error(aws, tmp_path, capsys):
    path, _ = write_params(tmp_path, f"no-such-bucket-{uuid.uuid4().hex[:8]}")
    assert main(["submit", "notebooks/01_ingest.ipynb", "-f", str(path)]) == 2
    err = capsys.readouterr().err
    assert "does not exist (glue.script_location = s3://no-such-bucket-" in err and "aws s3 mb" in err


def test_unknown_notebook_is_a_clear_error(aws, assets, capsys):
    assert main(["submit", "notebooks/05_nope.ipynb", "-f", str(assets["params_file"])]) == 2
    err = capsys.readouterr().err
    assert "notebook 'notebooks/05_nope.ipynb' not found" in err and "notebooks/01_ingest.ipynb" in err


def test_missing_glue_settings_are_named(aws, tmp_path, capsys):
    params = yaml.safe_load((REPO / "params" / "glue.yaml").read_text())
    del params["glue"]["role_arn"], params["glue"]["worker_type"]
    (tmp_path / "partial.yaml").write_text(yaml.safe_dump(params))
    del params["glue"]
    (tmp_path / "none.yaml").write_text(yaml.safe_dump(params))
    assert main(["submit", "notebooks/01_ingest.ipynb", "-f", str(tmp_path / "partial.yaml")]) == 2
    assert "the `glue:` section is missing ['role_arn', 'worker_type']" in capsys.readouterr().err
    assert main(["submit", "notebooks/01_ingest.ipynb", "-f", str(tmp_path / "none.yaml")]) == 2
    assert "needs a `glue:` mapping" in capsys.readouterr().err


def test_upload_notebook_for_glue_studio(aws, assets, capsys):
    assert main(["upload-notebook", "notebooks/03_quality.ipynb", "-f", str(assets["params_file"])]) == 0
    nb = nbformat.reads(s3_read(aws["s3"], f"s3://{assets['bucket']}/notebook/03_quality.ipynb").decode(), as_version=4)
    magics, configure = nb.cells[0].source, nb.cells[1].source
    assert "%glue_version 5.0" in magics and "%number_of_workers 2" in magics and "%extra_py_files s3://" in magics
    assert configure.startswith("%%configure")
    assert json.loads(configure.split("\n", 1)[1])["--datalake-formats"] == "iceberg"
    injected = next(c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", []))
    assert f'ds = "{DS}"' in injected.source and 'env = "glue"' in injected.source
    assert SENTINEL_KEY not in nbformat.writes(nb)


@pytest.mark.parametrize("stored", ["plain", "json"])
def test_api_key_is_read_from_secrets_manager(aws, monkeypatch, stored):
    from lib.core.api_key import resolve_api_key

    monkeypatch.delenv("POLYGON_API_KEY")
    key = f"pk-from-secrets-manager-{stored}"
    secret_id = f"polygon/{uuid.uuid4().hex[:8]}"
    value = key if stored == "plain" else json.dumps({"POLYGON_API_KEY": key})
    aws["secretsmanager"].create_secret(Name=secret_id, SecretString=value)
    assert resolve_api_key(uses_simulator=False, secret_id=secret_id) == key


def test_job_arguments_override_parameters_typed_and_tolerate_absent_ones():
    from lib.glue.job_args import resolve_parameters

    defaults = {"ds": "2024-01-02", "start_ds": "", "simulator_tickers": 300, "quality": {}, "symbols": [], "adjusted": True}
    argv = ["job.py", "--JOB_NAME", "stocks-01", "--ds", "2024-03-05", "--simulator_tickers", "10",
            "--quality", '{"outlier_z": 6.0}', "--adjusted", "false", "--start_ds", ""]  # fmt: skip
    assert resolve_parameters(defaults, argv) == {
        "ds": "2024-03-05", "simulator_tickers": 10, "quality": {"outlier_z": 6.0}, "adjusted": False, "start_ds": "",
    }  # fmt: skip
    assert resolve_parameters(defaults, ["job.py", "--JOB_NAME", "x"]) == {}


def test_conversion_drops_magics_and_display_only_lines(tmp_path):
    from lib.glue.script import cell_to_code

    code = cell_to_code(
        "%matplotlib inline\nfrom IPython.display import display\nshown = []\nfor i in range(3):\n"
        "    display(i)\n    shown.append(i)\n!ls\nlen(shown)  # a call: kept\nshown",
        "cell",
    )
    namespace: dict = {}
    exec(compile(code, "cell", "exec"), namespace)
    assert namespace["shown"] == [0, 1, 2]
    assert "# shown in the notebook: shown" in code and "len(shown)" in code.replace("# shown in the notebook", "")
    assert "display(i)" not in code.replace("pass  # notebook display only: display(i)", "")
    assert cell_to_code("%%bash\nls", "cell").startswith("# IPython cell magic")


def test_glue_runs_write_audit_publish_by_default(tmp_path):
    """As the batch runner: each job writes on the run's branch, named for the ds a run is started with."""
    for flags, branch in (([], "audit_2024_03_25_2024_03_28"), (["--no-audit"], "")):
        script = tmp_path / f"01_ingest{len(flags)}.py"
        assert main(["script", "notebooks/01_ingest.ipynb", "-f", "params/glue.yaml", "-p", "ds", "2024-03-28",
                     "-p", "start_ds", "2024-03-25", "-o", str(script), *flags]) == 0  # fmt: skip
        assert f"wap_branch = {branch!r}".replace("'", '"') in script.read_text()


def pyiceberg_rows(warehouse: Path, table: str):
    from lib.settings.config import RunConfig
    from lib.storage.catalog import pyiceberg_catalog

    config = RunConfig.from_params(ds=DS, start_ds=START, warehouse=str(warehouse))
    frame = pyiceberg_catalog(config).load_table(f"stocks.{table}").scan().to_pandas()
    if "metric_array" in frame:
        frame["metric_array"] = frame["metric_array"].map(lambda a: tuple(None if v is None or v != v else v for v in a))
    keys = [c for c in ("symbol", "date", "month_start", "metric_name") if c in frame]
    return frame.sort_values(keys).reset_index(drop=True)


def test_generated_scripts_write_what_the_notebooks_write(tmp_path):
    """01_ingest + 02_monthly_rollup as job scripts (job arguments switch them to env local) == papermill runs."""
    import pandas as pd
    import papermill

    local = {"env": "local", "catalog": "local", "api_base_url": "", "api_key_secret_id": ""}
    env = {k: v for k, v in os.environ.items() if k != "POLYGON_API_KEY"}
    env.update(PYTHONPATH=str(REPO), SPARK_DRIVER_MEMORY="1g")
    script_warehouse, notebook_warehouse = tmp_path / "script-warehouse", tmp_path / "notebook-warehouse"
    for name in ("01_ingest", "02_monthly_rollup"):
        script = tmp_path / f"{name}.py"
        # --no-audit: both sides write main (with the default, the scripts stage on audit_<start>_<ds> for 03)
        assert main(["script", f"notebooks/{name}.ipynb", "-f", "params/glue.yaml", "-p", "ds", DS,
                     "-p", "start_ds", START, "-o", str(script), "--no-audit"]) == 0  # fmt: skip
        job_arguments = [f"--{k}={v}" for k, v in local.items()] + [
            "--warehouse", str(script_warehouse), "--run_dir", str(tmp_path / "script-run"), "--simulator_tickers", "10",
        ]  # fmt: skip
        done = subprocess.run([sys.executable, str(script), *job_arguments], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=600)  # fmt: skip
        assert done.returncode == 0, f"{name} script failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
        declared = papermill.inspect_notebook(str(REPO / "notebooks" / f"{name}.ipynb"))
        parameters = {**local, "ds": DS, "start_ds": START, "warehouse": str(notebook_warehouse),
                      "run_dir": str(tmp_path / "notebook-run"), "simulator_tickers": 10}  # fmt: skip
        papermill.execute_notebook(
            str(REPO / "notebooks" / f"{name}.ipynb"), str(tmp_path / f"{name}.ipynb"), cwd=str(REPO),
            parameters={k: v for k, v in parameters.items() if k in declared}, kernel_name="python3",
            progress_bar=False, log_output=False,
        )  # fmt: skip
    for table in ("stock_prices", "monthly_stock_prices"):
        from_script, from_notebook = pyiceberg_rows(script_warehouse, table), pyiceberg_rows(notebook_warehouse, table)
        assert len(from_script) > 0 and from_script["symbol"].nunique() == 10
        pd.testing.assert_frame_equal(from_script, from_notebook)


def test_a_key_in_the_parameters_is_refused_before_anything_is_uploaded(aws, assets, capsys):
    url = f"https://api.polygon.io/?apiKey={SENTINEL_KEY}"
    assert main(["submit", "notebooks/01_ingest.ipynb", "-f", str(assets["params_file"]), "-p", "api_base_url", url]) == 2
    assert "Secrets Manager" in capsys.readouterr().err
    assert aws["s3"].list_objects_v2(Bucket=assets["bucket"])["KeyCount"] == 0
