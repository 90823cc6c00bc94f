"""A circuit breaker: stop calling an endpoint that keeps failing, then probe it.

One :class:`CircuitBreaker` guards one endpoint (a provider and model, or a tool)::

    closed ──(failure rate or consecutive failures)──> open
    open ──(reset_timeout elapsed)──> half_open
    half_open ──(a probe succeeds)──> closed
    half_open ──(a probe fails)──> open

While open, no call is made: :meth:`CircuitBreaker.before_call` raises
:class:`CircuitOpenError`. Only failures that say something about the endpoint's health
count (see :func:`counts_as_failure`); a ``rate_limited`` answer, a bad request or an
exception of the caller's own code neither opens nor closes the breaker.

Time comes from an injected :class:`~tether.clock.Clock` (``monotonic`` for the reset
timeout, ``now`` for the timestamps it reports). A breaker is meant for one event loop and
is not thread-safe.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import TypeVar

from tether.clock import Clock
from tether.errors import TetherError
from tether.resilience._checks import require_count, require_number

__all__ = [
    "FAILURE_CLASSES",
    "BreakerSnapshot",
    "BreakerState",
    "BreakerStateChanged",
    "CircuitBreaker",
    "CircuitOpenError",
    "counts_as_failure",
]

T = TypeVar("T")

FAILURE_CLASSES = frozenset(
    {
        "server_error",
        "overloaded",
        "timeout",
        "connection_error",
        "stream_truncated",
        "invalid_response",
        "tool_timeout",
        "tool_unavailable",
    }
)
"""The ``error_class`` values that count as failures of the endpoint by default."""


def counts_as_failure(exc: BaseException) -> bool:
    """Return whether ``exc`` says the endpoint is unhealthy (the default predicate).

    True for a :class:`~tether.errors.TetherError` whose ``error_class`` is in
    :data:`FAILURE_CLASSES`. False for everything else, notably ``rate_limited`` (a 429
    is the provider throttling us, which a rate limiter handles, not the breaker), the
    fatal client errors (``bad_request``, ``context_too_long``, ``auth_error``) and
    exceptions that are not ``TetherError`` (including a cancelled call).
    """
    return isinstance(exc, TetherError) and exc.error_class in FAILURE_CLASSES


class BreakerState(StrEnum):
    """The state of a :class:`CircuitBreaker`."""

    CLOSED = "closed"
    """Calls go through; outcomes are counted."""
    OPEN = "open"
    """Calls are refused without being made, until ``reset_timeout`` has passed."""
    HALF_OPEN = "half_open"
    """Up to ``half_open_probes`` calls go through at once to test the endpoint."""


class CircuitOpenError(TetherError):
    """The breaker refused the call; the endpoint was not called.

    Not retryable: retrying at once would be refused again. A fallback may serve instead.

    Attributes:
        breaker: The name of the breaker that refused.
        retry_after: Seconds until the breaker admits a probe, or ``None`` when it is
            half-open and all its probes are in flight.
    """

    error_class = "circuit_open"
    retryable = False

    def __init__(self, breaker: str, *, retry_after: float | None) -> None:
        when = "a probe is in flight" if retry_after is None else f"retry in {retry_after:.1f} s"
        super().__init__(f"circuit breaker {breaker!r} is open; {when}")
        self.breaker = breaker
        self.retry_after = retry_after


@dataclass(frozen=True, kw_only=True, slots=True)
class BreakerSnapshot:
    """The state of a breaker at one moment, for health checks and gauges.

    Attributes:
        name: The breaker's name.
        state: Its state, re-evaluated against the clock.
        failure_rate: Counted failures divided by ``calls`` (0.0 when ``calls`` is 0).
        calls: Outcomes in the sliding window (at most ``window``); cleared on closing.
        consecutive_failures: Counted failures since the last success.
        opened_at: When it last opened (UTC), or ``None`` while closed.
        probes_in_flight: Probes admitted in the half-open state and not yet finished.
    """

    name: str
    state: BreakerState
    failure_rate: float
    calls: int
    consecutive_failures: int
    opened_at: datetime | None
    probes_in_flight: int


@dataclass(frozen=True, kw_only=True, slots=True)
class BreakerStateChanged:
    """A breaker moved from one state to another (given to ``on_state_change``).

    The move from open to half-open is noticed lazily: ``at`` is when the breaker was next
    used or asked for its state after ``reset_timeout``, not the exact expiry.

    Attributes:
        name: The breaker's name.
        previous: The state it left.
        state: The state it entered.
        at: When the change was made (UTC, from the clock).
    """

    name: str
    previous: BreakerState
    state: BreakerState
    at: datetime


class CircuitBreaker:
    """Refuses calls to an endpoint that keeps failing, and probes it after a pause.

    It opens when, among the last ``window`` outcomes and with at least ``minimum_calls``
    of them, the share of counted failures reaches ``failure_rate``; or after
    ``consecutive_failures`` counted failures in a row. After ``reset_timeout`` seconds
    open it is half-open and admits ``half_open_probes`` concurrent calls: the first probe
    to succeed closes it (with an empty window), a probe that fails reopens it for another
    ``reset_timeout``. A probe that ends with an uncounted exception frees its slot.

    Use :meth:`call` to wrap a coroutine, or the synchronous :meth:`before_call`,
    :meth:`record_success` and :meth:`record_failure` around code that cannot be a
    closure, such as a stream consumed by the caller. Every admitted call must end with
    exactly one ``record_*``. Pass it the ticket :meth:`before_call` returned: only the
    outcomes of calls admitted in the current state count, so a slow call admitted before
    the breaker opened cannot close it, reopen it or take a probe's slot. Without a ticket
    an outcome is taken as belonging to the current state (and ignored while open).

    Args:
        name: The endpoint, such as ``"openai:gpt-4o"`` or ``"tool:search"``.
        clock: The clock that times the reset timeout.
        window: Outcomes kept in the sliding window. At least 1. Default 20.
        minimum_calls: Outcomes needed in the window before the failure rate may open the
            breaker; between 1 and ``window``. Default 5.
        failure_rate: Share of counted failures in the window that opens it, in
            ``(0, 1]``. Default 0.5.
        consecutive_failures: Counted failures in a row that open it regardless of the
            window, or ``None`` to rely on the rate alone. At least 1. Default 5.
        reset_timeout: Seconds it stays open before admitting probes. Positive. Default
            30.0.
        half_open_probes: Concurrent probes admitted while half-open. At least 1.
            Default 1.
        counts_as_failure: Decides which exceptions count as failures. Default
            :func:`counts_as_failure`.
        on_state_change: Called with a :class:`BreakerStateChanged` after every change of
            state. Default: nothing.

    Raises:
        ValueError: If a number is out of range.
    """

    def __init__(
        self,
        name: str,
        *,
        clock: Clock,
        window: int = 20,
        minimum_calls: int = 5,
        failure_rate: float = 0.5,
        consecutive_failures: int | None = 5,
        reset_timeout: float = 30.0,
        half_open_probes: int = 1,
        counts_as_failure: Callable[[BaseException], bool] = counts_as_failure,
        on_state_change: Callable[[BreakerStateChanged], None] | None = None,
    ) -> None:
        require_count("window", window, minimum=1)
        require_count("minimum_calls", minimum_calls, minimum=1)
        if minimum_calls > window:
            raise ValueError(f"minimum_calls ({minimum_calls}) must not exceed window ({window})")
        require_number("failure_rate", failure_rate, minimum=0.0, exclusive=True)
        if failure_rate > 1:
            raise ValueError(f"failure_rate must be at most 1, got {failure_rate}")
        if consecutive_failures is not None:
            require_count("consecutive_failures", consecutive_failures, minimum=1)
        require_number("reset_timeout", reset_timeout, minimum=0.0, exclusive=True)
        require_count("half_open_probes", half_open_probes, minimum=1)
        self.name = name
        self.minimum_calls = minimum_calls
        self.failure_rate = failure_rate
        self.consecutive_failures = consecutive_failures
        self.reset_timeout = reset_timeout
        self.half_open_probes = half_open_probes
        self._clock = clock
        self._counts = counts_as_failure
        self._on_state_change = on_state_change
        self._outcomes: deque[bool] = deque(maxlen=window)  # True: a counted failure
        self._consecutive = 0
        self._state = BreakerState.CLOSED
        self._opened_monotonic = 0.0
        self._opened_at: datetime | None = None
        self._probes = 0
        self._epoch = 0  # incremented on every change of state; tickets are epochs

    def __repr__(self) -> str:
        return f"CircuitBreaker({self.name!r}, state={self.state.value})"

    @property
    def window(self) -> int:
        """Outcomes kept in the sliding window."""
        return self._outcomes.maxlen or 0

    @property
    def state(self) -> BreakerState:
        """The current state; an expired open breaker becomes half-open when read."""
        self._refresh()
        return self._state

    def snapshot(self) -> BreakerSnapshot:
        """Return the current state, failure rate and counters as one value."""
        self._refresh()
        calls = len(self._outcomes)
        return BreakerSnapshot(
            name=self.name,
            state=self._state,
            failure_rate=sum(self._outcomes) / calls if calls else 0.0,
            calls=calls,
            consecutive_failures=self._consecutive,
            opened_at=self._opened_at,
            probes_in_flight=self._probes,
        )

    def before_call(self) -> int:
        """Admit one call or refuse it; an admitted call must be followed by a ``record_*``.

        Returns:
            A ticket for :meth:`record_success` or :meth:`record_failure`: it tells the
            breaker which state admitted the call.

        Raises:
            CircuitOpenError: If the breaker is open, or half-open with all its probes
                in flight.
        """
        self._refresh()
        if self._state is BreakerState.CLOSED:
            return self._epoch
        if self._state is BreakerState.HALF_OPEN:
            if self._probes < self.half_open_probes:
                self._probes += 1
                return self._epoch
            raise CircuitOpenError(self.name, retry_after=None)
        remaining = self._opened_monotonic + self.reset_timeout - self._clock.monotonic()
        raise CircuitOpenError(self.name, retry_after=max(remaining, 0.0))

    def record_success(self, *, ticket: int | None = None) -> None:
        """Record that an admitted call succeeded; a successful probe closes the breaker.

        Args:
            ticket: What :meth:`before_call` returned for the call. An outcome from an
                earlier state is ignored.
        """
        if not self._current(ticket):
            return
        if self._state is BreakerState.CLOSED:
            self._outcomes.append(False)
            self._consecutive = 0
        elif self._state is BreakerState.HALF_OPEN and self._probes:
            self._close()

    def record_failure(self, exc: BaseException, *, ticket: int | None = None) -> None:
        """Record that an admitted call raised ``exc``.

        A counted failure (see ``counts_as_failure``) may open a closed breaker and reopens
        a half-open one. Any other exception is not an outcome: it only frees a probe slot.

        Args:
            exc: What the call raised.
            ticket: What :meth:`before_call` returned for the call. An outcome from an
                earlier state is ignored.
        """
        if not self._current(ticket):
            return
        counted = self._counts(exc)
        if self._state is BreakerState.CLOSED:
            if counted:
                self._outcomes.append(True)
                self._consecutive += 1
                if self._tripped():
                    self._open()
        elif self._state is BreakerState.HALF_OPEN and self._probes:
            if counted:
                self._open()
            else:
                self._probes -= 1

    async def call(self, fn: Callable[[], Awaitable[T]]) -> T:
        """Await ``fn()`` if the breaker admits it, and record how it ended.

        Args:
            fn: Makes the call (``lambda: model.request(...)``); not called when refused.

        Returns:
            What ``fn()`` returned.

        Raises:
            CircuitOpenError: If the breaker refused the call.
            BaseException: Whatever ``fn()`` raised, unchanged, after recording it.
        """
        ticket = self.before_call()
        try:
            result = await fn()
        except BaseException as exc:  # a cancelled probe must give its slot back too
            self.record_failure(exc, ticket=ticket)
            raise
        self.record_success(ticket=ticket)
        return result

    def _current(self, ticket: int | None) -> bool:
        """Refresh the state; return whether an outcome with ``ticket`` belongs to it."""
        self._refresh()
        return ticket is None or ticket == self._epoch

    def _tripped(self) -> bool:
        if self.consecutive_failures is not None and (
            self._consecutive >= self.consecutive_failures
        ):
            return True
        calls = len(self._outcomes)
        return calls >= self.minimum_calls and sum(self._outcomes) / calls >= self.failure_rate

    def _refresh(self) -> None:
        if self._state is BreakerState.OPEN and (
            self._clock.monotonic() - self._opened_monotonic >= self.reset_timeout
        ):
            self._probes = 0
            self._move(BreakerState.HALF_OPEN)

    def _open(self) -> None:
        self._opened_monotonic = self._clock.monotonic()
        self._opened_at = self._clock.now()
        self._probes = 0
        self._move(BreakerState.OPEN)

    def _close(self) -> None:
        self._outcomes.clear()
        self._consecutive = 0
        self._opened_at = None
        self._probes = 0
        self._move(BreakerState.CLOSED)

    def _move(self, state: BreakerState) -> None:
        previous, self._state = self._state, state
        self._epoch += 1
        if self._on_state_change is not None and previous is not state:
            change = BreakerStateChanged(
                name=self.name, previous=previous, state=state, at=self._clock.now()
            )
            self._on_state_change(change)
