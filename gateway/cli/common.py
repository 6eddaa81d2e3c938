"""What the command groups share: the exit codes a script reading `yiwang` can rely on, and which of the
domain's exceptions end a command with which code.

One table, printed by `yiwang --help` and kept in docs/cli.md; tests/integration/test_cli_exit_codes.py runs a
command for each row. `ENDINGS` names the exceptions that mean "not found", "refused" and "a service is
unavailable" by module and class name, not by importing them: a command loads only the modules it needs
(the CLI's start time), and an exception can only be an instance of a class whose module is loaded. The root
(`gateway.bootstrap.cli`) ends a command that raised one of them with its code and one line on stderr; a
group that reports an error itself asks `exit_code` which code it is.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

OK = 0
PROBLEMS_FOUND = 1  # a check ran and found problems (audit verify, adapters validate, catalogue validate)
BAD_INPUT = 2  # usage: the exit code click uses for usage errors; a command refusing its input says it the same way
NOT_FOUND = 3  # the case, dead letter, key, certificate or bundle named does not exist
REFUSED = 4  # the caller may not: role, separation of duties, four eyes
UNAVAILABLE = 5  # a service the command needs (database, RabbitMQ, a sector) did not answer

EXIT_CODES: tuple[tuple[int, str], ...] = (
    (OK, "ok"),
    (PROBLEMS_FOUND, "a check found problems (verify, validate)"),
    (BAD_INPUT, "usage: bad option or input, nothing changed"),
    (NOT_FOUND, "not found"),
    (REFUSED, "refused: role, separation of duties, four eyes"),
    (UNAVAILABLE, "a service is unavailable (database, RabbitMQ, sector)"),
)


@dataclass(frozen=True)
class Ending:
    """An exception class (`module:Class`, subclasses included) and how a command raising it ends."""

    exception: str
    exit_code: int
    what: str  # the one line's subject: "dead letter" in "dead letter not found: 42"

    def matches(self, exc: BaseException) -> bool:
        module, name = self.exception.split(":")
        loaded = sys.modules.get(module)  # not loaded: exc cannot be one of its classes
        cls = getattr(loaded, name, None) if loaded is not None else None
        return isinstance(cls, type) and isinstance(exc, cls)

    def line(self, exc: BaseException) -> str:
        """One readable line: a lookup's argument is the name looked for, printed without KeyError's quotes."""
        text = str(exc.args[0]) if isinstance(exc, LookupError) and exc.args else str(exc)
        first = next((part.strip() for part in text.splitlines() if part.strip()), type(exc).__name__)
        if self.exit_code == NOT_FOUND:
            return f"{self.what} not found: {first}"
        if self.exit_code == REFUSED:
            return f"refused ({self.what}): {first}"
        return f"{self.what} unavailable: {first}"


# The more specific first: SeparationOfDuties is an IdentityError, UnknownIdentity a LookupError of it.
ENDINGS: tuple[Ending, ...] = (
    Ending("gateway.cases.service:CaseNotFound", NOT_FOUND, "case"),
    Ending("gateway.cases.service:DeadLetterNotFound", NOT_FOUND, "dead letter"),
    Ending("ops.dead_letters:ReplayRunNotFound", NOT_FOUND, "replay run"),
    Ending("gateway.cases.service:UnknownMatter", NOT_FOUND, "matter"),
    Ending("gateway.catalogue.matters:MatterNotFound", NOT_FOUND, "matter"),
    Ending("gateway.security.api_keys:UnknownIdentity", NOT_FOUND, "API key"),
    Ending("gateway.security.approvals:UnknownApproval", NOT_FOUND, "approval"),
    Ending("gateway.sectors.bundle_records:UnknownBundle", NOT_FOUND, "bundle"),
    Ending("gateway.sectors.live_registry:NoActiveAdapter", NOT_FOUND, "active bundle"),
    Ending("gateway.sectors.live_registry:UnknownVersion", NOT_FOUND, "bundle version"),
    Ending("gateway.materials.store:UnknownMaterial", NOT_FOUND, "material"),
    Ending("gateway.notifications.hall:UnknownWebhook", NOT_FOUND, "webhook"),
    Ending("certstore.store:UnknownEntry", NOT_FOUND, "certificate or secret"),
    Ending("certstore.credentials:CredentialMissing", NOT_FOUND, "credential"),
    Ending("gateway.domain.roles:NotAllowed", REFUSED, "role"),
    Ending("gateway.security.api_keys:SeparationOfDuties", REFUSED, "separation of duties"),
    Ending("gateway.security.approvals:FourEyesRequired", REFUSED, "four eyes"),
    Ending("gateway.security.approvals:OwnRequest", REFUSED, "four eyes"),
    Ending("gateway.security.approvals:NotADecider", REFUSED, "role"),
    Ending("gateway.cases.service:NotYourCase", REFUSED, "department"),
    Ending("sqlalchemy.exc:OperationalError", UNAVAILABLE, "database"),
    Ending("sqlalchemy.exc:InterfaceError", UNAVAILABLE, "database"),
    Ending("pika.exceptions:AMQPConnectionError", UNAVAILABLE, "RabbitMQ"),
    Ending("httpx:ConnectError", UNAVAILABLE, "service"),
    Ending("httpx:TimeoutException", UNAVAILABLE, "service"),
)


def ending(exc: BaseException) -> Ending | None:
    """How a command that raised `exc` ends, if `ENDINGS` names its class; None for anything else (a bug keeps
    its traceback)."""
    return next((row for row in ENDINGS if row.matches(exc)), None)


def exit_code(exc: BaseException, default: int = BAD_INPUT) -> int:
    """The exit code of a command that reports `exc` itself: the table's, else `default`."""
    row = ending(exc)
    return row.exit_code if row is not None else default
