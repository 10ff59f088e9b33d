"""Wall time per phase of a job (``mcproton run``'s summary ``phase_s`` and ``phase_cpu_s``).

A :class:`PhaseClock` made current with :func:`use_clock` collects the time spent in ``with phase(name):``
blocks.  The times are *exclusive*: a phase entered inside another (the CT import inside the geometry, the
structure rasterisation inside the DVH) is charged to itself only, and its time is taken off the enclosing
phase, so that the phases of a job add up to its wall time (the part outside every phase is ``other``).
Without a current clock ``phase`` costs two context-variable lookups, so library code can mark its phases
(``load_ct_series``, ``resample_blocks``, ...) whoever calls it.  A caller that logs its progress has those marks
say a line as they start with :func:`announcing` (``mcproton check``: the CT's reading, its conversion to
materials).
"""
from __future__ import annotations

import contextlib
import contextvars
import functools
import time
from typing import Any, Callable, Iterator, Mapping, TypeVar

_F = TypeVar("_F", bound=Callable[..., Any])


class PhaseClock:
    """Exclusive wall time (s) per phase name since the clock was made, plus the process CPU time."""

    def __init__(self) -> None:
        import datetime as _dt

        #: when the clock was made (the run's start): local time, ISO 8601 with its UTC offset, to the second
        self.started = _dt.datetime.now().astimezone().isoformat(timespec="seconds")
        self.t0 = time.perf_counter()
        self.cpu0 = time.process_time()
        self.seconds: dict[str, float] = {}
        self.cpu_seconds: dict[str, float] = {}
        self._stack: list[list[Any]] = []   # [name, start, CPU start, wall and CPU time in nested phases]

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        frame = [name, time.perf_counter(), time.process_time(), 0.0, 0.0]
        self._stack.append(frame)
        try:
            yield
        finally:
            self._stack.pop()
            spent, cpu = time.perf_counter() - frame[1], time.process_time() - frame[2]
            self.seconds[name] = self.seconds.get(name, 0.0) + spent - frame[3]
            self.cpu_seconds[name] = self.cpu_seconds.get(name, 0.0) + cpu - frame[4]
            if self._stack:
                self._stack[-1][3] += spent
                self._stack[-1][4] += cpu

    def summary(self, ndigits: int = 3) -> dict[str, float]:
        """The phases in the order they were first entered, ``other`` (the time outside every phase) and
        ``total`` (the wall time since the clock was made: the sum of the others)."""
        total = time.perf_counter() - self.t0
        out = {k: round(v, ndigits) for k, v in self.seconds.items()}
        out["other"] = round(max(0.0, total - sum(self.seconds.values())), ndigits)
        out["total"] = round(total, ndigits)
        return out

    def cpu_s(self) -> float:
        """Process CPU time (all threads, s) since the clock was made: on a shared machine the wall times
        include waiting for a core, the CPU time does not."""
        return round(time.process_time() - self.cpu0, 3)

    def cpu_summary(self, ndigits: int = 3) -> dict[str, float]:
        """Like :meth:`summary`, in process CPU time (all threads: the transport's exceed its wall time)."""
        total = time.process_time() - self.cpu0
        out = {k: round(v, ndigits) for k, v in self.cpu_seconds.items()}
        out["other"] = round(max(0.0, total - sum(self.cpu_seconds.values())), ndigits)
        out["total"] = round(total, ndigits)
        return out


_CURRENT: contextvars.ContextVar[PhaseClock | None] = contextvars.ContextVar("mcproton_phase_clock",
                                                                             default=None)


@contextlib.contextmanager
def use_clock(clock: PhaseClock) -> Iterator[PhaseClock]:
    """Make ``clock`` the one that :func:`phase` charges, for the duration of the block."""
    token = _CURRENT.set(clock)
    try:
        yield clock
    finally:
        _CURRENT.reset(token)


_ANNOUNCED: contextvars.ContextVar[tuple[Mapping[str, str], Callable[[str], Any], set[str]] | None] = \
    contextvars.ContextVar("mcproton_phase_announcements", default=None)


@contextlib.contextmanager
def announcing(lines: Mapping[str, str], say: Callable[[str], Any]) -> Iterator[None]:
    """Inside the block, the first :func:`phase` of each name in ``lines`` calls ``say(lines[name])`` as it starts:
    a long step of library code, wherever it marks itself, announced in its caller's log (``mcproton check``'s
    "reading the CT ...", "converting the CT to materials and densities ...": the scale audit of 2026-12-07, F4,
    found a minute without a line before the MC of a large CT)."""
    token = _ANNOUNCED.set((dict(lines), say, set()))
    try:
        yield
    finally:
        _ANNOUNCED.reset(token)


def phase(name: str) -> contextlib.AbstractContextManager:
    """Charge the block's wall time to ``name`` on the current clock (nothing without one); inside
    :func:`announcing`, say the phase's line as it starts."""
    told = _ANNOUNCED.get()
    if told is not None and name in told[0] and name not in told[2]:
        told[2].add(name)
        told[1](told[0][name])
    clock = _CURRENT.get()
    return clock.phase(name) if clock is not None else contextlib.nullcontext()


def timed(name: str) -> Callable[[_F], _F]:
    """Decorator: every call of the function is the phase ``name``."""
    def deco(func: _F) -> _F:
        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with phase(name):
                return func(*args, **kwargs)
        return wrapper  # type: ignore[return-value]
    return deco
