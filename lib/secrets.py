"""Where the Polygon key comes from (environment or AWS Secrets Manager) and how it is kept out of logs."""

from __future__ import annotations

import json
import logging
import os

from lib.errors import ConfigError

ENV_VAR = "POLYGON_API_KEY"
# The bundled simulator accepts any non-empty key when POLYGON_API_KEY is unset.
SIMULATOR_KEY = "simulator-local-key"


class RedactingFilter(logging.Filter):
    """Replaces every occurrence of the given secrets in log records with '***'."""

    def __init__(self, secrets: list[str]):
        super().__init__()
        self.secrets = [s for s in secrets if s]

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = message
        for secret in self.secrets:
            redacted = redacted.replace(secret, "***")
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


def redact(text: str, secret: str | None) -> str:
    return text.replace(secret, "***") if secret else text


def install_redaction(secret: str) -> None:
    """Redact `secret` from every record that reaches the root logger's handlers."""
    root = logging.getLogger()
    log_filter = RedactingFilter([secret])
    for handler in root.handlers or [logging.lastResort]:
        if handler is not None:
            handler.addFilter(log_filter)
    root.addFilter(log_filter)


def _from_secrets_manager(secret_id: str) -> str:
    import boto3

    value = boto3.client("secretsmanager").get_secret_value(SecretId=secret_id)["SecretString"]
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError:
        return value.strip()
    if isinstance(parsed, dict):
        if ENV_VAR not in parsed:
            raise ConfigError(f"secret {secret_id!r} is JSON but has no {ENV_VAR} field; store the key under it.")
        return str(parsed[ENV_VAR])
    return str(parsed)


def resolve_api_key(uses_simulator: bool, secret_id: str = "") -> str:
    """The key for this run: Secrets Manager when secret_id is set, else $POLYGON_API_KEY, else the simulator's."""
    if secret_id:
        key = _from_secrets_manager(secret_id)
    else:
        key = os.environ.get(ENV_VAR, "")
    if not key and uses_simulator:
        key = SIMULATOR_KEY
    if not key:
        raise ConfigError(
            f"no Polygon API key: set the environment variable {ENV_VAR}, or name a Secrets Manager secret "
            "with the parameter api_key_secret_id, or leave api_base_url empty to use the bundled simulator."
        )
    install_redaction(key)
    return key
