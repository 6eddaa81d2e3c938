"""Secret references: descriptors name where a secret lives, never the secret itself.

A reference is `env:NAME` (an environment variable), `file:/absolute/path` (the file's content,
stripped) or `vault:NAME` (a secret sealed in the gateway's certificate store, `yiwang certs secret-set`).
`vault:` references are looked up through a resolver the composition root installs (`use_vault`), so this
package never imports the gateway. `resolve` turns a reference into its value; `Secret` carries a value around without
ever showing it in a repr, a log line or a traceback's locals.

Errors name the reference (which is not secret) and what is wrong with it, never the value.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import Final, Literal

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_VAULT_NAME = re.compile(r"[A-Za-z0-9_.\-]{1,128}")
REFERENCE_FORMS = "env:NAME, file:/absolute/path or vault:NAME"
# Said of a value where a reference belongs; never echo the value: it is probably the secret itself.
LITERAL_REFUSED = "a literal secret is refused: write {secret: env:NAME}, {secret: file:/path} or {secret: vault:NAME}"
_MASK: Final = "********"

VaultLookup = Callable[[str], str]  # a name → its current value; raises LookupError when there is none


class _Default(Enum):
    """A sentinel mypy can narrow: `resolve(vault=...)` not given, as distinct from None (no resolver)."""

    INSTALLED = "the resolver `use_vault` installed"


_INSTALLED: Final = _Default.INSTALLED
_vault: VaultLookup | None = None


class SecretRefError(ValueError):
    """A reference that is malformed or does not resolve (unset variable, missing or empty file)."""


class Secret:
    """A resolved secret. `reveal()` is the only way to the value; repr and str show a mask."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"Secret({_MASK!r})"

    __str__ = __repr__

    def __reduce__(self) -> tuple[object, ...]:
        # Pickling (multiprocessing, caches) would write the value somewhere we do not control.
        raise TypeError("a Secret is not picklable")


def is_reference(value: object) -> bool:
    """Whether `value` is a well-formed secret reference (and so not a literal secret)."""
    if not isinstance(value, str):
        return False
    scheme, _, rest = value.partition(":")
    if scheme == "env":
        return _ENV_NAME.fullmatch(rest) is not None
    if scheme == "vault":
        return _VAULT_NAME.fullmatch(rest) is not None
    return scheme == "file" and rest.startswith("/") and len(rest) > 1


def use_vault(lookup: VaultLookup | None) -> None:
    """Install the process's `vault:` resolver (the gateway's certificate store); None removes it."""
    global _vault
    _vault = lookup


def resolve(ref: str, vault: VaultLookup | None | Literal[_Default.INSTALLED] = _INSTALLED) -> str:
    """The value `ref` points at; `SecretRefError` if it is malformed, unset, missing or empty.
    `vault`: the resolver for `vault:` references (default: the one `use_vault` installed)."""
    if not is_reference(ref):
        # Whatever was passed may itself be a literal secret: do not repeat it.
        raise SecretRefError(f"not a secret reference: expected {REFERENCE_FORMS}")
    scheme, _, rest = ref.partition(":")
    if scheme == "vault":
        value = _from_vault(ref, rest, _vault if vault is _INSTALLED else vault)
    else:
        value = _from_env(ref, rest) if scheme == "env" else _from_file(ref, Path(rest))
    if not value:
        raise SecretRefError(f"secret {ref}: is empty")
    return value


def load(ref: str) -> Secret:
    """`resolve`, wrapped so the value cannot leak through a repr."""
    return Secret(resolve(ref))


def _from_env(ref: str, name: str) -> str:
    value = os.environ.get(name)
    if value is None:
        raise SecretRefError(f"secret {ref}: environment variable {name} is not set")
    return value


def _from_vault(ref: str, name: str, lookup: VaultLookup | None) -> str:
    if lookup is None:
        raise SecretRefError(f"secret {ref}: no secret store is configured in this process")
    try:
        return lookup(name)
    except (LookupError, RuntimeError) as exc:  # missing, or sealed under a master key we do not have
        raise SecretRefError(f"secret {ref}: {exc}") from None


def _from_file(ref: str, path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise SecretRefError(f"secret {ref}: file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        # The OSError's text names the path and the reason; it never contains file content.
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        raise SecretRefError(f"secret {ref}: cannot read: {reason}") from None
