"""Reading one descriptor `auth` mapping: secret references, and errors that name the field.

`Fields` reads the keys of one mapping (`auth`, `results.callback_auth`, a signing recipe's sub-mappings);
every error is an `AuthSpecError` starting with `<where>.<key>` and never repeats a secret. `SecretRef` is
where a secret lives, never the secret. Shared by `adapters.auth` and `adapters.signing`; imports
`adapters.secrets` and `certstore.credentials` only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from adapters.secrets import LITERAL_REFUSED, REFERENCE_FORMS, Secret, is_reference, load
from certstore.credentials import reference_name


class AuthSpecError(ValueError):
    """A descriptor `auth` mapping that cannot be used; the message starts with the field, e.g. `auth.password`."""


@dataclass(frozen=True)
class SecretRef:
    """Where a secret lives (`env:NAME`, `file:/path` or `vault:NAME`); the reference itself is not secret."""

    ref: str

    def load(self) -> Secret:
        return load(self.ref)


# A non-secret field (a username, a client id) may be written literally or kept in the secret store.
Text = str | SecretRef


def resolve_text(value: Text) -> str:
    """The text itself, or the secret it refers to, read now."""
    return value if isinstance(value, str) else value.load().reveal()


class Fields:
    """Reads one `auth` mapping; every error names `<where>.<key>` and never repeats a secret."""

    def __init__(self, spec: Mapping[Any, Any], where: str, allowed: frozenset[str]) -> None:
        self.spec, self.where = spec, where
        unknown = sorted(str(k) for k in spec if k not in allowed | {"type"})
        if unknown:
            raise self.fail(unknown[0], f"unknown key (allowed: {', '.join(sorted(allowed))})")

    def fail(self, key: str, problem: str) -> AuthSpecError:
        return AuthSpecError(f"{self.where}.{key}: {problem}")

    def text(self, key: str) -> str:
        value = self.spec.get(key)
        if not isinstance(value, str) or not value:
            raise self.fail(key, "expected a non-empty string")
        return value

    def optional_text(self, key: str) -> str | None:
        return None if self.spec.get(key) is None else self.text(key)

    def secret(self, key: str) -> SecretRef:
        value = self.spec.get(key)
        if isinstance(value, Mapping) and set(value) == {"secret"}:
            if is_reference(value["secret"]):
                return SecretRef(value["secret"])
            raise self.fail(f"{key}.secret", f"expected {REFERENCE_FORMS}")
        if value is None:
            raise self.fail(key, "required")
        # Whatever is there is probably the secret itself: say so without repeating it.
        raise self.fail(key, LITERAL_REFUSED)

    def credential(self, key: str) -> str:
        """A `cert:NAME` reference -> NAME (the certificate store is asked when the adapter is built)."""
        try:
            return reference_name(self.text(key))
        except ValueError as exc:
            raise self.fail(key, str(exc)) from None

    def text_or_secret(self, key: str) -> Text:
        return self.secret(key) if isinstance(self.spec.get(key), Mapping) else self.text(key)

    def flag(self, key: str, default: bool) -> bool:
        value = self.spec.get(key, default)
        if not isinstance(value, bool):
            raise self.fail(key, f"expected true or false, got {value!r}")
        return value

    def positive_int(self, key: str, default: int) -> int:
        value = self.spec.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise self.fail(key, f"expected a positive whole number, got {value!r}")
        return value
