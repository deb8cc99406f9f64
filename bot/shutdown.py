"""Stopping within a bound: every task is cancelled, insisted on, and named if it is slow.

A stop must end whatever state the services are in: a websocket mid-handshake, a delivery
waiting on a server that went quiet, a task whose cancellation was swallowed (on Python 3.11
``asyncio.wait_for`` loses a cancel that arrives as its wait completes, and an ``await`` of a
cancelled helper inside ``suppress(CancelledError)`` swallows the caller's own). So a stop does
not trust one ``cancel()``: it cancels every task at once, gives them a grace to finish their
goodbyes (closing a socket), then cancels again and again until a deadline, and finally names
what is still running and moves on rather than wait forever. Each slow one is logged by name.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
import queue
import threading
import time
from collections.abc import Callable, Coroutine, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

log = logging.getLogger("marketbot")

T = TypeVar("T")

INSIST_EVERY = 0.1  # seconds between repeated cancels once the grace ran out


@dataclass(frozen=True)
class StopBudget:
    """Seconds a stop may take; docker stop kills after 10 s, so all of it stays well under."""

    grace: float = 2.0  # once cancelled, a task may finish its goodbyes (close a websocket)
    insist: float = 1.5  # then it is cancelled again every INSIST_EVERY until this ran out too
    slow: float = 1.0  # a task (or a close) that took longer is logged by name
    close: float = 2.0  # each resource closed after the tasks (feeds, sessions)

    @property
    def tasks(self) -> float:
        return self.grace + self.insist


async def stop_tasks(tasks: Mapping[str, asyncio.Task[Any]], budget: StopBudget) -> list[str]:
    """Cancel every task and wait for all of them together; returns the names left running."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    took: dict[str, float] = {}

    def timed(name: str) -> Callable[[asyncio.Task[Any]], None]:
        def ended(_: asyncio.Task[Any]) -> None:
            took[name] = loop.time() - started

        return ended

    for name, task in tasks.items():
        task.add_done_callback(timed(name))
        task.cancel()
    pending = {task for task in tasks.values() if not task.done()}
    if pending:
        _, pending = await asyncio.wait(pending, timeout=budget.grace)
    deadline = started + budget.tasks
    while pending and loop.time() < deadline:
        for task in pending:
            task.cancel()  # a cancel swallowed once is not swallowed every time
        _, pending = await asyncio.wait(pending, timeout=min(INSIST_EVERY, deadline - loop.time()))
    left = [name for name, task in tasks.items() if not task.done()]
    for name, seconds in sorted(took.items(), key=lambda item: -item[1]):
        if seconds > budget.slow:
            log.warning("stopping: %s was slow to stop (%.1f s)", name, seconds)
    for name in left:
        log.error("stopping: %s did not stop within %.1f s; left behind", name, budget.tasks)
    for task in tasks.values():
        if task.done() and not task.cancelled():
            task.exception()  # retrieved: a service that had failed is not reported again at exit
    return left


async def close_within(name: str, closing: Coroutine[Any, Any, None], budget: StopBudget) -> bool:
    """Await one close (a feed, a session) for at most ``budget.close``; False if cut short."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    task = asyncio.ensure_future(closing)
    done, _ = await asyncio.wait({task}, timeout=budget.close)
    seconds = loop.time() - started
    if not done:
        task.cancel()
        log.error("stopping: closing %s took over %.1f s; cut short", name, budget.close)
        await asyncio.wait({task}, timeout=INSIST_EVERY)  # its cancel runs; ours is not swallowed
        return False
    if seconds > budget.slow:
        log.warning("stopping: closing %s was slow (%.1f s)", name, seconds)
    if not task.cancelled() and task.exception() is not None:
        log.warning("stopping: closing %s failed: %r", name, task.exception())
    return True


class DaemonThreadPool(ThreadPoolExecutor):
    """The event loop's executor for ``marketbot run``: a stop never waits on a blocking call.

    ``asyncio.to_thread`` runs Yahoo requests, feed fetches and commands on the loop's default
    executor. The standard one has non-daemon threads that ``asyncio.run`` and the interpreter
    join at exit, so a request to a Yahoo that stopped answering held the process up to the
    request timeout (10 s) after everything else had stopped. These threads are daemons and
    :meth:`shutdown` waits for calls in flight at most ``grace`` seconds, naming them if not:
    nobody is left to read their answers. (A ThreadPoolExecutor only because asyncio accepts
    nothing else as a default executor; none of its machinery runs.)
    """

    def __init__(self, max_workers: int | None = None, *, grace: float = 0.5) -> None:
        super().__init__(max_workers)  # sets attributes only; it starts no thread
        self.grace = grace
        self._calls: queue.SimpleQueue[_WorkItem | None] = queue.SimpleQueue()
        self._daemons: list[threading.Thread] = []
        self._idle_daemons = threading.Semaphore(0)
        self._guard = threading.Lock()
        self._refusing = False
        self._busy: dict[threading.Thread, str] = {}

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        future: Future[T] = Future()
        with self._guard:
            if self._refusing:
                raise RuntimeError("cannot schedule new calls after shutdown")
            call = functools.partial(fn, *args, **kwargs)
            self._calls.put(_WorkItem(future, call, _call_name(call)))
            idle = self._idle_daemons.acquire(blocking=False)
            if not idle and len(self._daemons) < self._max_workers:
                thread = threading.Thread(
                    target=self._serve, name=f"marketbot-worker-{len(self._daemons)}", daemon=True
                )
                self._daemons.append(thread)
                thread.start()
        return future

    def _serve(self) -> None:
        me = threading.current_thread()
        while (item := self._calls.get()) is not None:
            if item.future.set_running_or_notify_cancel():
                self._busy[me] = item.name
                try:
                    item.future.set_result(item.call())
                except BaseException as exc:  # handed to the awaiting coroutine, as the stdlib does
                    item.future.set_exception(exc)
                finally:
                    self._busy.pop(me, None)
            self._idle_daemons.release()

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._guard:
            self._refusing = True
            threads = list(self._daemons)
        if cancel_futures:
            while True:
                try:
                    item = self._calls.get_nowait()
                except queue.Empty:
                    break
                if item is not None:
                    item.future.cancel()
        for _ in threads:
            self._calls.put(None)
        if not wait:
            return
        deadline = time.monotonic() + self.grace
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        busy = sorted(self._busy.values())
        if busy:
            log.warning(
                "stopping: not waiting for %d blocking call(s) still running: %s",
                len(busy),
                ", ".join(busy),
            )


@dataclass(frozen=True)
class _WorkItem:
    future: Future[Any]
    call: functools.partial[Any]
    name: str


def _call_name(call: Callable[..., Any]) -> str:
    """The function a call runs: through asyncio.to_thread's ``partial(context.run, f, ...)``."""
    while isinstance(call, functools.partial):
        runs_in_context = isinstance(getattr(call.func, "__self__", None), contextvars.Context)
        call = call.args[0] if runs_in_context and call.args else call.func
    return str(getattr(call, "__qualname__", repr(call)))
