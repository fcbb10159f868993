"""``paz certs``: the certificates the routers serve over HTTPS, and ones a user brings."""

from __future__ import annotations

from pathlib import Path

import click

from .output import USAGE, PazError, done, emit_json, step, table
from .workflow import JSON_OPTION, orchestrator

PEM = click.Path(exists=True, dir_okay=False, path_type=Path)


@click.group(invoke_without_command=True)
@JSON_OPTION
@click.pass_context
def certs(ctx: click.Context, as_json: bool) -> None:
    """List the certificates the routers serve (name, source, issuer, expiry) and failed orders."""
    if ctx.invoked_subcommand:
        return
    found = orchestrator(ctx).json("GET", "/certs")
    if as_json:
        return emit_json(found)
    table([(c["name"], c["source"], c["issuer"], c["notAfter"], c["renewAt"] if c["source"] == "acme" else "-")
           for c in sorted(found["certificates"], key=lambda c: c["name"])],
          ("name", "source", "issuer", "expires", "renews"))
    for failure in found["failures"]:
        step(f"{failure['name']}: not ordered: {failure['reason']} (try {failure['attempts']}, next at {failure['retryAt']})", "red")


@certs.command("add")
@click.argument("name")
@click.argument("certificate", type=PEM)
@click.argument("key", type=PEM)
@click.pass_context
def add(ctx: click.Context, name: str, certificate: Path, key: Path) -> None:
    """Serve CERTIFICATE (PEM, leaf first) with its private KEY for host NAME; it replaces an ordered one."""
    try:
        body = {"certificate": certificate.read_text(), "privateKey": key.read_text()}
    except (OSError, UnicodeDecodeError) as exc:
        raise PazError(f"cannot read the PEM files: {exc}", USAGE) from None
    stored = orchestrator(ctx).json("PUT", f"/certs/{name}", json=body)
    done(f"serving {stored['name']} with the certificate from {stored['issuer']} (expires {stored['notAfter']})")


@certs.command("rm")
@click.argument("name")
@click.pass_context
def remove(ctx: click.Context, name: str) -> None:
    """Stop serving NAME's certificate (an ordered one is ordered again while NAME is public)."""
    orchestrator(ctx).call("DELETE", f"/certs/{name}")
    done(f"removed the certificate of {name}")


COMMANDS = (certs,)
