"""Keeping the API key out of what the workspace shows: the variables that hold it, log redaction, values in messages.

The bottom of the house: it imports nothing of the project, so the errors module and every other can use it.
"""

from __future__ import annotations

import logging
import os
import re

# Polygon.io renamed itself Massive (2025-10-30); keys stayed valid, so either name holds the same key.
MASSIVE_ENV_VAR = "MASSIVE_API_KEY"  # the name Massive's docs and its `massive` client use
POLYGON_ENV_VAR = "POLYGON_API_KEY"  # the name before the rename, still read
ENV_VARS = (MASSIVE_ENV_VAR, POLYGON_ENV_VAR)


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


SHOWN_LIMIT = 80


def shown_value(value) -> str:
    """A received value as an error message may show it: the API key redacted, URL credentials and queries masked,
    at most SHOWN_LIMIT characters."""
    text = repr(value)
    for variable in ENV_VARS:
        key = os.environ.get(variable, "")
        if len(key) >= 4:  # a one-letter "key" would star out every such letter of the message
            text = redact(text, key)
    if "://" in text:
        text = re.sub(r"(?<=://)[^/?#@\s'\"]*@", "***@", text)  # user:password@host
        text = re.sub(r"\?[^\s'\"#]*", "?***", text)  # a query may carry apiKey=
    if len(text) > SHOWN_LIMIT:
        text = f"{text[: SHOWN_LIMIT - 3]}... ({len(str(value)):,} characters)"
    return text
