"""The far-side agent's own configuration: one YAML file on the 前置机, read strictly.

    name: mz-agent                      # this side's sender name in every batch it writes
    channel: civil_affairs              # the link: receives `<channel>.down`, sends `<channel>.up`
    state: /var/lib/yiwang-ferry/agent.sqlite
    master_key_file: /etc/yiwang-ferry/master.key
    incoming: /srv/ferry/in             # where the isolation gateway drops the near side's batches
    outgoing: /srv/ferry/out            # where it picks ours up
    own_certificate: mz-agent           # our key pair, in the agent's certificate store (`yiwang ferry init`)
    near_certificate: yiwang-ferry      # the gateway's certificate (`yiwang certs import --agent ...`)
    # optional, with their defaults:
    mode: two_way                       # two_way | one_way
    cipher: sm4-gcm                     # sm4-gcm | aes-256-gcm
    naming: {extension: .ferry, wrapper: none}
    limits: {batch_bytes: 16777216, message_bytes: 4194304}
    interval_ms: 1000                   # one pass this often
    resend_after_ms: 300000             # two_way: unreceipted batches written again
    beacon_every_ms: 60000              # one_way: a beacon this often
    keep_keys_days: 30                  # message ids remembered for duplicate suppression
    endpoint: http://10.1.2.3/svc       # instead of the installed bundle's own endpoint
    poll_interval_ms: 2000              # instead of the installed bundle's polling interval

Relative paths are read from the configuration file's folder. The two link folders must exist (a typing error in
one would otherwise leave the agent waiting for ever on a folder nobody writes). Anything else — an unknown key,
a value of the wrong type or out of range, a missing required key — is `ConfigInvalid`, naming every key at fault;
nothing is created or changed.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

MODES = ("two_way", "one_way")
CIPHERS = ("sm4-gcm", "aes-256-gcm")
WRAPPERS = ("none", "text", "xml")
_IDENTIFIER = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")
_EXTENSION = re.compile(r"^\.[A-Za-z0-9]{1,16}$")


class ConfigInvalid(ValueError):
    """The configuration cannot be used; `problems` are (key, what is wrong) pairs, each key dotted."""

    def __init__(self, source: str, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        listed = "; ".join(f"`{key}`: {what}" if key else what for key, what in problems)
        super().__init__(f"{source}: {listed}")


@dataclass(frozen=True)
class NamingConfig:
    extension: str = ".ferry"
    wrapper: str = "none"
    pattern: str | None = None  # None: the folder's own default


@dataclass(frozen=True)
class LimitsConfig:
    batch_bytes: int = 16 * 1024 * 1024
    message_bytes: int = 4 * 1024 * 1024


@dataclass(frozen=True)
class AgentConfig:
    source: Path  # the file it was read from
    name: str
    channel: str
    state: Path
    master_key_file: Path
    incoming: Path
    outgoing: Path
    own_certificate: str
    near_certificate: str
    mode: str = "two_way"
    cipher: str = "sm4-gcm"
    naming: NamingConfig = NamingConfig()
    limits: LimitsConfig = LimitsConfig()
    interval_ms: int = 1000
    resend_after_ms: int = 300_000
    beacon_every_ms: int = 60_000
    keep_keys_days: int = 30
    endpoint: str | None = None
    poll_interval_ms: int | None = None

    @property
    def send_channel(self) -> str:
        return f"{self.channel}.up"

    @property
    def receive_channel(self) -> str:
        return f"{self.channel}.down"


Check = Callable[[Any], str | None]  # a value's problem, or None


def _text(pattern: re.Pattern[str] | None = None, words: str = "") -> Check:
    def check(value: Any) -> str | None:
        if not isinstance(value, str) or not value.strip():
            return f"expected text, got {_shown(value)}"
        if pattern is not None and not pattern.match(value):
            return f"{_shown(value)} is not {words}"
        return None

    return check


def _choice(choices: tuple[str, ...]) -> Check:
    def check(value: Any) -> str | None:
        return None if value in choices else f"expected one of {', '.join(choices)}, got {_shown(value)}"

    return check


def _positive(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        return f"expected a whole number greater than 0, got {_shown(value)}"
    return None


def _url(value: Any) -> str | None:
    if not isinstance(value, str) or urlsplit(value).scheme not in ("http", "https") or not urlsplit(value).netloc:
        return f"expected an http:// or https:// address, got {_shown(value)}"
    return None


_NAME = _text(_IDENTIFIER, "a name of lower-case letters, digits, '_' and '-' (starting with a letter)")
REQUIRED: Mapping[str, Check] = {
    "name": _NAME, "channel": _NAME, "state": _text(), "master_key_file": _text(), "incoming": _text(),
    "outgoing": _text(), "own_certificate": _text(), "near_certificate": _text(),
}
OPTIONAL: Mapping[str, Check] = {
    "mode": _choice(MODES), "cipher": _choice(CIPHERS), "interval_ms": _positive, "resend_after_ms": _positive,
    "beacon_every_ms": _positive, "keep_keys_days": _positive, "endpoint": _url, "poll_interval_ms": _positive,
}
NAMING: Mapping[str, Check] = {"extension": _text(_EXTENSION, "an extension like .ferry, .txt or .xml"),
                               "wrapper": _choice(WRAPPERS), "pattern": _text()}
LIMITS: Mapping[str, Check] = {"batch_bytes": _positive, "message_bytes": _positive}
SECTIONS: Mapping[str, Mapping[str, Check]] = {"naming": NAMING, "limits": LIMITS}


def load_config(path: Path) -> AgentConfig:
    """The agent's configuration from `path`; `ConfigInvalid` names every key at fault."""
    source = str(path)
    try:
        document = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigInvalid(source, [("", f"cannot read it ({exc.strerror or exc})")]) from exc
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigInvalid(source, [("", f"not YAML: {exc}")]) from exc
    if not isinstance(document, dict):
        raise ConfigInvalid(source, [("", "expected a mapping of keys (name: ..., channel: ...)")])
    problems = _problems(document)
    if problems:
        raise ConfigInvalid(source, problems)
    config = _build(Path(path), document)
    missing = [(key, f"no such folder: {folder}") for key, folder in (("incoming", config.incoming),
                                                                       ("outgoing", config.outgoing))
               if not folder.is_dir()]
    if config.incoming == config.outgoing:
        missing.append(("outgoing", "must be another folder than `incoming`"))
    if missing:
        raise ConfigInvalid(source, missing)
    return config


