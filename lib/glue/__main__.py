"""`python -m lib.glue submit|upload-notebook|script NOTEBOOK -f params/glue.yaml [-p name value]...`

submit           the notebook (parameters injected) as a Glue 5.0 job: upload, create or update, start, --wait
upload-notebook  the notebook with its parameters and the session magics, to glue.notebook_location (Glue Studio)
script           print or write the job script only; nothing goes to AWS
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from pathlib import Path
from typing import Any

from lib.core.errors import ConfigError, WorkspaceError
from lib.core.redaction import ENV_VARS
from lib.glue import deploy
from lib.glue.script import notebook_path, notebook_to_script, parameter_values, prepare_notebook
from lib.settings.command_line import add_params_arguments, cli_value, load_params_file, params_file_path
from lib.settings.config import RunConfig, parse_ds
from lib.storage.wap import branch_for_run

EXIT_RUN_FAILED = 1
EXIT_ERROR = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m lib.glue", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    for name, help_text in (
        ("submit", "run the notebook as a Glue 5.0 job"),
        ("upload-notebook", "upload the notebook for Glue Studio"),
        ("script", "write the job script only (no AWS)"),
    ):
        sub = commands.add_parser(name, help=help_text)
        sub.add_argument("notebook", help="e.g. notebooks/01_ingest.ipynb")
        add_params_arguments(sub, default_file="params/glue.yaml")  # its glue: section names the job's AWS places
        sub.add_argument(
            "--no-audit", action="store_true",
            help="write main directly (default: 01/02 stage on the branch audit_<ds>, 03 publishes it)",
        )  # fmt: skip
        if name == "submit":
            sub.add_argument("--wait", action="store_true", help="poll until the run ends; exit 0 only if it SUCCEEDED")
            sub.add_argument("--poll-seconds", type=float, default=5.0, help="first polling interval, doubled up to 60s")
            sub.add_argument("--timeout-minutes", type=float, default=None, help="stop waiting (not the run) after this")
        if name == "script":
            sub.add_argument("-o", "--output", help="write here instead of stdout")
    return parser


@dataclasses.dataclass
class Prepared:
    notebook: Path
    nb: Any
    parameters: dict[str, Any]
    overrides: dict[str, Any]
    settings: deploy.GlueSettings | None


def prepare(args, need_settings: bool) -> Prepared:
    """Params file (minus glue:) plus -p, injected by papermill, validated as a RunConfig before any upload."""
    params_file = params_file_path(args.parameters_file)
    if not params_file.is_file():
        raise ConfigError(f"params file {str(params_file)!r} not found; pass one with -f (e.g. -f params/glue.yaml).")
    params = load_params_file(params_file)
    settings = None
    if need_settings:
        params, settings = deploy.split_params(params, str(params_file))
    else:
        params.pop(deploy.GLUE_SECTION, None)
    overrides = {name: cli_value(value) for name, value in args.parameter}
    notebook = notebook_path(args.notebook)
    audit_branch(notebook, params, overrides, getattr(args, "no_audit", False))
    nb = prepare_notebook(notebook, {**params, **overrides}, explicit=tuple(overrides))
    values = parameter_values(nb)
    known = {f.name for f in dataclasses.fields(RunConfig)}
    RunConfig.from_params(**{name: value for name, value in values.items() if name in known})
    return Prepared(notebook, nb, values, overrides, settings)


def audit_branch(notebook: Path, params: dict, overrides: dict, no_audit: bool) -> None:
    """Write-audit-publish on Glue as in the batch runner: the run's branch (audit_<ds>) as a job argument, so a
    run started with another --ds still names its own; --no-audit writes main."""
    import papermill  # here: papermill loads nbclient and jupyter's machinery, wanted only for a notebook

    if "wap_branch" not in papermill.inspect_notebook(str(notebook)):
        return
    if no_audit:
        overrides["wap_branch"] = ""
    elif not overrides.get("wap_branch") and not params.get("wap_branch"):
        ds = parse_ds(overrides.get("ds", params.get("ds")), "ds")
        start = overrides.get("start_ds", params.get("start_ds"))
        overrides["wap_branch"] = branch_for_run(ds, parse_ds(start, "start_ds") if start else ds)


def refuse_key_in(texts: list[str]) -> None:
    """The API key travels only through Secrets Manager: never in a script, an argument or a notebook."""

    for variable in ENV_VARS:
        key = os.environ.get(variable, "")
        if key and any(key in text for text in texts):
            raise ConfigError(
                f"the API key (${variable}) appears in the job's parameters: pass the name of a Secrets Manager "
                "secret with -p api_key_secret_id NAME instead, never the key."
            )


def run_arguments(prepared: Prepared) -> dict[str, str]:
    """The run's own arguments: ds and the -p overrides, so the console shows what a run was for."""
    chosen = {"ds": prepared.parameters.get("ds"), **prepared.overrides}
    return {
        f"--{name}": value if isinstance(value, str) else json.dumps(value) for name, value in chosen.items() if value is not None
    }


