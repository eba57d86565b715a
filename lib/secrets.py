"""Where the Massive (formerly Polygon.io) key comes from (environment or AWS Secrets Manager) and how it is kept
out of logs."""

from __future__ import annotations

import json
import logging
import os

from lib.errors import ApiKeyConflictError, ConfigError

# Polygon.io renamed itself Massive (2025-10-30); keys stayed valid, so either name holds the same key.
MASSIVE_ENV_VAR = "MASSIVE_API_KEY"  # the name Massive's docs and its `massive` client use
POLYGON_ENV_VAR = "POLYGON_API_KEY"  # the name before the rename, still read
ENV_VARS = (MASSIVE_ENV_VAR, POLYGON_ENV_VAR)
ENV_VAR = POLYGON_ENV_VAR  # the former single name, kept for importers
# Secrets Manager JSON may hold the key under either variable's name, or under a plain "api_key".
SECRET_FIELDS = (*ENV_VARS, "api_key")
# The bundled simulator accepts any non-empty key when neither variable is set.
SIMULATOR_KEY = "simulator-local-key"


class RedactingFilter(logging.Filter):
    """Replaces every occurrence of the given secrets in log records with '***': message, arguments,
    exception text and stack text alike (a traceback can quote a URL or a header)."""

    def __init__(self, secrets: list[str]):
        super().__init__()
        self.secrets = [s for s in secrets if s]

    def filter(self, record: logging.LogRecord) -> bool:
        redact_record(record, self.secrets)
        return True


def _redact_all(text: str, secrets) -> str:
    for secret in secrets:
        text = text.replace(secret, "***")
    return text


def redact_record(record: logging.LogRecord, secrets) -> None:
    """Redact `secrets` from a record in place (its formatted message, exception and stack text)."""
    secrets = [s for s in secrets if s]
    if not secrets:
        return
    try:
        message = record.getMessage()
    except Exception:  # a record whose args do not fit its format: redact what is there
        message = f"{record.msg} {record.args}"
    redacted = _redact_all(message, secrets)
    if redacted != message or any(s in str(record.msg) for s in secrets):
        record.msg, record.args = redacted, None
    if record.exc_info and not record.exc_text:
        record.exc_text = logging.Formatter().formatException(record.exc_info)
    if record.exc_text:
        record.exc_text = _redact_all(record.exc_text, secrets)
    if record.stack_info:
        record.stack_info = _redact_all(record.stack_info, secrets)


def redact(text: str, secret: str | None) -> str:
    return text.replace(secret, "***") if secret else text


_SECRETS: set[str] = set()
_factory_installed = False


def install_redaction(secret: str) -> None:
    """Redact `secret` from every log record, whatever logger made it and whatever handler prints it.

    Records are redacted when they are created (a record factory), so loggers and handlers set up later are
    covered too; the root logger's current handlers also get a filter, for records made before this call.
    """
    global _factory_installed
    if not secret:
        return
    _SECRETS.add(secret)
    if not _factory_installed:
        previous = logging.getLogRecordFactory()

        def redacting_factory(*args, **kwargs):
            record = previous(*args, **kwargs)
            redact_record(record, _SECRETS)
            return record

        logging.setLogRecordFactory(redacting_factory)
        _factory_installed = True
    root = logging.getLogger()
    log_filter = RedactingFilter([secret])
    for handler in root.handlers or [logging.lastResort]:
        if handler is not None:
            handler.addFilter(log_filter)
    root.addFilter(log_filter)


def env_api_key() -> str:
    """The key in the environment: $MASSIVE_API_KEY or $POLYGON_API_KEY, '' when neither is set.

    Both set to the same key is fine; both set to different keys raises ApiKeyConflictError (which to send is
    not ours to guess). Never shows a value.
    """
    found = {name: os.environ.get(name, "") for name in ENV_VARS}
    found = {name: value for name, value in found.items() if value}
    if len(set(found.values())) > 1:
        raise ApiKeyConflictError(tuple(found))
    return next(iter(found.values()), "")


def _from_secrets_manager(secret_id: str) -> str:
    import boto3

    value = boto3.client("secretsmanager").get_secret_value(SecretId=secret_id)["SecretString"]
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError:
        return value.strip()
    if not isinstance(parsed, dict):
        return str(parsed)
    found = {field: str(parsed[field]) for field in SECRET_FIELDS if parsed.get(field)}
    for key in found.values():
        install_redaction(key)  # before any error below can be logged with the secret's text
    if not found:
        fields = ", ".join(SECRET_FIELDS)
        raise ConfigError(
            f"secret {secret_id!r} is JSON but has none of the fields {fields} (set to a non-empty key); "
            f'store the key as {{"{MASSIVE_ENV_VAR}": "..."}}, or as the plain string alone.'
        )
    if len(set(found.values())) > 1:
        raise ApiKeyConflictError(tuple(found), where=f"the secret {secret_id!r}", action="delete the field")
    return next(iter(found.values()))


def resolve_api_key(uses_simulator: bool, secret_id: str = "") -> str:
    """The key for this run: Secrets Manager when secret_id is set, else $MASSIVE_API_KEY or $POLYGON_API_KEY,
    else the simulator's. Both variables set to different keys stop the run (ApiKeyConflictError), secret or not,
    before any request."""
    for name in ENV_VARS:  # both names' values, whichever is used: neither may reach a log
        install_redaction(os.environ.get(name, ""))
    env_key = env_api_key()
    key = _from_secrets_manager(secret_id) if secret_id else env_key
    if not key and uses_simulator:
        key = SIMULATOR_KEY
    if not key:
        raise ConfigError(
            f"no Massive (formerly Polygon.io) API key: set the environment variable {MASSIVE_ENV_VAR} (or "
            f"{POLYGON_ENV_VAR}), or name a Secrets Manager secret with the parameter api_key_secret_id, or leave "
            "api_base_url empty to use the bundled simulator."
        )
    install_redaction(key)
    return key
