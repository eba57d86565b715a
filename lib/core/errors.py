"""Typed errors of the workspace; each message says what was wrong and what to do."""

from lib.core.redaction import shown_value


class WorkspaceError(Exception):
    """Base class of every error this workspace raises on purpose."""


class ConfigError(WorkspaceError, ValueError):
    """A parameter or params file is invalid."""


class ParameterError(ConfigError):
    """One parameter's value is refused: names the parameter, the value received, what was expected and what to do.

    `name` is the parameter (`simulator_options`, not its key); `field`, when set, is the key inside a mapping-valued
    parameter. The message shows the value redacted (no key, no URL credentials or query) and truncated.
    """

    def __init__(self, name: str, value, expected: str, hint: str = "", *, field: str = "", message: str = ""):
        self.name, self.value, self.expected, self.hint, self.field = name, value, expected, hint, field
        self.shown = shown_value(value)
        label = f"{name}.{field}" if field else name
        text = message or f"{label} must be {expected}, got {self.shown}."
        super().__init__(f"{text} {hint}".strip())


class DsFormatError(ParameterError):
    """A date parameter is not YYYY-MM-DD."""


class EnvironmentSetupError(WorkspaceError):
    """Something the runtime needs (Java, a jar) is missing."""


class PolygonError(WorkspaceError):
    """The Polygon API answered in a way the run cannot continue from."""


class PolygonAuthError(PolygonError):
    """401 or 403: bad key or plan not entitled. Never retried."""


class PolygonRequestFailed(PolygonError):
    """A request still failed after its retries."""

    def __init__(self, message: str, *, url_path: str, http_status: int | None, attempts: int):
        super().__init__(message)
        self.url_path = url_path
        self.http_status = http_status
        self.attempts = attempts


class QualityGateError(WorkspaceError):
    """One or more error-severity quality checks failed."""


class CommitConflictError(WorkspaceError):
    """A table write lost a race with another run's commit (an Iceberg conflict or a busy catalog) after its retries.

    Every write replaces exactly its dates or months, so running the same ds again is safe.
    """

    def __init__(self, table: str, cause: str, latest: tuple | None = None, busy: bool = False):
        latest_text = f"; its latest commit is snapshot {latest[0]} (committed {latest[1]}), not this write's" if latest else ""
        if busy:
            what = (f"the catalog database stayed locked by another process (a run or a reader writing it) through "
                    f"this write's retries to {table}{latest_text}")  # fmt: skip
        elif latest is not None:
            what = (f"{table} moved on while this write was in flight{latest_text}, and this write still conflicted "
                    "with it after its retries")  # fmt: skip
        else:
            what = f"another run committed to {table} at the same time and this write still conflicted after its retries"
        super().__init__(
            f"{what} ({cause}). Nothing of this write was committed; run the same ds again (every write is idempotent)."
        )
        self.table, self.latest = table, latest


class MissingInputError(WorkspaceError):
    """A step found nothing of what an earlier step writes: that step runs first (01_ingest, then 02, 03, 04)."""


class ApiKeyConflictError(ConfigError):
    """The API key is set under two names with different values (MASSIVE_API_KEY and POLYGON_API_KEY, in the
    environment or in one Secrets Manager secret): the run stops before any request rather than guess which to send.
    The message names the variables, never their values."""

    def __init__(self, names: tuple[str, ...], where: str = "the environment", action: str = "unset"):
        self.names, self.where = tuple(names), where
        keep, drop = self.names[0], ", ".join(self.names[1:])
        super().__init__(
            f"{' and '.join(self.names)} are both set in {where}, to different keys: the run cannot tell which one "
            f"to send, so it stopped before any request. {action[:1].upper()}{action[1:]} {drop} to use {keep}, "
            "or set both to the same key."
        )


class StreamError(WorkspaceError):
    """The websocket feed or the streaming query cannot go on (lib.stream)."""


class StreamAuthError(StreamError):
    """The feed refused the key (auth_failed): never retried, like a 401."""
