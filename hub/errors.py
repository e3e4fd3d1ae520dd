"""The hub's small exception hierarchy.

Each error type is mapped once at its edge: `ConfigError` to exit code 2 (cli),
`ProtocolError.code` to a WebSocket `error` message, `RequestError.status` to an HTTP
status, `UpstreamError` to a feed reconnect. `echo` and `clip` bound what an error message
quotes of its input.
"""


class HubError(Exception):
    """Base of every error the hub raises on purpose."""


class ConfigError(HubError):
    """A configuration value is missing or malformed; the process must not start."""

    def __init__(self, variable: str, problem: str) -> None:
        super().__init__(f"{variable}: {problem}")
        self.variable = variable
        self.problem = problem

    def lines(self) -> list[str]:
        """One line per mistake, as the CLI prints them."""
        return [str(self)]


class ConfigErrors(ConfigError):
    """Several mistakes in one configuration file, each its own line."""

    def __init__(self, variable: str, problems: list[str]) -> None:
        super().__init__(variable, "; ".join(problems))
        self.problems = problems

    def lines(self) -> list[str]:
        return [f"{self.variable}: {problem}" for problem in self.problems]


class RequestError(HubError):
    """A client request that cannot be served (bad parameter, unknown symbol)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class ProtocolError(HubError):
    """A WebSocket request that breaks the protocol; `code` is what the client sees."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class UpstreamError(HubError):
    """An exchange connection failed or misbehaved; the feed reconnects."""


class BrokerUnavailable(UpstreamError):
    """The broker (Redis) cannot take a message right now; the caller keeps it and retries."""


class Fenced(BrokerUnavailable):
    """Redis refused a write of this `ingest`: another one took the lease since
    (hub.service.leadership). It never succeeds again; the lease's holder ends the term."""


ECHO_LIMIT = 64


def clip(text: str, limit: int = ECHO_LIMIT) -> str:
    """`text` cut to `limit` characters, saying how long it was: an error message or a log
    line quotes what it refuses, and a 100 KB symbol must not become a 100 KB reply."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… ({len(text)} characters)"


def echo(value: object, limit: int = ECHO_LIMIT) -> str:
    """`value` quoted (repr) for an error message, cut as `clip` does."""
    text = value if isinstance(value, str) else str(value)
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}… ({len(text)} characters)"
