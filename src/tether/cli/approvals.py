"""``tether approvals``, ``tether approve`` and ``tether deny``: answer calls that wait.

A run whose agent has an approval policy pauses in ``waiting_approval`` when a call needs
a person. These commands list the waiting calls and answer them. Once none of a run's
calls waits, the run is ``pending`` again: a worker continues it, or ``tether resume``
(or ``--resume`` here) does. Deciding a request that was already decided or expired
exits 2, like every refused operation.
"""

from __future__ import annotations

import getpass
import os
from typing import Annotated, Any

import typer

from tether.cli.common import JsonOption, StoreOption, execute, out, print_json
from tether.events import ApprovalRequested, ModelResponded
from tether.governance.approvals import ApprovalRequest
from tether.runtime import Tether

__all__ = ["call_arguments", "register"]

ApprovalArgument = Annotated[str, typer.Argument(help="The request (see `tether approvals`).")]
ApproverOption = Annotated[
    str | None,
    typer.Option(
        "--as",
        help="Who decides (recorded; roles from `tether grants roles`). "
        "Default: $TETHER_USER, else the login name.",
    ),
]
ResumeOption = Annotated[
    bool, typer.Option("--resume", help="Continue the run here once none of its calls waits.")
]


def register(app: typer.Typer) -> None:
    """Add the approval commands to ``app``."""
    app.command(name="approvals")(list_approvals)
    app.command()(approve)
    app.command()(deny)


def list_approvals(as_json: JsonOption = False, store: StoreOption = None) -> None:
    """List the calls waiting for a person's approval, oldest first, with their arguments."""

    async def act(runtime: Tether) -> list[tuple[ApprovalRequest, str | None]]:
        waiting = await runtime.pending_approvals()
        return [(r, await call_arguments(runtime, r)) for r in waiting]

    waiting = execute(store, act)
    if as_json:
        print_json([{**_as_json(r), "arguments": arguments} for r, arguments in waiting])
        return
    if not waiting:
        out.print("no calls wait for approval")
        return
    for request, arguments in waiting:
        why = "; ".join(request.reasons) or "-"
        role = f"  role {request.approver_role}" if request.approver_role else ""
        out.print(
            f"{request.approval_id}  run {request.run_id} step {request.step}  "
            f"{request.tool}({arguments or '?'})\n"
            f"    why: {why}\n    expires {request.expires_at:%Y-%m-%d %H:%M:%S}Z{role}",
            highlight=False,
            markup=False,
        )


async def call_arguments(runtime: Tether, request: ApprovalRequest) -> str | None:
    """The arguments of a waiting call as the model sent them (JSON), from its journal."""
    events = await runtime.store.events(request.run_id)
    asked = next(
        (e for e in events if isinstance(e, ApprovalRequested) and e.step == request.step), None
    )
    if asked is None:
        return None
    # The batch's response is the last one before the call's step (ids repeat across steps).
    responses = [e for e in events if isinstance(e, ModelResponded) and e.step < request.step]
    if not responses:
        return None
    calls = responses[-1].response.tool_calls
    return next((c.arguments for c in calls if c.id == asked.call_id), None)


def approve(
    approval_id: ApprovalArgument,
    approver: ApproverOption = None,
    comment: Annotated[str | None, typer.Option(help="A note kept with the decision.")] = None,
    resume: ResumeOption = False,
    store: StoreOption = None,
) -> None:
    """Approve one waiting call: it may run once, with exactly the arguments shown."""
    who = approver or _login()
    _decide(
        store, resume, lambda runtime: runtime.approve(approval_id, approver=who, comment=comment)
    )


def deny(
    approval_id: ApprovalArgument,
    reason: Annotated[str, typer.Option(help="Why; the model is told, and it is audited.")],
    approver: ApproverOption = None,
    resume: ResumeOption = False,
    store: StoreOption = None,
) -> None:
    """Deny one waiting call: it never runs, and the model is told the reason."""
    who = approver or _login()
    _decide(store, resume, lambda runtime: runtime.deny(approval_id, approver=who, reason=reason))


def _decide(store: str | None, resume: bool, decide: Any) -> None:
    async def act(runtime: Tether) -> tuple[ApprovalRequest, str]:
        decided = await decide(runtime)
        record = await runtime.store.get_run(decided.run_id)
        status = record.status.value if record is not None else "unknown"
        if resume and status == "pending":
            result = await runtime.resume(decided.run_id)
            status = result.status.value
        return decided, status

    decided, status = execute(store, act)
    out.print(
        f"{decided.status.value} {decided.approval_id} ({decided.tool}, run {decided.run_id}): "
        f"the run is {status}",
        highlight=False,
        markup=False,
    )
    if status == "pending":
        out.print(
            f"a worker continues it, or: tether resume {decided.run_id}",
            highlight=False,
            markup=False,
        )


def _login() -> str:
    return os.environ.get("TETHER_USER") or getpass.getuser()


def _as_json(request: ApprovalRequest) -> dict[str, Any]:
    return {
        "approval_id": request.approval_id,
        "run_id": request.run_id,
        "step": request.step,
        "tool": request.tool,
        "args_hash": request.args_hash,
        "reasons": list(request.reasons),
        "requested_at": request.requested_at.isoformat(),
        "expires_at": request.expires_at.isoformat(),
        "status": request.status.value,
        "approver_role": request.approver_role,
    }
