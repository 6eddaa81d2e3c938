"""What the command groups share: the exit codes a script reading `yiwang` can rely on."""

from __future__ import annotations

BAD_INPUT = 2  # the exit code click uses for usage errors: a command refusing its input says it the same way