def submit(args) -> int:
    prepared = prepare(args, need_settings=True)
    settings, config_env = prepared.settings, prepared.parameters.get("env")
    if config_env != "glue":
        raise ConfigError(f"submit runs on Glue: env must be 'glue', got {config_env!r}; use -f params/glue.yaml or -p env glue.")
    name = str(prepared.notebook)
    script = notebook_to_script(prepared.nb, name).encode()
    package = deploy.package_lib()
    arguments = run_arguments(prepared)
    refuse_key_in([script.decode(), json.dumps(arguments)])

    aws = deploy.Aws(settings)
    aws.check_bucket(settings.script_location, "script_location")
    aws.check_bucket(settings.package_location, "package_location")
    job_name = settings.job_name(prepared.notebook)
    script_uri = aws.upload(deploy.s3_join(settings.script_location, f"{prepared.notebook.stem}.py"), script, "text/x-python")
    package_uri = aws.upload(deploy.s3_join(settings.package_location, deploy.package_name(package)), package, "application/zip")
    print(f"uploaded {script_uri}\nuploaded {package_uri}")
    definition = deploy.job_definition(
        settings, script_uri=script_uri, package_uri=package_uri, catalog=prepared.parameters["catalog"],
        warehouse=prepared.parameters["warehouse"], description=f"{name} as a Glue {deploy.GLUE_VERSION} job (lib.glue submit)",
    )  # fmt: skip
    action = deploy.put_job(aws.glue, job_name, definition)
    print(f"job {job_name} {action} (Glue {deploy.GLUE_VERSION}, {settings.number_of_workers} x {settings.worker_type})")
    run_id = aws.glue.start_job_run(JobName=job_name, Arguments=arguments)["JobRunId"]
    print(f"started run {run_id} with {' '.join(f'{k} {v}' for k, v in arguments.items())}")
    if not args.wait:
        print(f"log group: {deploy.DEFAULT_LOG_GROUP}/output (stream {run_id})")
        return 0
    timeout_s = args.timeout_minutes * 60 if args.timeout_minutes else None
    run = deploy.wait_for_run(aws.glue, job_name, run_id, first_delay=args.poll_seconds, timeout_s=timeout_s)
    deploy.report_run(run, job_name)
    return 0


def session_magics(settings: deploy.GlueSettings, package_uri: str, catalog: str, warehouse: str) -> list[str]:
    """The interactive-session magics a Glue Studio notebook sets before its first Spark cell."""
    lines = [
        f"%glue_version {deploy.GLUE_VERSION}",
        f"%worker_type {settings.worker_type}",
        f"%number_of_workers {settings.number_of_workers}",
        "%idle_timeout 60",
        f"%extra_py_files {package_uri}",
    ]
    if settings.additional_python_modules:
        lines.append(f"%additional_python_modules {','.join(settings.additional_python_modules)}")
    configure = {"--datalake-formats": "iceberg", "--conf": deploy.conf_argument(deploy.iceberg_conf(catalog, warehouse))}
    return ["\n".join(lines), "%%configure\n" + json.dumps(configure, indent=2)]


def upload_notebook(args) -> int:
    import nbformat

    prepared = prepare(args, need_settings=True)
    settings = prepared.settings
    if not settings.notebook_location:
        raise ConfigError(f"{args.parameters_file}: upload-notebook needs glue.notebook_location (an s3:// folder).")
    aws = deploy.Aws(settings)
    aws.check_bucket(settings.package_location, "package_location")
    aws.check_bucket(settings.notebook_location, "notebook_location")
    package = deploy.package_lib()
    package_uri = aws.upload(deploy.s3_join(settings.package_location, deploy.package_name(package)), package, "application/zip")
    nb = prepared.nb
    magics = session_magics(settings, package_uri, prepared.parameters["catalog"], prepared.parameters["warehouse"])
    nb.cells[:0] = [nbformat.v4.new_code_cell(source, metadata={"tags": ["glue-session-magics"]}) for source in magics]
    text = nbformat.writes(nb)
    refuse_key_in([text])
    uri = aws.upload(
        deploy.s3_join(settings.notebook_location, prepared.notebook.name), text.encode(), "application/x-ipynb+json"
    )
    print(f"uploaded {package_uri}\nuploaded {uri}")
    print("In Glue Studio: ETL jobs > Notebook > Upload Notebook, pick this file (aws s3 cp it first), choose the IAM role")
    print(f"{settings.role_arn}, and run the cells; its first two cells set the session:\n\n" + "\n\n".join(magics))
    return 0


def script_only(args) -> int:
    prepared = prepare(args, need_settings=False)
    script = notebook_to_script(prepared.nb, str(prepared.notebook))
    if args.output:
        Path(args.output).write_text(script)
        print(f"wrote {args.output}")
    else:
        sys.stdout.write(script)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    command = {"submit": submit, "upload-notebook": upload_notebook, "script": script_only}[args.command]
    try:
        return command(args)
    except deploy.GlueRunFailed as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_RUN_FAILED
    except WorkspaceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except Exception as exc:
        from botocore.exceptions import BotoCoreError, ClientError

        if isinstance(exc, (ClientError, BotoCoreError)):
            print(f"error: AWS refused a step of the submission: {exc}", file=sys.stderr)
            return EXIT_ERROR
        raise


if __name__ == "__main__":
    sys.exit(main())
