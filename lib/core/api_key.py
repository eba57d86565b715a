"""Where the Massive (formerly Polygon.io) key comes from: the environment or AWS Secrets Manager (kept out of logs by
lib.core.redaction)."""

from __future__ import annotations

import json
import os

from lib.core.errors import ApiKeyConflictError, ConfigError
from lib.core.redaction import ENV_VARS, MASSIVE_ENV_VAR, POLYGON_ENV_VAR, install_redaction

# Secrets Manager JSON may hold the key under either variable's name, or under a plain "api_key".
SECRET_FIELDS = (*ENV_VARS, "api_key")
# The bundled simulator accepts any non-empty key when neither variable is set.
SIMULATOR_KEY = "simulator-local-key"


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
