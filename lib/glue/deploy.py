"""The AWS side of a Glue run: the `glue:` settings, the packaged `lib`, S3 uploads, the job and its runs.

boto3 reads the standard AWS_* variables, AWS_ENDPOINT_URL included, so all of this runs against any
AWS-compatible endpoint (moto's server in the tests).
"""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from lib.core.errors import ConfigError, WorkspaceError
from lib.storage.package import package_lib, package_name  # noqa: F401 (the submitter calls them through deploy)
from lib.storage.session import ICEBERG_EXTENSIONS

GLUE_VERSION = "5.0"
GLUE_SECTION = "glue"
TERMINAL_STATES = ("SUCCEEDED", "FAILED", "STOPPED", "TIMEOUT", "ERROR", "EXPIRED")
# What a job run prints goes to <LogGroupName>/output (Glue's default group is /aws-glue/jobs), stream = run id.
DEFAULT_LOG_GROUP = "/aws-glue/jobs"


class GlueError(WorkspaceError):
    """AWS refused a step of the submission, or the job run did not succeed."""


class GlueRunFailed(GlueError):
    """The job run ended in a state other than SUCCEEDED."""


@dataclasses.dataclass(frozen=True)
class GlueSettings:
    """The `glue:` section of a params file: where things go on AWS and how the job runs."""

    role_arn: str
    script_location: str
    package_location: str
    job_name_prefix: str
    worker_type: str
    number_of_workers: int
    region: str = ""
    notebook_location: str = ""
    temp_dir: str = ""
    additional_python_modules: tuple[str, ...] = ()
    timeout_minutes: int = 120
    max_concurrent_runs: int = 1

    REQUIRED = ("role_arn", "script_location", "package_location", "job_name_prefix", "worker_type", "number_of_workers")
    S3_FIELDS = ("script_location", "package_location", "notebook_location", "temp_dir")

    @classmethod
    def from_mapping(cls, section: Any, source: str) -> GlueSettings:
        if not isinstance(section, dict):
            raise ConfigError(
                f"{source} needs a `{GLUE_SECTION}:` mapping with {list(cls.REQUIRED)} (see params/glue.yaml for an example)."
            )
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(section) - known)
        if unknown:
            raise ConfigError(f"{source}: unknown field(s) {unknown} under `{GLUE_SECTION}:`; known fields are {sorted(known)}.")
        missing = [name for name in cls.REQUIRED if section.get(name) in (None, "")]
        if missing:
            raise ConfigError(
                f"{source}: the `{GLUE_SECTION}:` section is missing {missing}; it needs {list(cls.REQUIRED)} "
                "(see params/glue.yaml for an example)."
            )
        values = {name: value for name, value in section.items() if value is not None}
        modules = values.get("additional_python_modules", ())
        values["additional_python_modules"] = tuple([modules] if isinstance(modules, str) else modules)
        settings = cls(**values)
        for name in cls.S3_FIELDS:
            location = getattr(settings, name)
            if location and not str(location).startswith("s3://"):
                raise ConfigError(f"{source}: {GLUE_SECTION}.{name} must be an s3:// location, got {location!r}.")
        if int(settings.number_of_workers) < 2:
            raise ConfigError(
                f"{source}: {GLUE_SECTION}.number_of_workers must be at least 2 on Glue 5.0, got {settings.number_of_workers}."
            )
        return settings

    def job_name(self, notebook: Path) -> str:
        return f"{self.job_name_prefix}{notebook.stem}"


def split_params(params: dict[str, Any], source: str) -> tuple[dict[str, Any], GlueSettings]:
    """The notebook parameters and the Glue settings of a params file (notebooks never see `glue:`)."""
    notebook_params = dict(params)
    section = notebook_params.pop(GLUE_SECTION, None)
    return notebook_params, GlueSettings.from_mapping(section, source)


def iceberg_conf(catalog: str, warehouse: str) -> dict[str, str]:
    """Spark settings for an Iceberg GlueCatalog named `catalog`, the same ones lib.storage.session sets at run time."""
    prefix = f"spark.sql.catalog.{catalog}"
    return {
        "spark.sql.extensions": ICEBERG_EXTENSIONS,
        prefix: "org.apache.iceberg.spark.SparkCatalog",
        f"{prefix}.catalog-impl": "org.apache.iceberg.aws.glue.GlueCatalog",
        f"{prefix}.io-impl": "org.apache.iceberg.aws.s3.S3FileIO",
        f"{prefix}.warehouse": warehouse,
    }


def conf_argument(conf: dict[str, str]) -> str:
    """Glue takes every Spark setting in one `--conf` value: `a=1 --conf b=2 ...`."""
    return " --conf ".join(f"{key}={value}" for key, value in conf.items())


def s3_join(location: str, name: str) -> str:
    return location.rstrip("/") + "/" + name


def split_s3(uri: str) -> tuple[str, str]:
    parts = urlsplit(uri)
    return parts.netloc, parts.path.lstrip("/")


