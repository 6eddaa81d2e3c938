"""What the command groups share: the exit codes a script reading `yiwang` can rely on.

One table, printed by `yiwang --help` and kept in the README (docs/cli.md); tests/…/test_cli_exit_codes.py
runs a command for each row.
"""

from __future__ import annotations

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
