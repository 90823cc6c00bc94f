"""Fault injection for tools: make a tool raise, hang or return garbage.

Example::

    plan = FaultPlan().raise_on("charge", ConnectionError("reset"), times=1).hang_on("slow")
    agent = Agent(name="a", model=model, tools=plan.apply([charge, slow]))
    ...
    assert plan.invocations("charge") == 2
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tether.tools import Tool

__all__ = ["FaultPlan"]

_UNSET: Any = object()


@dataclass(slots=True)
class _Fault:
    kind: str
    times: int | None
    error: BaseException | None = None
    value: Any = None


class FaultPlan:
    """Faults to inject into named tools, applied in the order they were added.

    Each fault fires on the next ``times`` invocations of its tool (``None``: every
    invocation). When no fault is due, the real function runs.
    """

    def __init__(self) -> None:
        self._faults: dict[str, list[_Fault]] = {}
        self._invocations: dict[str, int] = {}
        self._real_calls: dict[str, int] = {}

    def raise_on(self, tool: str, error: BaseException, *, times: int | None = None) -> FaultPlan:
        """Make ``tool`` raise ``error`` instead of running."""
        return self._add(tool, _Fault("raise", times, error=error))

    def hang_on(self, tool: str, *, times: int | None = None) -> FaultPlan:
        """Make ``tool`` never return (until the call's timeout or the run's deadline)."""
        return self._add(tool, _Fault("hang", times))

    def garbage_on(self, tool: str, value: Any = _UNSET, *, times: int | None = None) -> FaultPlan:
        """Make ``tool`` return ``value`` instead of running.

        Default: an object that is neither JSON nor of any declared return type. Any value
        may be given, ``None`` included.
        """
        garbage = object() if value is _UNSET else value
        return self._add(tool, _Fault("garbage", times, value=garbage))

    def apply(self, tools: Sequence[Tool]) -> list[Tool]:
        """Return copies of ``tools`` with the faults wired in (other tools unchanged).

        A wrapped tool stays sync or async like the original, so timeouts behave as in
        production.

        Raises:
            ValueError: A hang is planned for a sync tool without a ``timeout``: nothing
                could ever interrupt it.
        """
        return [self._wrap(t) if t.name in self._faults else t for t in tools]

    def invocations(self, tool: str) -> int:
        """How many times ``tool`` was invoked (faulted or not)."""
        return self._invocations.get(tool, 0)

    def real_calls(self, tool: str) -> int:
        """How many times the real function of ``tool`` ran."""
        return self._real_calls.get(tool, 0)

    def _add(self, tool: str, fault: _Fault) -> FaultPlan:
        if fault.times is not None and fault.times < 1:
            raise ValueError("times must be >= 1 or None")
        self._faults.setdefault(tool, []).append(fault)
        return self

    def _next_fault(self, tool: str) -> _Fault | None:
        for fault in self._faults.get(tool, []):
            if fault.times is None:
                return fault
            if fault.times > 0:
                fault.times -= 1
                return fault
        return None

    def _wrap(self, tool: Tool) -> Tool:
        original = tool.function
        if not tool.is_async:
            if tool.timeout is None and any(f.kind == "hang" for f in self._faults[tool.name]):
                raise ValueError(
                    f"cannot hang sync tool {tool.name!r} without a timeout: nothing could "
                    "interrupt it; give the tool a timeout or make it async"
                )

            def faulty_sync(**kwargs: Any) -> Any:
                fault = self._begin(tool.name)
                if fault is None:
                    return original(**kwargs)
                if fault.kind == "hang":
                    threading.Event().wait()
                return self._finish(fault)

            return dataclasses.replace(tool, function=faulty_sync)

        async def faulty_async(**kwargs: Any) -> Any:
            fault = self._begin(tool.name)
            if fault is None:
                return await original(**kwargs)
            if fault.kind == "hang":
                await asyncio.Event().wait()
            return self._finish(fault)

        return dataclasses.replace(tool, function=faulty_async)

    def _begin(self, tool: str) -> _Fault | None:
        """Count an invocation; return the fault due, or ``None`` to run the real function."""
        self._invocations[tool] = self._invocations.get(tool, 0) + 1
        fault = self._next_fault(tool)
        if fault is None:
            self._real_calls[tool] = self._real_calls.get(tool, 0) + 1
        return fault

    @staticmethod
    def _finish(fault: _Fault) -> Any:
        if fault.kind == "raise" and fault.error is not None:
            raise fault.error
        return fault.value
