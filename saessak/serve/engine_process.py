"""The engine in its own process: what `saessak serve` runs by default.

In one process the HTTP side (uvicorn, JSON, one SSE event per token per request) and the engine
(a Python loop issuing about a hundred torch calls per decode step) share one interpreter lock. A
torch kernel releases it, but every call in between must take it back, and under load the event
loop holds it for its own work: on the 2-core machine of docs/BENCHMARKS.md the engine then decoded
at about half its own speed. So the server's engine lives in a child process (spawned, never
forked: the parent has threads), with its own interpreter and its own core; the HTTP process keeps
only the tokenizer (for the chat template) and never the weights. vLLM splits its server the
same way.

The two sides talk over one pipe. Parent to child: ("add", request_id, prompt_ids, params),
("abort", request_id), ("stop",). Child to parent: ("ready", limits) once the model is loaded, or
("error", message) instead; then per engine step ("out", outputs, running, waiting), where outputs
are RequestOutput fields as tuples; ("reject", request_id, message) for a request the engine refused
(a user error), ("fail", request_ids, message) when a step raised. `EngineProcess` has
`BatchingLoop`'s interface (start, stop, submit, cancel, queue_depth, running, engine.max_seq_len),
so the app serves either. If the child dies, every open request ends with an error, /health
answers 503 with the reason, and new requests get 503.
"""

from __future__ import annotations

import logging
import threading
import uuid
from dataclasses import dataclass

from saessak.serve.batching import Failure, Overloaded, Ticket, deliver

log = logging.getLogger("saessak.serve")


class EngineStopped(Exception):
    pass


@dataclass
class EngineLimits:
    """What the HTTP side needs to know of the engine in the child."""

    max_seq_len: int
    max_batch_size: int
    linear_kernel: str  # the engine's KernelChoice, described (saessak/model/kernels.py)


@dataclass
class EngineSpec:
    source: str  # a run or checkpoint folder (`saessak.serve.loading.load_served_model`'s path)
    name: str
    max_batch_size: int
    max_seq_len: int | None
    dtype: str | None  # "float32", "bfloat16" or None (as stored)
    threads: int


class EngineProcess:
    def __init__(self, spec: EngineSpec, max_queue: int = 64):
        self.spec = spec
        self.capacity = spec.max_batch_size + max_queue
        self.engine: EngineLimits | None = None
        self.error: str | None = None  # why the engine can serve no more
        self._lock = threading.Lock()  # guards the tickets, the open count and sends on the pipe
        self._tickets: dict[str, Ticket] = {}
        self._open = 0
        self._running = self._waiting = 0
        self._stopping = False
        self._conn = self._proc = self._reader = None

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self) -> None:
        """Spawn the child and wait until it has loaded the model; raises EngineStopped with the
        child's message when it could not."""
        import multiprocessing as mp

        ctx = mp.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_child_main, args=(child, self.spec), name="saessak-engine", daemon=True)
        self._proc.start()
        child.close()
        try:
            msg = self._conn.recv()
        except (EOFError, OSError):
            self._proc.join(timeout=10)
            raise EngineStopped(f"the engine process exited while loading the model (exit code "
                                f"{self._proc.exitcode})") from None
        if msg[0] == "error":
            self._proc.join(timeout=10)
            raise EngineStopped(msg[1])
        self.engine = msg[1]
        self._reader = threading.Thread(target=self._read, name="saessak-engine-reader", daemon=True)
        self._reader.start()

    def stop(self) -> None:
        self._stopping = True
        if self._proc is None:
            return
        with self._lock:
            self._send(("stop",))
        self._proc.join(timeout=10)
        if self._proc.is_alive():
            self._proc.terminate()
            self._proc.join(timeout=5)
        if self._reader is not None:
            self._reader.join(timeout=5)

    # -- called from the asyncio thread ------------------------------------------------------------
    def submit(self, prompt_ids: list[int], params, queue, loop) -> Ticket:
        with self._lock:
            if self.error:
                raise EngineStopped(self.error)
            if self._open >= self.capacity:
                raise Overloaded(f"the server is busy: {self._open} requests open (limit {self.capacity})")
            ticket = Ticket(request_id=uuid.uuid4().hex, queue=queue, loop=loop)
            self._tickets[ticket.request_id] = ticket
            self._open += 1
            self._send(("add", ticket.request_id, list(prompt_ids), params))
        return ticket

    def cancel(self, ticket: Ticket) -> None:
        if ticket.done:
            return
        with self._lock:
            if ticket.request_id in self._tickets:
                self._send(("abort", ticket.request_id))

    def queue_depth(self) -> int:
        return self._waiting

    def running(self) -> int:
        return self._running

    # -- the reader thread -------------------------------------------------------------------------
    def _send(self, msg) -> None:  # the caller holds the lock
        try:
            self._conn.send(msg)
        except (OSError, ValueError):  # the child is gone; the reader thread reports it
            pass

    def _finish(self, request_id: str, item, batch: list) -> None:  # the caller holds the lock
        ticket = self._tickets.pop(request_id, None)
        if ticket is None:
            return
        ticket.done = True
        self._open -= 1
        batch.append((ticket, item))

    def _read(self) -> None:
        from saessak.model.engine import RequestOutput

        while True:
            try:
                msg = self._conn.recv()
            except (EOFError, OSError):
                break
            batch: list[tuple[Ticket, object]] = []
            with self._lock:
                if msg[0] == "out":
                    for fields in msg[1]:
                        out = RequestOutput(*fields)
                        if out.finished:
                            self._finish(out.request_id, out, batch)
                        elif (ticket := self._tickets.get(out.request_id)) is not None:
                            batch.append((ticket, out))
                    self._running, self._waiting = msg[2], msg[3]
                elif msg[0] == "reject":
                    self._finish(msg[1], Failure(msg[1], msg[2], user_error=True), batch)
                elif msg[0] == "fail":
                    for rid in msg[1]:
                        self._finish(rid, Failure(rid, msg[2]), batch)
            deliver(batch)
        self._proc.join(timeout=5)
        batch = []
        with self._lock:
            if not self._stopping:
                self.error = f"the engine process stopped (exit code {self._proc.exitcode})"
                log.error("%s; open requests end with an error", self.error)
            for rid in list(self._tickets):
                self._finish(rid, Failure(rid, self.error or "the server is shutting down"), batch)
            self._running = self._waiting = 0
        deliver(batch)


