"""``tether grants``: list, add and revoke tool permissions, and give users roles.

Grants come only from here and from :mod:`tether.governance.permissions`; a run
started with ``Tether(permissions=True)`` denies every tool call no grant allows.
``tether grants revoke`` of an unknown or already revoked grant exits 1. Usage errors
exit 2 and tether's own failures 70, as every command does.
"""

from __future__ import annotations

from typing import Annotated

import typer

from tether.cli.common import JsonOption, StoreOption, execute, fail, out, print_json
from tether.cli.inspect import parse_age
from tether.governance.permissions import Grant, permissions
from tether.runtime import Tether

__all__ = ["NOT_FOUND", "app", "parse_ceilings"]

NOT_FOUND = 1
"""Exit code of ``tether grants revoke`` when no grant in force has that id."""

app = typer.Typer(help="Manage tool permissions (grants and roles).", no_args_is_help=True)


def parse_ceilings(pairs: list[str]) -> dict[str, float] | None:
    """Parse ``--max amount=100`` pairs into argument ceilings (``None`` for none).

    Raises:
        ValueError: A pair is not ``name=number``.
    """
    ceilings: dict[str, float] = {}
    for pair in pairs:
        name, sep, number = pair.partition("=")
        try:
            value = float(number)
        except ValueError:
            value = float("nan")
        if not sep or not name.strip() or value != value:
            raise ValueError(f"{pair!r} is not a ceiling like amount=100")
        ceilings[name.strip()] = int(value) if value.is_integer() else value
    return ceilings or None


def _line(grant: Grant) -> str:
    ceilings = ",".join(f"{k}<={v:g}" for k, v in sorted((grant.max_args or {}).items()))
    expires = grant.expires_at.isoformat() if grant.expires_at else "never"
    return f"{grant.grant_id}  {grant.principal}  {grant.tool}  {ceilings or '-'}  {expires}"


@app.command("list")
def list_(
    user: Annotated[
        str | None, typer.Option("--user", help="Only grants in force for this user.")
    ] = None,
    as_json: JsonOption = False,
    store: StoreOption = None,
) -> None:
    """List the grants in force (not revoked, not expired)."""

    async def act(t: Tether) -> list[Grant]:
        found = permissions(t.store)
        return await (found.grants() if user is None else found.grants_for(user))

    grants = execute(store, act)
    if as_json:
        print_json([g.to_dict() for g in grants])
        return
    for grant in grants:
        out.print(_line(grant), highlight=False)
    if not grants:
        out.print("no grants", highlight=False)


@app.command()
def add(
    principal: Annotated[
        str, typer.Option("--principal", help="user:<id> or role:<name>.", show_default=False)
    ],
    tool: Annotated[str, typer.Option("--tool", help="A tool name, or * for every tool.")],
    max_: Annotated[
        list[str] | None,
        typer.Option("--max", help="An argument ceiling, name=number; repeatable."),
    ] = None,
    expires: Annotated[
        str | None, typer.Option("--expires", help="Lifetime of the grant: 7d, 12h, 30m.")
    ] = None,
    as_json: JsonOption = False,
    store: StoreOption = None,
) -> None:
    """Grant a principal the right to call a tool."""
    try:
        ceilings = parse_ceilings(max_ or [])
        lifetime = None if expires is None else parse_age(expires)
    except ValueError as exc:
        fail(str(exc))

    async def act(t: Tether) -> Grant:
        until = None if lifetime is None else t.clock.now() + lifetime
        return await permissions(t.store).grant(
            principal, tool, max_args=ceilings, expires_at=until, actor="cli"
        )

    grant = execute(store, act)
    if as_json:
        print_json(grant.to_dict())
    else:
        out.print(_line(grant), highlight=False)


@app.command()
def revoke(grant_id: str, store: StoreOption = None) -> None:
    """Revoke a grant by its id (exit 1 if no grant in force has it)."""

    async def act(t: Tether) -> bool:
        return await permissions(t.store).revoke(grant_id, actor="cli")

    if not execute(store, act):
        fail(f"no grant in force with id {grant_id!r}", NOT_FOUND)
    out.print(f"revoked {grant_id}", highlight=False)


@app.command()
def roles(
    user: str,
    role: Annotated[
        list[str] | None, typer.Argument(help="The user's roles (all of them).")
    ] = None,
    store: StoreOption = None,
) -> None:
    """Set a user's roles, replacing the ones they had (none: remove them all)."""

    async def act(t: Tether) -> tuple[str, ...]:
        found = permissions(t.store)
        await found.set_roles(user, role or [])
        return await found.roles(user)

    given = execute(store, act)
    out.print(f"{user}: {', '.join(given) or 'no roles'}", highlight=False)
