"""The batching loop: one thread owns the Engine and steps it for every open request.

HTTP handlers (on the asyncio thread) never touch the engine: they `submit` requests and `cancel`
them through a command list that the loop applies between decode steps, so requests join and
leave the running batch at step boundaries (continuous batching) and an aborted request's slot is
free before the next step. Outputs go back to each request's asyncio.Queue through
`loop.call_soon_threadsafe`, once per step for all of that step's outputs (one wake-up of the
event loop per step, not one per token per request).

Admission is bounded: at most `max_batch_size + max_queue` requests may be open; beyond that
`submit` raises `Overloaded` (the API answers 429) instead of letting latency grow without limit.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import uuid
from dataclasses import dataclass, field

from saessak.model.engine import Engine, RequestOutput, SamplingParams

log = logging.getLogger("saessak.serve")


class Overloaded(Exception):
    pass


@dataclass
class Ticket:
    request_id: str
    queue: asyncio.Queue
    loop: asyncio.AbstractEventLoop
    done: bool = False


@dataclass
class Failure:
    """Put on a ticket's queue instead of a RequestOutput when the engine could not serve it."""

    request_id: str
    message: str
    user_error: bool = False


@dataclass
class _Commands:
    lock: threading.Lock = field(default_factory=threading.Lock)
    items: list = field(default_factory=list)


class BatchingLoop:
    def __init__(self, engine: Engine, max_queue: int = 64):
        self.engine = engine
        self.capacity = engine.max_batch_size + max_queue
        self._commands = _Commands()
        self._wake = threading.Event()
        self._stop = False
        self._tickets: dict[str, Ticket] = {}  # owned by the loop thread
        self._open = 0  # submitted and not yet finished (guarded by _commands.lock)
        self._thread = threading.Thread(target=self._run, name="saessak-batching", daemon=True)
        self.error: str | None = None  # set when the engine can serve no more (never, in a thread)

    # -- called from the asyncio thread ------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop = True
        self._wake.set()
        self._thread.join(timeout=10)

    def submit(self, prompt_ids: list[int], params: SamplingParams, queue: asyncio.Queue,
               loop: asyncio.AbstractEventLoop) -> Ticket:
        with self._commands.lock:
            if self._open >= self.capacity:
                raise Overloaded(f"the server is busy: {self._open} requests open (limit {self.capacity})")
            self._open += 1
            ticket = Ticket(request_id=uuid.uuid4().hex, queue=queue, loop=loop)
            self._commands.items.append(("add", ticket, prompt_ids, params))
        self._wake.set()
        return ticket

    def cancel(self, ticket: Ticket) -> None:
        if ticket.done:
            return
        with self._commands.lock:
            self._commands.items.append(("abort", ticket))
        self._wake.set()

    def queue_depth(self) -> int:
        """Requests accepted but not yet running (waiting for a slot)."""
        with self._commands.lock:
            pending = sum(1 for c in self._commands.items if c[0] == "add")
        return pending + self.engine.num_waiting()

    def running(self) -> int:
        return self.engine.num_running()

    # -- the loop thread ---------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop:
            self._apply_commands()
            if not self.engine.has_unfinished():
                self._wake.wait(timeout=1.0)
                self._wake.clear()
                continue
            try:
                outputs = self.engine.step()
            except Exception as e:  # an engine bug must not hang every client: fail what is open
                log.error("engine step failed: %s", type(e).__name__)
                self._fail_all("internal error while generating")
                continue
            batch: list[tuple[Ticket, object]] = []
            for out in outputs:
                self._deliver(out, batch)
            self._flush(batch)

    def _apply_commands(self) -> None:
        from saessak.errors import UserError

        with self._commands.lock:
            items, self._commands.items = self._commands.items, []
        failed: list[tuple[Ticket, object]] = []
        for item in items:
            if item[0] == "add":
                _, ticket, prompt_ids, params = item
                try:
                    self.engine.add_request(prompt_ids, params, request_id=ticket.request_id)
                except UserError as e:
                    self._finish(ticket, Failure(ticket.request_id, str(e), user_error=True), failed)
                    continue
                self._tickets[ticket.request_id] = ticket
            else:
                ticket = item[1]
                if ticket.request_id in self._tickets:
                    self.engine.abort(ticket.request_id)  # frees the slot now; reported next step
        self._flush(failed)

    def _deliver(self, out: RequestOutput, batch: list) -> None:
        ticket = self._tickets.get(out.request_id)
        if ticket is None:
            return
        if out.finished:
            del self._tickets[out.request_id]
            self._finish(ticket, out, batch)
        else:
            batch.append((ticket, out))

    def _finish(self, ticket: Ticket, item, batch: list) -> None:
        ticket.done = True
        with self._commands.lock:
            self._open -= 1
        batch.append((ticket, item))

    @staticmethod
    def _flush(batch: list[tuple[Ticket, object]]) -> None:
        deliver(batch)

    def _fail_all(self, message: str) -> None:
        failed: list[tuple[Ticket, object]] = []
        for rid, ticket in list(self._tickets.items()):
            self.engine.abort(rid)
            self._finish(ticket, Failure(rid, message), failed)
        self._tickets.clear()
        self._flush(failed)
        self.engine.step()  # drains the aborts


def deliver(batch: list[tuple[Ticket, object]]) -> None:
    """Hand a step's outputs to their event loops: one call per loop, in engine order."""
    by_loop: dict[asyncio.AbstractEventLoop, list] = {}
    for ticket, item in batch:
        by_loop.setdefault(ticket.loop, []).append((ticket.queue, item))
    for loop, items in by_loop.items():
        try:
            loop.call_soon_threadsafe(_put_all, items)
        except RuntimeError:  # the client's event loop is gone (server shutting down)
            pass


def _put_all(items: list[tuple[asyncio.Queue, object]]) -> None:
    for queue, item in items:
        queue.put_nowait(item)