# -- the child ---------------------------------------------------------------------------------------

def _child_main(conn, spec: EngineSpec) -> None:
    import signal

    # Ctrl-C reaches the whole process group: the parent shuts down and then stops this process.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    import torch

    from saessak.errors import UserError
    from saessak.model.engine import Engine
    from saessak.serve.loading import load_served_model

    torch.set_num_threads(spec.threads)
    try:
        served = load_served_model(spec.source, name=spec.name)
        engine = Engine(served.model, served.tokenizer, max_batch_size=spec.max_batch_size,
                        max_seq_len=spec.max_seq_len, dtype=getattr(torch, spec.dtype) if spec.dtype else None)
    except Exception as e:  # noqa: BLE001 - the parent reports it (/health), naming the path, never content
        conn.send(("error", f"{type(e).__name__}: {e}"))
        return
    engine.warm_up()
    conn.send(("ready", EngineLimits(engine.max_seq_len, engine.max_batch_size, engine.kernel.describe())))
    live: set[str] = set()

    def apply(msg) -> bool:
        if msg[0] == "add":
            _, rid, prompt_ids, params = msg
            try:
                engine.add_request(prompt_ids, params, request_id=rid)
            except UserError as e:
                conn.send(("reject", rid, str(e)))
                return True
            live.add(rid)
        elif msg[0] == "abort":
            if msg[1] in live:
                engine.abort(msg[1])  # frees the slot now; reported by the next step
        elif msg[0] == "stop":
            return False
        return True

    try:
        while True:
            if not engine.has_unfinished() and not apply(conn.recv()):  # idle: wait for work
                return
            while conn.poll():
                if not apply(conn.recv()):
                    return
            if not engine.has_unfinished():
                continue
            try:
                outputs = engine.step()
            except Exception as e:  # an engine bug must not hang every client: fail what is open
                logging.getLogger("saessak.serve").error("engine step failed: %s", type(e).__name__)
                for rid in live:
                    engine.abort(rid)
                try:
                    engine.step()  # drains the aborts
                except Exception:  # noqa: BLE001
                    pass
                conn.send(("fail", sorted(live), "internal error while generating"))
                live.clear()
                continue
            for o in outputs:
                if o.finished:
                    live.discard(o.request_id)
            conn.send(("out", [(o.request_id, o.new_token_ids, o.delta_text, o.finished, o.finish_reason,
                                o.num_prompt_tokens, o.num_generated_tokens) for o in outputs],
                       engine.num_running(), engine.num_waiting()))
    except (EOFError, OSError, BrokenPipeError):  # the parent is gone
        return
