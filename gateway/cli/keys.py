"""`yiwang keys ...`: issue, change roles of, revoke and list API keys.

The composition root (`gateway.bootstrap.cli`) mounts it. The store is opened by a callable the root
passes in, so this module needs no settings and tests can hand it a store on a temporary database.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

from gateway.cli import output
from gateway.cli.common import exit_code
from gateway.cli.output import Column, JsonOption
from gateway.security.api_keys import ApiKeyStore, IdentityError, IssuedIdentity, parse_role


def make_keys_app(open_store: Callable[[], ApiKeyStore]) -> typer.Typer:
    app = typer.Typer(help="API keys: who may call the gateway, with which roles.", no_args_is_help=True)

    @contextmanager
    def readable_errors() -> Iterator[None]:
        """Rule violations end the command with a red line and an exit code, not a traceback: 4 for separation
        of duties, 3 for an unknown identity, 2 for the rest."""
        try:
            yield
        except IdentityError as exc:
            output.stderr().print(f"[red]error:[/red] {exc}", highlight=False)
            raise typer.Exit(exit_code(exc)) from exc

    @app.command()
    def issue(
        name: Annotated[str, typer.Option("--name", help="Who holds the key, e.g. 'Xincheng district window 3'.")],
        role: Annotated[list[str], typer.Option("--role", help="A role; repeat for several.")],
        department: Annotated[str | None, typer.Option(
            help="A clerk's department: its unified social credit code.")] = None,
        sector: Annotated[str | None, typer.Option(help="A sector admin's sector.")] = None,
    ) -> None:
        """Issue a key. It is printed once and never stored: hand it over now."""
        with readable_errors():
            roles = [parse_role(r) for r in role]
            identity, raw_key = open_store().issue(name, roles, department=department, sector=sector)
        console = output.stdout()
        console.print(f"identity: {identity.id}", highlight=False)
        # Plain print: no markup, highlighting or wrapping may alter what people copy.
        console.print(f"key: {raw_key}", markup=False, highlight=False, soft_wrap=True)
        console.print("[yellow]This key will not be shown again; only its hash is stored.[/yellow]")

    @app.command("bind-certificate")
    def bind_certificate(
        identity_id: Annotated[str, typer.Argument(help="The identity's id (see `keys list`).")],
        certificate: Annotated[Path, typer.Argument(help="The client's certificate, PEM (no key needed).")],
    ) -> None:
        """Let an mTLS client certificate stand for the identity (behind a TLS terminator; see docs/security.md)."""
        with readable_errors():
            try:
                pem = certificate.read_bytes()
            except OSError as exc:
                raise IdentityError(f"cannot read {certificate}: {exc.strerror}") from None
            fingerprint = open_store().bind_certificate(identity_id, pem)
        output.stdout().print(f"identity {identity_id}: client certificate sha256 {fingerprint}", highlight=False)

    @app.command()
    def roles(
        identity_id: Annotated[str, typer.Argument(help="The identity's id (see `keys list`).")],
        role: Annotated[list[str], typer.Option("--role", help="A role; repeat for several. Replaces all roles.")],
        department: Annotated[str | None, typer.Option(
            help="A clerk's department: its unified social credit code.")] = None,
        sector: Annotated[str | None, typer.Option(help="A sector admin's sector.")] = None,
    ) -> None:
        """Replace an identity's roles and scope; its key stays valid."""
        with readable_errors():
            identity = open_store().change(identity_id, [parse_role(r) for r in role], department=department,
                                           sector=sector)
        output.stdout().print(f"{identity.id} ({identity.name}) now holds {', '.join(sorted(identity.roles))}",
                         highlight=False)

    @app.command()
    def revoke(identity_id: str = typer.Argument(..., help="The identity's id (see `keys list`).")) -> None:
        """Revoke an identity's key; every gateway process refuses it within seconds."""
        with readable_errors():
            identity = open_store().revoke(identity_id)
        output.stdout().print(f"revoked {identity.id} ({identity.name})", highlight=False)

    @app.command("list")
    def list_keys(as_json: JsonOption = False) -> None:
        """List identities, active and revoked (never keys or hashes)."""
        output.print_rows([_row(issued) for issued in open_store().list()], COLUMNS, as_json=as_json,
                          title="API keys")

    return app


COLUMNS = (Column("id", identifier=True), Column("name"), Column("roles"), Column("department", identifier=True),
           Column("sector"), Column("key_prefix", "key prefix", identifier=True), Column("created_at", "created"),
           Column("revoked_at", "revoked"))


def _row(issued: IssuedIdentity) -> dict[str, Any]:
    """An identity as administrators see it, with the API's field names (GET /v1/identities): never the key
    or its hash."""
    i = issued.identity
    return {"id": i.id, "name": i.name, "roles": sorted(i.roles), "department": i.department, "sector": i.sector,
            "key_prefix": issued.key_prefix, "created_at": issued.created_at, "revoked_at": issued.revoked_at,
            "active": issued.active}
