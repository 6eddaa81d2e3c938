"""`yiwang certs ...`: the certificate store from the command line (security administrators, operators).

import (PEM or PKCS#12) · csr (a new key, kept sealed, and its CSR) · list · show · rotate · retire · check
(expiry warnings) · rewrap (after a master-key rotation) · new-master-key · secret-set / secret-list (bundle
secrets, `vault:NAME`). Passwords and secret values are read from a file, an environment variable or a
hidden prompt — never from the command line, where shell history and `ps` would keep them.
Bad input is a red line and exit code 2, never a traceback.
"""

from __future__ import annotations

import getpass
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated

import typer
from prometheus_client import CollectorRegistry
from rich.console import Console
from rich.table import Table

from certstore import (
    KEY_ALGORITHMS,
    MAX_OVERLAP_DAYS,
    SECRET,
    CertificateError,
    CertStore,
    CredentialMissing,
    MasterKeyError,
    MasterKeys,
    SealedValueUnavailable,
    StoredVersion,
    Subject,
    UnknownEntry,
)
from gateway.cli.common import BAD_INPUT
from gateway.domain.clock import to_shanghai
from gateway.security.certificates import ExpiryWatch

P12_SUFFIXES = (".p12", ".pfx")


def make_certs_app(open_store: Callable[[], CertStore],
                   rewrap_beyond_the_store: Callable[[], str] = lambda: "") -> typer.Typer:
    """`rewrap_beyond_the_store`: what else a master-key rotation re-seals (personal data, the logs' key)."""
    app = typer.Typer(help="Certificates, private keys and bundle secrets, encrypted at rest.", no_args_is_help=True)
    actor = f"cli:{getpass.getuser()}"

    @app.command("import")
    def import_(
        name: Annotated[str, typer.Argument(help="the name bundles use: cert:NAME")],
        certificate: Annotated[Path, typer.Argument(help="PEM certificate (leaf first, chain after), or .p12/.pfx")],
        key: Annotated[Path | None, typer.Option(help="its PEM private key (may be encrypted)")] = None,
        chain: Annotated[Path | None, typer.Option(help="PEM chain, if not in the certificate file")] = None,
        pkcs12: Annotated[bool, typer.Option(help="the file is PKCS#12 (default for .p12/.pfx)")] = False,
        password_file: Annotated[Path | None, typer.Option(help="file holding the key's or PKCS#12 password")] = None,
        password_env: Annotated[str | None, typer.Option(help="environment variable holding that password")] = None,
        ask_password: Annotated[bool, typer.Option(help="prompt for the password (hidden)")] = False,
        sector: Annotated[str | None, typer.Option(help="the owning sector (default: the gateway's own)")] = None,
    ) -> None:
        """Import a certificate with its key, or alone (to trust it, or to complete a `csr`)."""
        with readable_errors():
            password = _password(password_file, password_env, ask_password)
            store = open_store()
            if pkcs12 or certificate.suffix.lower() in P12_SUFFIXES:
                stored = store.import_pkcs12(name, certificate.read_bytes(), password, sector=sector, actor=actor)
            else:
                pem = certificate.read_bytes() + (chain.read_bytes() if chain else b"")
                stored = store.import_pem(name, pem, key.read_bytes() if key else None, password=password,
                                          sector=sector, actor=actor)
        _out().print(f"imported {stored.name} version {stored.version}: {stored.status}"
                     + (" (rotate to make it current)" if stored.status == "staged" else ""), highlight=False)

    @app.command()
    def csr(
        name: Annotated[str, typer.Argument(help="the name the signed certificate will be imported under")],
        cn: Annotated[str, typer.Option("--cn", help="common name")],
        organization: Annotated[str | None, typer.Option("--o", help="organization (O)")] = None,
        unit: Annotated[str | None, typer.Option("--ou", help="organizational unit (OU)")] = None,
        country: Annotated[str, typer.Option(help="country (C)")] = "CN",
        san: Annotated[list[str] | None, typer.Option(help="a DNS name or IP address; repeat for several")] = None,
        algorithm: Annotated[str, typer.Option(help=" | ".join(KEY_ALGORITHMS))] = "rsa-2048",
        sector: Annotated[str | None, typer.Option(help="the owning sector (default: the gateway's own)")] = None,
        out: Annotated[Path | None, typer.Option(help="write the CSR here instead of printing it")] = None,
    ) -> None:
        """Generate a key (it stays in the store, sealed) and print its CSR for the sector's CA."""
        with readable_errors():
            stored, request = open_store().request(name, Subject(cn, organization, unit, country, tuple(san or ())),
                                                   algorithm, sector=sector, actor=actor)
            if out:
                out.write_bytes(request)
        _err().print(f"{stored.name} version {stored.version}: key generated ({algorithm}); "
                     "import the signed certificate under the same name", highlight=False)
        if not out:
            _out().print(request.decode(), markup=False, highlight=False, soft_wrap=True, end="")

    @app.command("list")
    def list_(sector: Annotated[str | None, typer.Option(help="only this sector's entries")] = None) -> None:
        """Every certificate version: status, subject, expiry (never a key)."""
        table = Table("name", "sector", "v", "status", "subject", "not after (Beijing)", "days left", "sha256",
                      "key", title="certificates")
        store = open_store()
        now = store.clock.now()
        for v in store.versions():
            if v.kind == SECRET or (sector is not None and v.sector != sector):
                continue
            f = v.facts
            table.add_row(v.name, v.sector or "", str(v.version), v.status, f.subject if f else "",
                          _when(f.not_after) if f else "", _days_left(f.not_after, now) if f else "",
                          f.sha256[:16] + "…" if f else "", "yes" if v.has_private_key else "")
        _out().print(table)

    @app.command()
    def show(name: str) -> None:
        """Every version of one name in full: subject, issuer, validity, SHA-256 and SM3 fingerprints."""
        with readable_errors():
            versions = open_store().versions(name)
        console = _out()
        for v in versions:
            console.print(f"[bold]{v.name} version {v.version}[/bold] — {v.status}", highlight=False)
            for label, value in _details(v):
                console.print(f"  {label:<16}{value}", markup=False, highlight=False, soft_wrap=True)
            if v.status == "pending" and v.csr_pem:
                console.print(v.csr_pem, markup=False, highlight=False, soft_wrap=True, end="")

    @app.command()
    def rotate(name: str,
               overlap_days: Annotated[float | None, typer.Option(help="default: YIWANG_CERT_OVERLAP_DAYS",
                                                                  min=0, max=MAX_OVERLAP_DAYS)] = None
               ) -> None:
        """Make the newest staged version current; the previous one stays trusted for the overlap window."""
        with readable_errors():
            store = open_store()
            stored = store.rotate(name, actor, timedelta(days=overlap_days) if overlap_days is not None else None)
        _out().print(f"{stored.name} version {stored.version} is current", highlight=False)

    @app.command()
    def retire(name: str, version: Annotated[int | None, typer.Option(help="one version; none: every one",
                                                                     min=1, max=2**31 - 1)] = None
               ) -> None:
        """Retire a version that is not current, or the whole name."""
        with readable_errors():
            versions = open_store().retire(name, actor, version)
        _out().print(", ".join(f"{v.name} v{v.version}: {v.status}" for v in versions), highlight=False)

    @app.command()
    def check() -> None:
        """Emit the expiry warnings now due (30 and 7 days ahead, and expired; each once), list what expires."""
        with readable_errors():
            store = open_store()
            watch = ExpiryWatch(store, CollectorRegistry())
            emitted = watch.check()
            expiries = store.expiries()
        now = store.clock.now()
        table = Table("name", "sector", "not after (Beijing)", "days left", title="current certificates")
        for name, sector, not_after in expiries:
            table.add_row(name, sector or "", _when(not_after), _days_left(not_after, now))
        console = _out()
        console.print(table)
        console.print(f"{emitted} new warning(s) emitted", highlight=False)

    @app.command()
    def rewrap() -> None:
        """Re-wrap every sealed key and secret, and re-seal personal data, under the current master key."""
        with readable_errors():
            store = open_store()
            count = store.rewrap()
            more = rewrap_beyond_the_store()
        _out().print(f"re-wrapped {count} envelope(s) under master key {store.keys.current_id}"
                     f"{'; ' + more if more else ''}; keys not listed in YIWANG_MASTER_KEY may now be removed "
                     "(keep a key that sealed audit or message log records: see the README)", highlight=False)

    @app.command("new-master-key")
    def new_master_key(key_id: Annotated[str, typer.Option("--id", help="the new key's id (no dots)")] = "") -> None:
        """Print a new `id:base64` master key: put it FIRST in YIWANG_MASTER_KEY, restart, then `certs rewrap`."""
        with readable_errors():
            item = MasterKeys.generate(key_id or datetime.now().strftime("k%Y%m%d"))
            MasterKeys.parse(item)  # refuses an id it could not be configured with
        _out().print(item, markup=False, highlight=False, soft_wrap=True)

    @app.command("secret-set")
    def secret_set(
        name: Annotated[str, typer.Argument(help="bundles reference it as {secret: vault:NAME}")],
        from_file: Annotated[Path | None, typer.Option(help="read the value from this file")] = None,
        from_env: Annotated[str | None, typer.Option(help="read the value from this environment variable")] = None,
        sector: Annotated[str | None, typer.Option(help="the owning sector (default: the gateway's own)")] = None,
    ) -> None:
        """Store a bundle secret (sealed); without --from-file/--from-env, prompt for it (hidden)."""
        with readable_errors():
            value = _read_secret(from_file, from_env) or typer.prompt(f"value of {name}", hide_input=True)
            stored = open_store().set_secret(name, value, sector=sector, actor=actor)
        _out().print(f"secret {stored.name} version {stored.version} stored", highlight=False)

    @app.command("secret-list")
    def secret_list() -> None:
        """Bundle secrets: names, owners and versions (never values)."""
        table = Table("name", "sector", "version", "set at (Beijing)", "by", title="secrets")
        for v in open_store().versions():
            if v.kind == SECRET and v.status == "current":
                table.add_row(v.name, v.sector or "", str(v.version), _when(v.created_at), v.created_by)
        _out().print(table)

    return app


