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
from typing import Annotated, Any

import typer
from prometheus_client import CollectorRegistry
from rich.markup import escape

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
from gateway.cli import output
from gateway.cli.common import exit_code
from gateway.cli.output import Column, JsonOption, QuietOption
from gateway.domain.clock import to_shanghai
from gateway.security.certificates import ExpiryWatch

P12_SUFFIXES = (".p12", ".pfx")
AgentOption = Annotated[Path | None, typer.Option(
    help="the far-side ferry agent's store instead (on the 前置机): its configuration file")]


def make_certs_app(open_store: Callable[[], CertStore],
                   rewrap_beyond_the_store: Callable[[Callable[[int], None]], str] = lambda _: "",
                   open_agent_store: Callable[[Path], CertStore] | None = None) -> typer.Typer:
    """`rewrap_beyond_the_store(progress)`: what else a master-key rotation re-seals (personal data, the logs'
    key), telling `progress` how many rows it read. `open_agent_store(config)`: the far-side ferry agent's own
    store, named by its configuration file (`import --agent`)."""
    app = typer.Typer(help="Certificates, private keys and bundle secrets, encrypted at rest.", no_args_is_help=True)
    actor = f"cli:{getpass.getuser()}"

    def store_of(agent: Path | None) -> CertStore:
        """The gateway's store, or with `--agent` the ferry agent's."""
        return _agent_store(open_agent_store, agent) if agent is not None else open_store()

    @app.command("import")
    def import_(
        name: Annotated[str, typer.Argument(help="the name bundles use: cert:NAME")],
        certificate: Annotated[Path | None, typer.Argument(
            help="PEM certificate (leaf first, chain after), or .p12/.pfx", show_default=False)] = None,
        cert: Annotated[Path | None, typer.Option("--cert", help="the certificate file, as an option instead")] = None,
        key: Annotated[Path | None, typer.Option(help="its PEM private key (may be encrypted)")] = None,
        chain: Annotated[Path | None, typer.Option(help="PEM chain, if not in the certificate file")] = None,
        pkcs12: Annotated[bool, typer.Option(help="the file is PKCS#12 (default for .p12/.pfx)")] = False,
        password_file: Annotated[Path | None, typer.Option(help="file holding the key's or PKCS#12 password")] = None,
        password_env: Annotated[str | None, typer.Option(help="environment variable holding that password")] = None,
        ask_password: Annotated[bool, typer.Option(help="prompt for the password (hidden)")] = False,
        sector: Annotated[str | None, typer.Option(help="the owning sector (default: the gateway's own)")] = None,
        agent: AgentOption = None,
    ) -> None:
        """Import a certificate with its key, or alone (to trust it, or to complete a `csr`)."""
        with readable_errors():
            certificate = _one_file(certificate, cert)
            password = _password(password_file, password_env, ask_password)
            store = store_of(agent)
            if pkcs12 or certificate.suffix.lower() in P12_SUFFIXES:
                stored = store.import_pkcs12(name, certificate.read_bytes(), password, sector=sector, actor=actor)
            else:
                pem = certificate.read_bytes() + (chain.read_bytes() if chain else b"")
                stored = store.import_pem(name, pem, key.read_bytes() if key else None, password=password,
                                          sector=sector, actor=actor)
        output.stdout().print(f"imported {stored.name} version {stored.version}: {stored.status}"
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
        output.stderr().print(f"{stored.name} version {stored.version}: key generated ({algorithm}); "
                     "import the signed certificate under the same name", highlight=False)
        if not out:
            output.stdout().print(request.decode(), markup=False, highlight=False, soft_wrap=True, end="")

    @app.command("list")
    def list_(sector: Annotated[str | None, typer.Option(help="only this sector's entries")] = None,
              as_json: JsonOption = False, agent: AgentOption = None) -> None:
        """Every certificate version: status, subject, expiry, fingerprint, key algorithm (never a key)."""
        with readable_errors():
            store = store_of(agent)
        now = store.clock.now()
        rows = [_version(v, now) for v in store.versions()
                if v.kind != SECRET and (sector is None or v.sector == sector)]
        output.print_rows(rows, CERT_COLUMNS, as_json=as_json, title="certificates")

    @app.command()
    def show(name: str, as_json: JsonOption = False) -> None:
        """Every version of one name in full: subject, issuer, validity, SHA-256 and SM3 fingerprints."""
        with readable_errors():
            store = open_store()
            versions = store.versions(name)  # UnknownEntry when there is none
        if as_json:  # as GET /v1/certificates/{name} answers
            now = store.clock.now()
            output.print_object({"name": versions[0].name, "sector": versions[0].sector, "kind": versions[0].kind,
                                 "versions": [_version(v, now) for v in versions]}, as_json=True)
            return
        console = output.stdout()
        for v in versions:
            console.print(f"[bold]{v.name} version {v.version}[/bold] — {v.status}", highlight=False)
            for label, value in _details(v):
                console.print(f"  {label:<16}{value}", markup=False, highlight=False, soft_wrap=True)
            if v.status == "pending" and v.csr_pem:
                console.print(v.csr_pem, markup=False, highlight=False, soft_wrap=True, end="")

    @app.command()
    def rotate(name: str,
               overlap_days: Annotated[float | None, typer.Option(help="default: YIWANG_CERT_OVERLAP_DAYS",
                                                                  min=0, max=MAX_OVERLAP_DAYS)] = None,
               agent: AgentOption = None) -> None:
        """Make the newest staged version current; the previous one stays trusted for the overlap window."""
        with readable_errors():
            store = store_of(agent)
            stored = store.rotate(name, actor, timedelta(days=overlap_days) if overlap_days is not None else None)
        output.stdout().print(f"{stored.name} version {stored.version} is current", highlight=False)

    @app.command()
    def retire(name: str, version: Annotated[int | None, typer.Option(help="one version; none: every one",
                                                                     min=1, max=2**31 - 1)] = None
               ) -> None:
        """Retire a version that is not current, or the whole name."""
        with readable_errors():
            versions = open_store().retire(name, actor, version)
        output.stdout().print(", ".join(f"{v.name} v{v.version}: {v.status}" for v in versions), highlight=False)

    @app.command()
    def check(as_json: JsonOption = False) -> None:
        """Emit the expiry warnings now due (30 and 7 days ahead, and expired; each once), list what expires."""
        with readable_errors():
            store = open_store()
            watch = ExpiryWatch(store, CollectorRegistry())
            emitted = watch.check()
            expiries = store.expiries()
        now = store.clock.now()
        rows = [{"name": name, "sector": sector, "not_after": not_after, "days_left": _days_left(not_after, now)}
                for name, sector, not_after in expiries]
        output.print_rows(rows, EXPIRY_COLUMNS, as_json=as_json, title="current certificates")
        output.note(f"{emitted} new warning(s) emitted", as_json=as_json)

    @app.command()
    def rewrap(quiet: QuietOption = False) -> None:
        """Re-wrap every sealed key and secret, and re-seal personal data, under the current master key."""
        with readable_errors():
            store = open_store()
            with output.progress("re-wrapping keys and secrets", None, quiet=quiet) as advance:
                count = store.rewrap(advance)
            with output.progress("re-sealing personal data (rows read)", None, quiet=quiet) as advance:
                more = rewrap_beyond_the_store(advance)
        output.stdout().print(f"re-wrapped {count} envelope(s) under master key {store.keys.current_id}"
                     f"{'; ' + more if more else ''}; keys not listed in YIWANG_MASTER_KEY may now be removed "
                     "(keep a key that sealed audit or message log records: see docs/security.md, Master keys)",
                     highlight=False)

    @app.command("new-master-key")
    def new_master_key(key_id: Annotated[str, typer.Option("--id", help="the new key's id (no dots)")] = "") -> None:
        """Print a new `id:base64` master key: put it FIRST in YIWANG_MASTER_KEY, restart, then `certs rewrap`."""
        with readable_errors():
            item = MasterKeys.generate(key_id or datetime.now().strftime("k%Y%m%d"))
            MasterKeys.parse(item)  # refuses an id it could not be configured with
        output.stdout().print(item, markup=False, highlight=False, soft_wrap=True)

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
        output.stdout().print(f"secret {stored.name} version {stored.version} stored", highlight=False)

    @app.command("secret-list")
    def secret_list(as_json: JsonOption = False) -> None:
        """Bundle secrets: names, owners and versions (never values)."""
        store = open_store()
        now = store.clock.now()
        rows = [_version(v, now) for v in store.versions() if v.kind == SECRET and v.status == "current"]
        output.print_rows(rows, SECRET_COLUMNS, as_json=as_json, title="secrets")

    return app


def _one_file(argument: Path | None, option: Path | None) -> Path:
    if argument is not None and option is None:
        return argument
    if option is not None and argument is None:
        return option
    raise CertificateError("name the certificate file once: as the argument after NAME, or with --cert")


def _agent_store(open_agent_store: Callable[[Path], CertStore] | None, config: Path) -> CertStore:
    if open_agent_store is None:
        raise CertificateError("--agent is not available here")
    try:
        return open_agent_store(config)
    except (ValueError, RuntimeError) as exc:  # its configuration refused (naming the key), or no `init` yet
        raise CertificateError(str(exc)) from exc


@contextmanager
def readable_errors() -> Iterator[None]:
    try:
        yield
    except (CertificateError, MasterKeyError, UnknownEntry, CredentialMissing, SealedValueUnavailable,
            OSError) as exc:
        message = exc.args[0] if isinstance(exc, LookupError) and exc.args else exc
        output.stderr().print(f"[red]error:[/red] {escape(str(message))}")
        raise typer.Exit(exit_code(exc)) from exc  # 3 for a name that does not exist


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
    rows = [("sector", v.sector or "(the gateway's own)"), ("key algorithm", v.key_algorithm or "unknown"),
            ("private key", "yes" if v.has_private_key else "none (trusted only)")]
    if v.facts is not None:
        f = v.facts
        rows += [("subject", f.subject), ("issuer", f.issuer), ("serial", f.serial),
                 ("not before", _when(f.not_before)), ("not after", _when(f.not_after)),
                 ("sha256", f.sha256), ("sm3", f.sm3)]
    if v.trusted_until:
        rows.append(("trusted until", _when(v.trusted_until)))
    return rows + [("created", f"{_when(v.created_at)} by {v.created_by}"),
                   ("master key", v.master_key_id or "")]


CERT_COLUMNS = (Column("name", identifier=True), Column("sector"), Column("version", "v"), Column("status"),
                Column("subject"), Column("not_after", "not after (Beijing)"), Column("days_left", "days left"),
                Column("sha256", identifier=True), Column("key_algorithm", "algorithm"),
                Column("has_private_key", "key"))
SECRET_COLUMNS = (Column("name", identifier=True), Column("sector"), Column("version"),
                  Column("created_at", "set at (Beijing)"), Column("created_by", "by"))
EXPIRY_COLUMNS = (Column("name", identifier=True), Column("sector"), Column("not_after", "not after (Beijing)"),
                  Column("days_left", "days left"))


def _version(v: StoredVersion, now: datetime) -> dict[str, Any]:
    """A version as GET /v1/certificates shows it (the pending one's CSR too), its instants left as instants
    for the output to spell, and the days its certificate has left."""
    row: dict[str, Any] = {**v.public(), "created_at": v.created_at, "trusted_until": v.trusted_until}
    if v.status == "pending":
        row["csr_pem"] = v.csr_pem
    if v.facts is not None:
        row.update(not_before=v.facts.not_before, not_after=v.facts.not_after,
                   days_left=_days_left(v.facts.not_after, now))
    return row


def _days_left(not_after: datetime, now: datetime) -> float:
    return round((not_after - now) / timedelta(days=1), 1)


def _when(instant: datetime) -> str:
    """Instants are shown to people in Beijing time."""
    return to_shanghai(instant).strftime("%Y-%m-%d %H:%M")


