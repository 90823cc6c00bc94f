"""The public surface: curated, sorted, documented, keyword-only records."""

from __future__ import annotations

import dataclasses
import inspect

import pytest

import tether
import tether.context
import tether.critic
import tether.governance.approvals
import tether.governance.audit
import tether.governance.budgets
import tether.governance.permissions
import tether.memory
import tether.models
import tether.observe
import tether.resilience
import tether.run
import tether.store
import tether.testing
import tether.toolkit
import tether.tools
import tether.undo

MODULES = [
    tether,
    tether.testing,
    tether.tools,
    tether.models,
    tether.resilience,
    tether.store,
    tether.run,
    tether.toolkit,
    tether.undo,
    tether.critic,
    tether.context,
    tether.memory,
    tether.governance.approvals,
    tether.governance.audit,
    tether.governance.budgets,
    tether.governance.permissions,
    tether.observe,
]


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.__name__)
def test_all_is_sorted_and_resolves(module) -> None:
    names = module.__all__
    # isort-style, as ruff keeps it: CONSTANTS, then Classes, then functions.
    assert list(names) == sorted(names, key=lambda n: (not n.isupper(), not n[0].isupper(), n))
    for name in names:
        assert hasattr(module, name), name


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.__name__)
def test_every_public_symbol_is_documented(module) -> None:
    for name in module.__all__:
        value = getattr(module, name)
        if inspect.isclass(value) or inspect.isfunction(value):
            assert inspect.getdoc(value), f"{module.__name__}.{name} has no docstring"
            for attr, member in vars(value).items():
                if attr.startswith("_") or not callable(member):
                    continue
                assert inspect.getdoc(member), f"{name}.{attr} has no docstring"


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.__name__)
def test_public_dataclasses_are_frozen_and_keyword_only(module) -> None:
    for name in module.__all__:
        value = getattr(module, name)
        if not (inspect.isclass(value) and dataclasses.is_dataclass(value)):
            continue
        params = dataclasses.fields(value)
        assert all(f.kw_only for f in params), f"{name} must be keyword-only"
        assert value.__dataclass_params__.frozen, f"{name} must be frozen"  # type: ignore[attr-defined]


def test_status_values_are_stable() -> None:
    assert [s.value for s in tether.RunStatus] == [
        "pending",
        "running",
        "waiting_approval",
        "waiting_user",
        "completed",
        "failed",
        "max_steps",
        "timed_out",
        "token_limit",
        "tool_call_limit",
        "budget_exceeded",
        "needs_review",
        "blocked",
        "cancelled",
    ]


def test_agent_is_frozen() -> None:
    agent = tether.Agent(name="a", model=tether.testing.ScriptedModel([]))
    with pytest.raises(dataclasses.FrozenInstanceError):
        agent.name = "b"  # type: ignore[misc]