@contextmanager
def readable_errors() -> Iterator[None]:
    try:
        yield
    except (CertificateError, MasterKeyError, UnknownEntry, CredentialMissing, SealedValueUnavailable,
            OSError) as exc:
        message = exc.args[0] if isinstance(exc, LookupError) and exc.args else exc
        _err().print(f"[red]error:[/red] {message}", highlight=False)
        raise typer.Exit(BAD_INPUT) from exc


def _password(path: Path | None, env: str | None, ask: bool) -> bytes | None:
    value = _read_secret(path, env)
    if value is None and ask:
        value = typer.prompt("password", hide_input=True)
    return value.encode() if value is not None else None


def _read_secret(path: Path | None, env: str | None) -> str | None:
    if path is not None:
        return path.read_text(encoding="utf-8").strip()
    if env is not None:
        if env not in os.environ:
            raise CertificateError(f"environment variable {env} is not set")
        return os.environ[env]
    return None


def _details(v: StoredVersion) -> list[tuple[str, str]]:
    rows = [("sector", v.sector or "(the gateway's own)"), ("private key", v.key_algorithm or "yes")
            if v.has_private_key else ("private key", "none (trusted only)")]
    if v.facts is not None:
        f = v.facts
        rows += [("subject", f.subject), ("issuer", f.issuer), ("serial", f.serial),
                 ("not before", _when(f.not_before)), ("not after", _when(f.not_after)),
                 ("sha256", f.sha256), ("sm3", f.sm3)]
    if v.trusted_until:
        rows.append(("trusted until", _when(v.trusted_until)))
    return rows + [("created", f"{_when(v.created_at)} by {v.created_by}"),
                   ("master key", v.master_key_id or "")]


def _days_left(not_after: datetime, now: datetime) -> str:
    return f"{(not_after - now) / timedelta(days=1):.1f}"


def _when(instant: datetime) -> str:
    """Instants are shown to people in Beijing time."""
    return to_shanghai(instant).strftime("%Y-%m-%d %H:%M")


def _out() -> Console:
    """A console per command, bound to the sys.stdout of the moment (CliRunner swaps it); wide when piped."""
    probe = Console()
    return probe if probe.is_terminal else Console(width=200)


def _err() -> Console:
    return Console(stderr=True, width=200)
