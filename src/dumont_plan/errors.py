"""One error tree for everything a user can get wrong or the platform can refuse.

Every exception class of dumont_plan is defined here (tests/test_error_tree.py checks it).

    DumontError                      message + optional hint (the next step); exit code 1
    ├── ConfigError                  bad DUMONT_API_URL, corrupt token/config file, ...
    ├── SpecError                    a spec problem at file:line:col
    │   ├── SpecErrors               every problem found in the spec files, one line each
    │   ├── SecretError              a secret missing, or its file unsafe or malformed
    │   └── TemplateProblem          a `{{ }}` that cannot be rendered (the loader locates it)
    ├── PlanError                    references, cycles, policy gates while planning
    │   ├── CycleError               the dependency graph has a cycle (`cycle` is its path)
    │   └── PolicyError              a cost or policy gate refused the plan (exit 6)
    ├── StateError                   the state file is corrupt, newer, or another project's
    │   ├── StateConflictError       a remote state write refused: stale serial or other lineage
    │   └── BackendError             a remote state backend failed or answered off protocol
    ├── ApplyError                   a failed or partial apply (exit 3)
    │   └── ApplyInterrupted         Ctrl-C while a change waited (exit 130)
    ├── WaitTimeoutError             a wait's own time limit elapsed (exit 4)
    ├── WaitFailedError              a waited job or instance ended failed (exit 5)
    ├── WaitInterrupted              Ctrl-C while a command waited; the job goes on (exit 130)
    ├── LockError                    the ledger is held by another apply
    ├── StalePlanError               a saved plan no longer matches what is live (exit 7)
    ├── ServerStartError             the embedded local control plane did not come up
    ├── ConnectError                 the API could not be reached at all
    ├── UnexpectedResponseError      the API answered, but not with the contract's objects
    ├── ApiError                     the API answered with an error status
    │   ├── BadRequestError          400
    │   ├── AuthenticationError      401
    │   ├── PaymentRequiredError     402
    │   ├── PermissionDeniedError    403
    │   ├── NotFoundError            404
    │   ├── MethodNotAllowedError    405
    │   ├── ConflictError            409
    │   ├── UnprocessableError       422 (carries the server's `details`)
    │   ├── RateLimitedError         429
    │   └── ServerError              5xx
    │       └── ServiceUnavailableError 502/503/504
    └── RefusedError                 (server) a request refused with an HTTP `status`
        ├── InstanceError            an instance operation refused (404, 409, ...)
        ├── ServerlessError          a serverless policy operation refused (404, 409)
        ├── SpotError                a spot template or deployment operation refused
        ├── OfferQueryError          an offer search parameter it cannot use (400)
        ├── FinetuneError            a fine-tune operation refused (400, 404, 409, 413, ...)
        ├── DatasetError             an uploaded dataset that is not what it claims (422, `loc`)
        └── WorkdirError             a job workdir upload or archive refused (413, 422)

    InternalSignal                   control flow inside one module, caught where raised
    ├── TemplateUndefined            jinja met an undefined value (loader/templates.py)
    ├── TooManyNodes                 YAML aliases expand past the limit (loader/yamlmarks.py)
    ├── NotJsonValue                 a request body with NaN, Infinity or a lone surrogate (server)
    └── DeliberateBug                escapes on purpose from the server's `POST /_local/raise` hook

Only the CLI's error boundary catches DumontError; anything else is a bug and shows a traceback.
With DUMONT_DEBUG=1 the boundary also prints the chain of causes (`raise ... from exc`).
An InternalSignal that escapes its module is a bug too: it is not a DumontError on purpose.
"""

from __future__ import annotations

from typing import Any


