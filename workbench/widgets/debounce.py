"""Trailing-edge debouncing of widget callbacks on the kernel's event loop."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

__all__ = ["Debouncer", "from_frontend"]


def from_frontend(change: dict[str, Any]) -> bool:
    """Whether a trait change came from the browser (ipywidgets holds a property lock on the
    synced names while it applies a frontend update), not from Python code."""
    return bool(getattr(change.get("owner"), "_property_lock", None))


class Debouncer:
    """Run each scheduled callable once, ``delay`` seconds after the last request.

    Requests made while an asyncio loop runs (inside a Jupyter kernel) are coalesced: a burst
    of slider steps (arrow keys held down, a dragged readout) costs one recomputation, at the
    end. Without a running loop (scripts, headless tests) or with ``delay <= 0`` the callable
    runs at once, so programmatic use stays synchronous.

    Parameters
    ----------
    delay : float
        Quiet period in seconds.
    on_error : callable
        Receives any exception a deferred callable raises (it has no caller to raise to).
    on_settled : callable, optional
        Called after each deferred batch has run (e.g. to clear a busy indicator).
    """

    def __init__(
        self,
        delay: float,
        on_error: Callable[[Exception], None],
        on_settled: Callable[[], None] | None = None,
    ) -> None:
        self.delay, self.on_error, self.on_settled = float(delay), on_error, on_settled
        self._pending: dict[Callable[[], Any], None] = {}  # insertion-ordered set
        self._timer: asyncio.TimerHandle | None = None

    @property
    def pending(self) -> bool:
        """Whether deferred calls are waiting."""
        return bool(self._pending)

    def __call__(self, fn: Callable[[], Any], *, defer: bool = True) -> None:
        """Run ``fn`` now, or (``defer`` inside a running loop) after the quiet period."""
        loop = _running_loop() if defer and self.delay > 0 else None
        if loop is None:
            self._run(fn)
            return
        self._pending[fn] = None
        if self._timer is not None:
            self._timer.cancel()
        self._timer = loop.call_later(self.delay, self.flush)

    def flush(self) -> None:
        """Run the waiting calls now (each once, in request order)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        calls, self._pending = list(self._pending), {}
        for fn in calls:
            self._run(fn)
        if calls and self.on_settled is not None:
            self._run(self.on_settled)

    def _run(self, fn: Callable[[], Any]) -> None:
        try:
            fn()
        except Exception as err:  # a deferred call has no caller: report, never lose it
            self.on_error(err)


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None