class Aws:
    """The boto3 clients of a submission; the region comes from the settings, else the AWS_* chain."""

    def __init__(self, settings: GlueSettings, client_factory: Callable[..., Any] | None = None):
        if client_factory is None:
            import boto3
            from botocore.config import Config

            # Standard retries: throttling and 5xx retried a few times with backoff, as AWS recommends.
            config = Config(retries={"mode": "standard", "max_attempts": 3})

            def client_factory(service: str, region: str | None):
                return boto3.client(service, region_name=region, config=config)

        region = settings.region or None
        self.s3 = client_factory("s3", region)
        self.glue = client_factory("glue", region)

    def check_bucket(self, uri: str, field: str) -> None:
        """A clear error when the bucket of a configured location is missing or out of reach."""
        from botocore.exceptions import ClientError

        bucket, _ = split_s3(uri)
        try:
            self.s3.head_bucket(Bucket=bucket)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in ("404", "NoSuchBucket", "NotFound"):
                raise GlueError(
                    f"S3 bucket {bucket!r} does not exist (glue.{field} = {uri}). Create it first "
                    f"(aws s3 mb s3://{bucket}) or point glue.{field} at an existing bucket."
                ) from exc
            if code in ("403", "AccessDenied"):
                raise GlueError(
                    f"no access to S3 bucket {bucket!r} (glue.{field} = {uri}): the caller needs s3:ListBucket on it."
                ) from exc
            raise GlueError(f"could not reach S3 bucket {bucket!r} (glue.{field} = {uri}): {exc}") from exc

    def upload(self, uri: str, body: bytes, content_type: str) -> str:
        bucket, key = split_s3(uri)
        self.s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType=content_type)
        return uri


def job_definition(
    settings: GlueSettings, *, script_uri: str, package_uri: str, catalog: str, warehouse: str, description: str
) -> dict:
    """The job: Glue 5.0, Iceberg on a GlueCatalog, `lib` on the path. Notebook parameters live in the script."""
    arguments = {
        "--job-language": "python",
        "--datalake-formats": "iceberg",
        "--conf": conf_argument(iceberg_conf(catalog, warehouse)),
        "--extra-py-files": package_uri,
        "--enable-continuous-cloudwatch-log": "true",
    }
    if settings.additional_python_modules:
        arguments["--additional-python-modules"] = ",".join(settings.additional_python_modules)
    if settings.temp_dir:
        arguments["--TempDir"] = settings.temp_dir
    return {
        "Description": description,
        "Role": settings.role_arn,
        "Command": {"Name": "glueetl", "ScriptLocation": script_uri, "PythonVersion": "3"},
        "DefaultArguments": arguments,
        "GlueVersion": GLUE_VERSION,
        "WorkerType": settings.worker_type,
        "NumberOfWorkers": int(settings.number_of_workers),
        "Timeout": int(settings.timeout_minutes),
        "MaxRetries": 0,
        "ExecutionProperty": {"MaxConcurrentRuns": int(settings.max_concurrent_runs)},
    }


def _is_aws_endpoint(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    return host.endswith((".amazonaws.com", ".amazonaws.com.cn", ".api.aws"))


def _not_implemented(exc) -> bool:
    error = exc.response.get("Error", {})
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return error.get("Code") in ("NotImplemented", "NotImplementedError", "500", "501") or status == 501


def put_job(glue, name: str, definition: dict, log: Callable[[str], None] = print) -> str:
    """Create the job, or replace its definition with update_job when it exists. Returns 'created' or 'updated'.

    moto's server does not implement UpdateJob (it answers HTTP 500). Only on an endpoint that is not AWS's
    own, and only for that answer, the job is replaced with delete_job + create_job; on AWS any
    update_job error propagates.
    """
    from botocore.exceptions import ClientError

    try:
        glue.get_job(JobName=name)
    except glue.exceptions.EntityNotFoundException:
        glue.create_job(Name=name, **definition)
        return "created"
    try:
        glue.update_job(JobName=name, JobUpdate=definition)
        return "updated"
    except ClientError as exc:
        endpoint = glue.meta.endpoint_url
        if _is_aws_endpoint(endpoint) or not _not_implemented(exc):
            raise
        log(f"note: {endpoint} does not implement UpdateJob; replacing job {name} with delete_job + create_job")
        glue.delete_job(JobName=name)
        glue.create_job(Name=name, **definition)
        return "updated"


def wait_for_run(
    glue,
    job_name: str,
    run_id: str,
    *,
    first_delay: float = 5.0,
    max_delay: float = 60.0,
    timeout_s: float | None = None,
    log: Callable[[str], None] = print,
    sleep: Callable[[float], None] = time.sleep,
) -> dict:
    """Poll get_job_run with exponential backoff until a terminal state; the last JobRun."""
    delay, started, last_state = first_delay, time.monotonic(), None
    while True:
        run = glue.get_job_run(JobName=job_name, RunId=run_id, PredecessorsIncluded=False)["JobRun"]
        state = run.get("JobRunState", "")
        if state != last_state:
            log(f"run {run_id}: {state}")
            last_state = state
        if state in TERMINAL_STATES:
            return run
        if timeout_s is not None and time.monotonic() - started > timeout_s:
            raise GlueError(f"run {run_id} of job {job_name} still {state} after {timeout_s:.0f}s; it keeps running on Glue.")
        sleep(delay)
        delay = min(delay * 2, max_delay)


def log_group(run: dict) -> str:
    return f"{run.get('LogGroupName') or DEFAULT_LOG_GROUP}/output"


def report_run(run: dict, job_name: str, out=None) -> None:
    """Run id, state and where its logs are; raises GlueRunFailed unless it SUCCEEDED."""
    state, run_id = run.get("JobRunState", ""), run.get("Id", "")
    print(
        f"job: {job_name}\nrun id: {run_id}\nstate: {state}\nlog group: {log_group(run)} (stream {run_id})",
        file=out or sys.stdout,
    )
    if state != "SUCCEEDED":
        message = run.get("ErrorMessage") or "no error message from Glue"
        raise GlueRunFailed(
            f"Glue run {run_id} of job {job_name} ended {state}: {message}. Logs: {log_group(run)}, stream {run_id}."
        )