class DumontError(Exception):
    """Base of every error the user can act on."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        if not self.hint:
            return self.message
        joiner = " " if self.message.endswith(".") else "; "
        return f"{self.message}{joiner}{self.hint}"


class ConfigError(DumontError):
    """Configuration, credentials or environment are unusable."""


class SpecError(DumontError):
    """A problem in a spec file, located at file:line:col when known."""

    def __init__(
        self,
        message: str,
        hint: str | None = None,
        *,
        file: str | None = None,
        line: int | None = None,
        col: int | None = None,
    ) -> None:
        self.file = file
        self.line = line
        self.col = col
        super().__init__(message, hint)

    @property
    def location(self) -> str:
        if self.file is None:
            return ""
        if self.line is None:
            return self.file
        if self.col is None:
            return f"{self.file}:{self.line}"
        return f"{self.file}:{self.line}:{self.col}"

    def __str__(self) -> str:
        text = super().__str__()
        return f"{self.location} {text}" if self.location else text


class SecretError(SpecError):
    """A secret is missing or its file is unsafe or malformed."""


class TemplateProblem(SpecError):
    """Why a string could not be rendered; `lineno` is the line inside the string.

    The loader turns it into a SpecError at the string's file:line:col.
    """

    def __init__(self, text: str, hint: str | None = None, lineno: int | None = None) -> None:
        super().__init__(text, hint)
        self.lineno = lineno


class SpecErrors(SpecError):
    """Several spec problems reported at once (as Terraform does), sorted by place.

    `str()` joins them with a newline and `Error: ` so that the CLI's one-line `Error: …`
    boundary prints one prefixed line per problem.
    """

    def __init__(self, errors: list[SpecError]) -> None:
        first = errors[0]
        super().__init__(first.message, first.hint, file=first.file, line=first.line, col=first.col)
        self.errors = errors

    def lines(self) -> list[str]:
        return [str(error) for error in self.errors]

    def __str__(self) -> str:
        return "\nError: ".join(self.lines())


class PlanError(DumontError):
    """The plan cannot be built (bad reference, cycle, policy gate)."""


class CycleError(PlanError):
    """The dependency graph has a cycle; `cycle` is its path, first node repeated at the end."""

    def __init__(self, cycle: list[str]) -> None:
        super().__init__("dependency cycle: " + " -> ".join(cycle))
        self.cycle = cycle


class PolicyError(PlanError):
    """A cost or policy gate refused the plan (exit 6)."""

    exit_code = 6


class ApplyError(DumontError):
    """An apply failed or finished partially (exit 3)."""

    exit_code = 3


class ApplyInterrupted(ApplyError):
    """The apply was interrupted (Ctrl-C) while this change waited (exit 130).

    `last_status` is the waited object's last status seen: it goes on on the server.
    """

    exit_code = 130
    last_status: str | None = None


class WaitInterrupted(DumontError):
    """Ctrl-C while a command waited for a job: it goes on on the server (exit 130)."""

    exit_code = 130


class StateError(DumontError):
    """The state file cannot be read or written (corrupt, newer format, wrong project)."""


class StateConflictError(StateError):
    """A state write refused: its serial is stale, or its lineage is another state's."""


class BackendError(StateError):
    """A remote state backend cannot be used (unreachable, refused, off protocol, misconfigured)."""


class WaitTimeoutError(DumontError):
    """A wait's own time limit elapsed before the target state (exit 4)."""

    exit_code = 4


class WaitFailedError(DumontError):
    """The waited job or instance reached a terminal failure state (exit 5)."""

    exit_code = 5


class LockError(DumontError):
    """The ledger lock is held by another process."""


class StalePlanError(DumontError):
    """A saved plan is stale against the live state (exit 7)."""

    exit_code = 7


class ServerStartError(DumontError):
    """The embedded local control plane could not be started."""


class ConnectError(DumontError):
    """The API could not be reached."""


class UnexpectedResponseError(DumontError):
    """A success answer whose body is not the object the contract describes (client/models)."""