def _problems(document: Mapping[str, Any]) -> list[tuple[str, str]]:
    problems = [(str(key), "unknown key") for key in document if key not in {*REQUIRED, *OPTIONAL, *SECTIONS}]
    problems += [(key, "required") for key in REQUIRED if document.get(key) is None]
    problems += _checked(document, {**REQUIRED, **OPTIONAL}, "")
    for section, checks in SECTIONS.items():
        value = document.get(section)
        if value is None:
            continue
        if not isinstance(value, dict):
            problems.append((section, f"expected a mapping, got {_shown(value)}"))
            continue
        problems += [(f"{section}.{key}", "unknown key") for key in value if key not in checks]
        problems += _checked(value, checks, f"{section}.")
    return problems


def _checked(values: Mapping[str, Any], checks: Mapping[str, Check], prefix: str) -> list[tuple[str, str]]:
    found = [(f"{prefix}{key}", check(values[key])) for key, check in checks.items() if values.get(key) is not None]
    return [(key, problem) for key, problem in found if problem is not None]


def _build(path: Path, document: Mapping[str, Any]) -> AgentConfig:
    here = path.resolve().parent

    def place(key: str) -> Path:
        given = Path(document[key]).expanduser()
        return given if given.is_absolute() else here / given

    options = {key: document[key] for key in OPTIONAL if document.get(key) is not None}
    return AgentConfig(
        source=path, name=document["name"], channel=document["channel"], state=place("state"),
        master_key_file=place("master_key_file"), incoming=place("incoming"), outgoing=place("outgoing"),
        own_certificate=document["own_certificate"], near_certificate=document["near_certificate"],
        naming=NamingConfig(**document.get("naming") or {}), limits=LimitsConfig(**document.get("limits") or {}),
        **options)


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