class ApiError(DumontError):
    """The API answered with an error status."""

    status_code: int = 0

    def __init__(
        self,
        message: str,
        hint: str | None = None,
        *,
        status_code: int | None = None,
        body: Any = None,
        method: str = "",
        path: str = "",
    ) -> None:
        super().__init__(message, hint)
        if status_code is not None:
            self.status_code = status_code
        self.body = body
        self.method = method
        self.path = path


class BadRequestError(ApiError):
    status_code = 400


class AuthenticationError(ApiError):
    status_code = 401


class PaymentRequiredError(ApiError):
    status_code = 402


class PermissionDeniedError(ApiError):
    status_code = 403


class NotFoundError(ApiError):
    status_code = 404


class MethodNotAllowedError(ApiError):
    status_code = 405


class ConflictError(ApiError):
    status_code = 409


class UnprocessableError(ApiError):
    status_code = 422

    @property
    def details(self) -> list[dict[str, Any]]:
        if isinstance(self.body, dict) and isinstance(self.body.get("details"), list):
            return [d for d in self.body["details"] if isinstance(d, dict)]
        return []


class RateLimitedError(ApiError):
    status_code = 429


class ServerError(ApiError):
    status_code = 500


class ServiceUnavailableError(ServerError):
    status_code = 503


class RefusedError(DumontError):
    """The local control plane refuses a request; `status` is the HTTP status it answers."""

    status = 400

    def __init__(self, message: str, hint: str | None = None, *, status: int | None = None) -> None:
        super().__init__(message, hint)
        if status is not None:
            self.status = status


class InstanceError(RefusedError):
    """An instance operation refused with an HTTP status and a message for the user."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message, status=status)


class ServerlessError(RefusedError):
    """A serverless operation refused (not configured, a wake that failed) with its status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message, status=status)


class SpotError(RefusedError):
    """A spot template or deployment operation refused with an HTTP status and a message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message, status=status)


class OfferQueryError(RefusedError):
    """A query parameter the offer search cannot use (answered 400 with this message)."""


class FinetuneError(RefusedError):
    """A fine-tune operation refused with an HTTP status and a message for the user."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message, status=status)


class DatasetError(RefusedError):
    """A dataset file that cannot be trained on: `loc` names where (file, line, field)."""

    status = 422

    def __init__(self, message: str, loc: tuple[str | int, ...] = ()) -> None:
        super().__init__(message)
        self.loc = loc


class WorkdirError(RefusedError):
    """A job's workdir (an uploaded tar.gz of code) refused: too big, unsafe, or not one."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message, status=status)


class InternalSignal(Exception):
    """Control flow inside one module; caught where it is raised, never shown to a user."""


class TemplateUndefined(InternalSignal):
    """Raised by jinja (through the loader's Undefined) for an undefined `obj.name`."""

    def __init__(self, message: str, obj: Any, name: Any) -> None:
        super().__init__(message)
        self.obj = obj
        self.name = name


class TooManyNodes(InternalSignal):
    """A YAML document expands (through aliases) to more values than allowed at `node`."""

    def __init__(self, node: Any) -> None:
        super().__init__("too big")
        self.node = node


class NotJsonValue(InternalSignal, ValueError):
    """A request body holds a value JSON has no word for (NaN, Infinity, a lone surrogate)."""


class DeliberateBug(InternalSignal):
    """Escapes on purpose from a test hook: what an unhandled bug in a route looks like."""


STATUS_ERRORS: dict[int, type[ApiError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    402: PaymentRequiredError,
    403: PermissionDeniedError,
    404: NotFoundError,
    405: MethodNotAllowedError,
    409: ConflictError,
    422: UnprocessableError,
    429: RateLimitedError,
    500: ServerError,
    502: ServiceUnavailableError,
    503: ServiceUnavailableError,
    504: ServiceUnavailableError,
}


def error_for_status(status_code: int) -> type[ApiError]:
    """The exception class for an HTTP error status."""
    if status_code in STATUS_ERRORS:
        return STATUS_ERRORS[status_code]
    if status_code >= 500:
        return ServerError
    return ApiError
