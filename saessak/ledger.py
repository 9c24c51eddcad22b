"""The cost ledger: what every stage attempt spent (recorded while it runs) and what that cost (priced on reading).

Recording: every stage run is an *attempt*. `StageTimer` writes the attempt's record when it
starts (`RUN/ledger/<attempt>.json`, status `running`) and rewrites it atomically every heartbeat
(`SAESSAK_HEARTBEAT_S` seconds, default 30; 0 turns the heartbeat off) with the wall and CPU time,
tokens and FLOPs so far, so a `kill -9` loses at most one interval. When the attempt ends it writes
its status (`done`; `failed` with the error class; `interrupted` on Ctrl-C or SIGTERM) to that file
and then appends the same record to `RUN/ledger.jsonl`, the append-only log older readers know.
Records hold raw measured facts only: wall and CPU time, the device (CPU model and vendor/family
numbers, or GPU type and count), the stage's own counts. Nothing is estimated after the fact, and
no record holds money.

Reading (`read_ledger`): the lines of ledger.jsonl (run folders from before attempts have only
these, all finished), plus every attempt file with no line there. Such an attempt is `running`
while its process lives (same host: pid and process start time; another host: a heartbeat younger
than STALE_BEATS intervals), else `killed`, measured up to its last heartbeat.

Pricing: a reader (the report, the model card, the bill) turns records into energy and money with a
price table (`saessak/prices.toml`, or a user file that overrides some of its keys), choosing the
row by the recorded device (`PriceTable.cpu_row`, `PriceTable.gpu_row`):

    device-hours = wall_s / 3600 x (vCPUs used | GPUs used)
    rental cost  = device-hours x hourly price           (what a cloud bill would say)
    energy kWh   = device-hours x device watts / 1000 x PUE   (nameplate power: an upper bound)
    power cost   = energy kWh x electricity price         (what running your own box would cost)
    teacher cost = prompt tokens x USD/M in + completion tokens x USD/M out, for a record with a
                   `teacher` (`saessak distill`): the price it was given, else the [teacher.NAME] row
                   whose `match` is in the model name; added to the rental cost

Every price must be present and non-negative; a bad table is a UserError naming the key. The
project's bill (`project_costs`) is the same pricing over every run folder under a directory.
"""

from __future__ import annotations

import copy
import datetime as _dt
import json
import math
import os
import platform
import re
import secrets
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

from saessak import __version__
from saessak.errors import UserError
from saessak.io import append_jsonl, fmt, md_table, pct, read_json_or_none, write_json
from saessak.runfolder import MODEL_STAGES, RunFolder, stage_name

# ----------------------------------------------------------------------------- recording

HEARTBEAT_ENV = "SAESSAK_HEARTBEAT_S"
DEFAULT_HEARTBEAT_S = 30.0
# An attempt on another host whose heartbeat is older than this many intervals (plus the slack,
# for clocks and a loaded machine) is read as killed; on this host the process itself is checked.
STALE_BEATS = 3
STALE_SLACK_S = 10.0
ATTEMPTS_DIR = "ledger"  # RUN/ledger/<attempt>.json
STATUSES = ("running", "done", "failed", "interrupted", "killed")
FAILED_STATUSES = ("failed", "interrupted", "killed")
# The stages that build a run's model: its headline cost (`headline_attempts`). `distill` (the
# teacher's traces the student is fine-tuned on) is part of what the model cost.
HEADLINE_STAGES = ("data", "tokenizer", "distill", *MODEL_STAGES)


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived during a stage attempt: it ends like Ctrl-C, recorded as `interrupted`."""


def _terminated(signum, frame):
    raise Terminated(f"signal {signum} (SIGTERM)")


def heartbeat_interval() -> float:
    """Seconds between heartbeats: $SAESSAK_HEARTBEAT_S, default 30; 0 turns the heartbeat off."""
    text = os.environ.get(HEARTBEAT_ENV, "").strip()
    if not text:
        return DEFAULT_HEARTBEAT_S
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not math.isfinite(value) or value < 0:
        raise UserError(f"{HEARTBEAT_ENV}={text!r}: give the seconds between ledger heartbeats "
                        "(a number >= 0; 0 turns the heartbeat off)")
    return value


def cpu_info(text: str | None = None) -> dict[str, Any]:
    """The CPU as /proc/cpuinfo (or `text` in its format) describes its first processor: model name,
    vendor id, x86 family and model numbers (what chooses the price row when the name hides the
    generation, as in "AMD EPYC")."""
    if text is None:
        try:
            text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
        except OSError:
            text = ""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if fields:
                break
            continue
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    info: dict[str, Any] = {"cpu": fields.get("model name") or platform.processor() or platform.machine()}
    if fields.get("vendor_id"):
        info["cpu_vendor"] = fields["vendor_id"]
    for key, name in (("cpu family", "cpu_family"), ("model", "cpu_model_number")):
        if fields.get(key, "").isdigit():
            info[name] = int(fields[key])
    return info


def cpu_model() -> str:
    return str(cpu_info()["cpu"])


def _cores() -> int | None:
    try:
        return len(os.sched_getaffinity(0))  # what this process may run on (taskset, cgroups)
    except (AttributeError, OSError):
        return os.cpu_count()


def describe_device(device: str = "cpu") -> dict[str, Any]:
    """What the stage ran on: CPU model (vendor, family, model numbers) and cores, or GPU name and count."""
    info: dict[str, Any] = {"type": "cpu", **cpu_info(), "cpu_cores": _cores()}
    if str(device).startswith("cuda"):
        import torch

        n = torch.cuda.device_count()
        info.update(type="cuda", gpu=torch.cuda.get_device_name(0) if n else None, gpu_count=n)
        world = int(os.environ.get("WORLD_SIZE", "1"))
        info["gpu_count"] = max(1, world) if n else 0
    else:
        info["processes"] = int(os.environ.get("WORLD_SIZE", "1"))
    return info


def peak_memory_bytes(device: str = "cpu") -> int:
    """This process's peak memory: allocated on its CUDA device, else the peak resident set size."""
    if str(device).startswith("cuda"):
        import torch

        return int(torch.cuda.max_memory_allocated(torch.device(device)))
    import resource

    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024  # Linux reports KiB


def git_commit() -> str | None:
    """The code's commit, with "+dirty" when tracked files under saessak/ differ from it (the figures
    then come from code that commit does not hold); None outside a git checkout."""
    root = Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], check=False, capture_output=True, text=True, timeout=5
        )
        commit = out.stdout.strip() if out.returncode == 0 else ""
        if not commit:
            return None
        dirty = subprocess.run(["git", "-C", str(root), "diff", "--quiet", "HEAD", "--", "saessak"],
                               check=False, capture_output=True, timeout=5).returncode == 1
        return commit + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def now_iso() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def _iso(t: float) -> str:
    return _dt.datetime.fromtimestamp(t, _dt.UTC).isoformat(timespec="milliseconds")


def epoch(text: Any) -> float | None:
    """Seconds since 1970 of an ISO 8601 time (UTC when it names no zone), or None."""
    if not isinstance(text, str):
        return None
    try:
        d = _dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    return (d if d.tzinfo else d.replace(tzinfo=_dt.UTC)).timestamp()


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state, start time in clock ticks after boot) of a process, from /proc; None if it is not there."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    rest = text[text.rfind(")") + 2:].split()  # the name in parentheses may hold spaces
    return rest[0], int(rest[19])  # fields 3 (state) and 22 (starttime)


def process_alive(pid: int, proc_start: int | None) -> bool | None:
    """Whether process `pid` (started at `proc_start` ticks, so a reused pid is not mistaken for it)
    still runs on this host; None when this system cannot tell."""
    if not Path("/proc/self/stat").exists():
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except OSError:
            return None
        return True
    stat = _proc_stat(pid)
    if stat is None or stat[0] in ("Z", "X"):  # gone, or a zombie no one has reaped yet
        return False
    return proc_start is None or stat[1] == proc_start


_from_process_start = False


def count_from_process_start() -> None:
    """The next attempt in this process counts from the process's start: the interpreter start-up
    and imports are spent for it too. The CLI calls this when it is the process's entry point."""
    global _from_process_start
    _from_process_start = True


def _process_age_s() -> float | None:
    stat = _proc_stat(os.getpid())
    try:
        age = time.clock_gettime(time.CLOCK_BOOTTIME) - stat[1] / os.sysconf("SC_CLK_TCK") if stat else None
    except (AttributeError, OSError, ValueError):
        return None
    return age if age is not None and 0.0 <= age < 86400.0 else None


class StageTimer:
    """One attempt at a stage: its ledger record, written at start, kept current, closed on exit.

    Usage:
        with StageTimer(run_dir, "pretrain", device="cpu") as timer:   # record written: running
            ... work ...; timer.progress(tokens=..., flops=...)         # carried by the heartbeat
            timer.finish(tokens=..., flops=..., params=...)             # status done
        # an exception ends it `failed` (error class), Ctrl-C / SIGTERM `interrupted`

    Only rank 0 writes. `facts` are known at the start (what is evaluated, exported, ...).
    """

    def __init__(self, run_dir: str | os.PathLike, stage: str, device: str = "cpu", *,
                 facts: dict[str, Any] | None = None, heartbeat_s: float | None = None):
        global _from_process_start
        self.run_dir = Path(run_dir)
        self.stage = stage
        self.device = device
        self.enabled = int(os.environ.get("RANK", "0")) == 0
        self.heartbeat_s = heartbeat_interval() if heartbeat_s is None else float(heartbeat_s)
        age = _process_age_s() if _from_process_start else None
        _from_process_start = False
        now = time.time()
        self._t0 = time.perf_counter() - (age or 0.0)
        self._c0 = 0.0 if age is not None else time.process_time()
        self.start_time = _iso(now - (age or 0.0))
        self.attempt = f"{stage}-{time.strftime('%Y%m%dT%H%M%S', time.gmtime(now))}-{os.getpid()}-{secrets.token_hex(2)}"
        self.path = self.run_dir / ATTEMPTS_DIR / f"{self.attempt}.json"
        stat = _proc_stat(os.getpid())
        self._base = {
            "counted_from": "process start" if age is not None else "attempt start",
            "heartbeat_s": self.heartbeat_s,
            "device": describe_device(device),
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "proc_start": stat[1] if stat else None,
            "command": shlex.join(sys.argv),
            "saessak_version": __version__,
            "git_commit": git_commit(),
        }
        self._facts: dict[str, Any] = dict(facts or {})
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._sigterm = False
        self._warned = False
        self._beats = 0  # heartbeats written so far
        self.record: dict[str, Any] | None = None
        self.ended = False
        if self.enabled:
            # SIGTERM is caught before the start record exists: once a reader can see the attempt, a
            # SIGTERM ends it as `interrupted`, never as a record left `running` (read as killed).
            self._catch_sigterm()
            try:
                self._write(self._snapshot("running"))
            except BaseException:
                self._release_sigterm()
                raise
            try:
                if self.heartbeat_s > 0:
                    self._thread = threading.Thread(target=self._beat, name=f"saessak-ledger-{stage}", daemon=True)
                    self._thread.start()
            except BaseException as e:  # a SIGTERM here, after the start record: still end it as interrupted
                self.fail(e)
                raise

    # --- while it runs
    def progress(self, **facts: Any) -> None:
        """Facts so far (tokens, flops, steps, ...): the next heartbeat writes them."""
        with self._lock:
            self._facts.update(facts)

    def _snapshot(self, status: str) -> dict[str, Any]:
        wall = time.perf_counter() - self._t0
        cpu = time.process_time() - self._c0
        now = time.time()
        record: dict[str, Any] = {
            "stage": self.stage, "attempt": self.attempt, "status": status, "start": self.start_time,
            "end": None if status == "running" else _iso(now), "heartbeat": _iso(now),
            "wall_s": round(wall, 3), "cpu_s": round(cpu, 3), "beats": self._beats, **self._base,
        }
        with self._lock:
            record.update(self._facts)
        return record

    def _write(self, record: dict[str, Any]) -> None:
        write_json(self.path, record)

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            self._beats += 1
            try:
                self._write(self._snapshot("running"))
            except OSError as e:  # a full disk must not stop the stage; say so once
                self._warn(f"heartbeat not written ({e})")

    def _warn(self, text: str) -> None:
        if not self._warned:
            print(f"saessak: warning: ledger {self.path}: {text}", file=sys.stderr)
            self._warned = True

    def _catch_sigterm(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        try:
            if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
                signal.signal(signal.SIGTERM, _terminated)
                self._sigterm = True
        except (ValueError, OSError):
            pass

    def _release_sigterm(self) -> None:
        if self._sigterm and threading.current_thread() is threading.main_thread():
            if signal.getsignal(signal.SIGTERM) is _terminated:
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
            self._sigterm = False

    # --- the end
    def finish(self, **facts: Any) -> dict[str, Any]:
        """The attempt succeeded: status done, with the stage's final facts."""
        return self._end("done", facts)

    def fail(self, error: BaseException) -> dict[str, Any]:
        """The attempt ended by `error`: interrupted (Ctrl-C, SIGTERM) or failed (its class is kept)."""
        status = "interrupted" if isinstance(error, KeyboardInterrupt) else "failed"
        try:
            return self._end(status, {}, error)
        except OSError as e:  # never hide the error that ended the stage behind one of ours
            self._warn(f"final record not written ({e})")
            return self.record or {}

    def _end(self, status: str, facts: dict[str, Any], error: BaseException | None = None) -> dict[str, Any]:
        if self.ended:
            return self.record or {}
        self.ended = True
        self._stop.set()
        if self._thread is not None:
            try:
                self._thread.join()
            except RuntimeError:
                # A SIGTERM inside Thread.start(): the heartbeat thread never started, or starts now,
                # sees the stop set and writes nothing; the attempt still ends as interrupted.
                pass
        self.progress(**facts)
        record = self._snapshot(status)
        if error is not None:
            record["error"] = type(error).__name__
            message = " ".join(str(error).split())
            if message:
                record["error_message"] = message[:500]
        self.record = record
        try:
            if self.enabled:
                # The attempt file first: a kill between the two writes still leaves the final record.
                self._write(record)
                append_jsonl(self.run_dir / "ledger.jsonl", record)
        finally:
            self._release_sigterm()
        return record

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc is not None:
            self.fail(exc)
        elif not self.ended:
            self.finish()


# ----------------------------------------------------------------------------- reading

_NUMBERS = ("wall_s", "cpu_s", "tokens", "flops")


def _record_problem(rec: Any) -> str | None:
    """Why a ledger record cannot be priced, or None."""
    if not isinstance(rec, dict):
        return "not a JSON object"
    if not isinstance(rec.get("stage"), str) or not rec["stage"]:
        return "no 'stage' name"
    for key in _NUMBERS:
        v = rec.get(key)
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0):
            return f"'{key}' is {v!r}, not a number >= 0"
    if rec.get("device") is not None and not isinstance(rec["device"], dict):
        return f"'device' is {rec['device']!r}, not an object"
    if rec.get("status") is not None and rec["status"] not in STATUSES:
        return f"'status' is {rec['status']!r}, not one of {', '.join(STATUSES)}"
    return None


def attempt_status(rec: dict[str, Any], now: float | None = None) -> str:
    """done, failed, interrupted, running or killed: a `running` record whose process is gone was killed."""
    status = rec.get("status") or "done"  # a line without status was written when its stage finished
    if status != "running":
        return status
    if rec.get("host") == socket.gethostname() and isinstance(rec.get("pid"), int):
        alive = process_alive(rec["pid"], rec.get("proc_start"))
        if alive is not None:
            return "running" if alive else "killed"
    beat = rec.get("heartbeat_s") or 0
    last = epoch(rec.get("heartbeat")) or epoch(rec.get("start"))
    if beat and last is not None and (now or time.time()) - last > STALE_BEATS * beat + STALE_SLACK_S:
        return "killed"
    return "running"


def read_ledger(run_dir: str | os.PathLike, problems: list[str] | None = None,
                now: float | None = None) -> list[dict[str, Any]]:
    """Every attempt of a run, in start order, with its status read (see `attempt_status`).

    A line or file that cannot be read (a torn last line after a kill mid-append, a hand edit) is
    skipped and described in `problems`; the attempt a torn line belonged to is still read from its
    attempt file.
    """
    root = Path(run_dir)
    notes = problems if problems is not None else []
    lines: list[dict[str, Any]] = []
    path = root / "ledger.jsonl"
    if path.is_file():
        for lineno, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                notes.append(f"{path}:{lineno}: not valid JSON ({e.msg}); line skipped")
                continue
            bad = _record_problem(rec)
            if bad:
                notes.append(f"{path}:{lineno}: {bad}; line skipped")
                continue
            lines.append(dict(rec))
    finished = {rec.get("attempt") for rec in lines if rec.get("attempt")}
    attempts = []
    folder = root / ATTEMPTS_DIR
    if folder.is_dir():
        for f in sorted(folder.glob("*.json")):
            rec = read_json_or_none(f)
            bad = "not valid JSON" if rec is None else _record_problem(rec)
            if bad:
                notes.append(f"{f}: {bad}; file skipped")
            elif rec.get("attempt") not in finished:
                attempts.append(rec)
    records = _in_start_order(lines + attempts)
    for rec in records:
        status = attempt_status(rec, now)
        if status == "killed":
            rec["recorded_status"] = rec.get("status")
            rec["measured_until"] = rec.get("heartbeat")
            lost = (f"the time after the last heartbeat ({rec.get('heartbeat')}), at most "
                    f"{fmt(float(rec.get('heartbeat_s') or 0))} s" if rec.get("heartbeat_s")
                    else "the time after the start record (the heartbeat was off)")
            rec["unmeasured"] = "; ".join(x for x in (rec.get("unmeasured"), lost) if x)
        rec["status"] = status
    return records


def _in_start_order(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Stable sort by start time; a record without one (older ledgers) keeps its place after the one before it."""
    keyed, last = [], float("-inf")
    for i, rec in enumerate(records):
        t = epoch(rec.get("start"))
        last = t if t is not None else last
        keyed.append((last, i, rec))
    return [rec for _, _, rec in sorted(keyed, key=lambda k: (k[0], k[1]))]


# ----------------------------------------------------------------------------- pricing

DEFAULT_PRICES = Path(__file__).with_name("prices.toml")
# The row the single [cpu] table of older price files described (AWS m7i.large): a user file's
# flat [cpu] keys are laid over it, and that one row then prices every CPU record.
LEGACY_CPU_ROW = "intel_sapphire_rapids"
_CPU_FLAT_KEYS = ("name", "usd_per_hour", "vcpus", "watts", "price_source", "watts_source")
_CPU_NUMBERS = ["usd_per_hour", "vcpus", "watts"]
_GPU_NUMBERS = ["usd_per_hour", "watts", "peak_bf16_tflops"]
_TEACHER_NUMBERS = ["usd_per_mtok_in", "usd_per_mtok_out"]
_REQUIRED_NUMBERS = [("currency", "usd_to_krw"), ("electricity", "krw_per_kwh"), ("electricity", "pue")]
# Names that tell the vendor when the record has no vendor id (older records).
_VENDOR_NAMES = {"amd": r"\bAMD\b|EPYC|Ryzen|Threadripper|Opteron", "intel": r"\bIntel\b|Xeon|Core\(TM\)"}
_VENDOR_IDS = {"AuthenticAMD": "amd", "GenuineIntel": "intel"}


def cpu_vendor(device: dict[str, Any]) -> str | None:
    """"amd", "intel" or None, from the recorded vendor id, else from the model name."""
    if device.get("cpu_vendor") in _VENDOR_IDS:
        return _VENDOR_IDS[device["cpu_vendor"]]
    name = str(device.get("cpu") or "")
    return next((v for v, pattern in _VENDOR_NAMES.items() if re.search(pattern, name, re.IGNORECASE)), None)


@dataclass
class PriceTable:
    data: dict[str, Any]
    source: str  # the file(s) the numbers came from

    @property
    def usd_to_krw(self) -> float:
        return float(self.data["currency"]["usd_to_krw"])

    @property
    def pue(self) -> float:
        return float(self.data["electricity"]["pue"])

    @property
    def krw_per_kwh(self) -> float:
        return float(self.data["electricity"]["krw_per_kwh"])

    def cpu_rows(self) -> dict[str, dict[str, Any]]:
        """The [cpu.NAME] rows, in the order they are tried."""
        return {k: v for k, v in self.data["cpu"].items() if isinstance(v, dict)}

    def legacy_cpu(self) -> dict[str, Any] | None:
        """A price file's flat [cpu] table (the older layout) over the row it described, or None."""
        flat = {k: v for k, v in self.data["cpu"].items() if not isinstance(v, dict)}
        if not flat:
            return None
        return {**self.cpu_rows().get(LEGACY_CPU_ROW, {}), **flat, "match": [], "x86": []}

    def cpu_row(self, device: dict[str, Any]) -> tuple[str, dict[str, Any], str | None]:
        """(row key, row, note) for a CPU record: the row whose `match` (regular expressions on the
        model name) or `x86` ([vendor family, first model, last model]) fits the recorded CPU; else
        the first row of the same vendor, else the first row, with a note saying so."""
        legacy = self.legacy_cpu()
        if legacy is not None:
            return "cpu", legacy, None
        rows = self.cpu_rows()
        name = str(device.get("cpu") or "")
        vendor = cpu_vendor(device)
        for key, row in rows.items():
            if _cpu_fits(row, device, vendor):
                return key, row, None
        key = next((k for k, row in rows.items() if vendor and row.get("vendor") == vendor), next(iter(rows)))
        row = rows[key]
        described = f"'{name}'" if name else "an unrecorded CPU"
        if device.get("cpu_family") is not None:
            described += f" ({device.get('cpu_vendor')}, family {device['cpu_family']}, model {device.get('cpu_model_number')})"
        why = f"same vendor ({vendor})" if vendor and row.get("vendor") == vendor else "vendor unknown, first row"
        return key, row, f"priced as {row.get('name', key)}, the nearest row: no [cpu.*] row matches {described}; {why}"

    def teacher_row(self, model: str | None) -> tuple[str, dict[str, Any]] | None:
        """The [teacher.X] row (USD per million tokens) whose `match` substrings occur in the model
        name, or None."""
        name = (model or "").lower()
        for key, row in self.data.get("teacher", {}).items():
            if any(str(p).lower() in name for p in row.get("match", [key])):
                return key, row
        return None

    def gpu_row(self, gpu_name: str | None) -> tuple[str, dict[str, Any]]:
        """The [gpu.X] row whose `match` substrings occur in the CUDA device name."""
        name = (gpu_name or "").upper()
        for key, row in self.data.get("gpu", {}).items():
            for pattern in row.get("match", [key]):
                if str(pattern).upper() in name:
                    return key, row
        known = ", ".join(sorted(self.data.get("gpu", {})))
        raise UserError(
            f"price table {self.source}: no [gpu.*] row matches device {gpu_name!r} (known: {known}); "
            "add one with `match`, `usd_per_hour`, `watts`, `peak_bf16_tflops` and pass --prices FILE"
        )


def _cpu_fits(row: dict[str, Any], device: dict[str, Any], vendor: str | None) -> bool:
    name = str(device.get("cpu") or "")
    if any(re.search(p, name, re.IGNORECASE) for p in row.get("match", [])):
        return True
    family, model = device.get("cpu_family"), device.get("cpu_model_number")
    return vendor is not None and vendor == row.get("vendor") and isinstance(model, int) and any(
        family == f and lo <= model <= hi for f, lo, hi in row.get("x86", []))


def _merge(base: dict, override: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in override.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out


def _read_toml(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise UserError(f"{path}: price table not found") from None
    except IsADirectoryError:
        raise UserError(f"{path}: is a folder, not a TOML price table") from None
    except tomllib.TOMLDecodeError as e:
        raise UserError(f"{path}: not a valid TOML price table ({e})") from None


def _check_number(source: str, key: str, value: Any) -> None:
    if value is None:
        raise UserError(f"price table {source}: missing price '{key}'")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise UserError(f"price table {source}: '{key}' must be a number, got {value!r}")
    if value < 0:
        raise UserError(f"price table {source}: '{key}' is negative ({value}); prices must be >= 0")


def _check_cpu_row(source: str, key: str, row: dict[str, Any]) -> None:
    for name in _CPU_NUMBERS:
        _check_number(source, f"{key}.{name}", row.get(name))
    if row["vcpus"] == 0:
        raise UserError(f"price table {source}: '{key}.vcpus' must be > 0")
    match = row.get("match", [])
    if not isinstance(match, list) or not all(isinstance(p, str) for p in match):
        raise UserError(f"price table {source}: '{key}.match' must be a list of regular expressions, got {match!r}")
    for p in match:
        try:
            re.compile(p)
        except re.error as e:
            raise UserError(f"price table {source}: '{key}.match' holds {p!r}, not a regular expression ({e})") from None
    x86 = row.get("x86", [])
    if not isinstance(x86, list) or not all(
            isinstance(t, list) and len(t) == 3 and all(isinstance(n, int) and not isinstance(n, bool) for n in t)
            for t in x86):
        raise UserError(f"price table {source}: '{key}.x86' must be a list of [family, first model, last model], "
                        f"got {x86!r}")
    if row.get("vendor") is not None and row["vendor"] not in _VENDOR_NAMES:
        raise UserError(f"price table {source}: '{key}.vendor' is {row['vendor']!r}, not one of "
                        f"{', '.join(_VENDOR_NAMES)}")


def validate_prices(data: dict, source: str) -> None:
    for section, key in _REQUIRED_NUMBERS:
        sec = data.get(section)
        _check_number(source, f"{section}.{key}", sec.get(key) if isinstance(sec, dict) else None)
    cpu = data.get("cpu")
    if not isinstance(cpu, dict):
        raise UserError(f"price table {source}: 'cpu' must be a table of [cpu.NAME] rows")
    for key, value in cpu.items():
        if isinstance(value, dict):
            _check_cpu_row(source, f"cpu.{key}", value)
        elif key not in _CPU_FLAT_KEYS:
            raise UserError(f"price table {source}: 'cpu.{key}' is not a price key (a CPU row is a [cpu.NAME] table; "
                            f"a flat [cpu] table may set {', '.join(_CPU_FLAT_KEYS)})")
    table = PriceTable(data, source)
    legacy = table.legacy_cpu()
    if legacy is not None:
        _check_cpu_row(source, "cpu", legacy)
    elif not table.cpu_rows():
        raise UserError(f"price table {source}: no [cpu.NAME] row")
    gpus = data.get("gpu", {})
    if not isinstance(gpus, dict):
        raise UserError(f"price table {source}: 'gpu' must be a table of [gpu.NAME] rows")
    for name, row in gpus.items():
        if not isinstance(row, dict):
            raise UserError(f"price table {source}: 'gpu.{name}' must be a table")
        for key in _GPU_NUMBERS:
            _check_number(source, f"gpu.{name}.{key}", row.get(key))
    teachers = data.get("teacher", {})
    if not isinstance(teachers, dict) or not all(isinstance(r, dict) for r in teachers.values()):
        raise UserError(f"price table {source}: 'teacher' must be a table of [teacher.NAME] rows")
    for name, row in teachers.items():
        for key in _TEACHER_NUMBERS:
            _check_number(source, f"teacher.{name}.{key}", row.get(key))


def load_prices(override: str | os.PathLike | None = None) -> PriceTable:
    """The shipped table, with `override` (a TOML file of the same layout) merged on top. CPU rows the
    override adds are tried before the shipped ones."""
    shipped = _read_toml(DEFAULT_PRICES)
    data, source = shipped, str(DEFAULT_PRICES.name)
    if override is not None:
        path = Path(override)
        user = _read_toml(path)
        data = _merge(shipped, user)
        user_cpu = user.get("cpu") if isinstance(user.get("cpu"), dict) else {}
        if isinstance(data.get("cpu"), dict):
            added = [k for k, v in user_cpu.items() if isinstance(v, dict) and k not in shipped.get("cpu", {})]
            data["cpu"] = {**{k: data["cpu"][k] for k in added}, **data["cpu"]}
        source = f"{path} (over {source})"
    validate_prices(data, source)
    return PriceTable(data, source)


def record_cost(record: dict[str, Any], prices: PriceTable) -> dict[str, Any]:
    """Energy and money for one ledger record, with the figures used (so a reader can redo it)."""
    wall_h = float(record.get("wall_s") or 0.0) / 3600.0
    device = record.get("device") or {}
    note = None
    if device.get("type") == "cuda":
        key, row = prices.gpu_row(device.get("gpu"))
        units = max(1, int(device.get("gpu_count") or 1))
        unit_name = f"GPU ({key})"
        usd_per_unit_hour = float(row["usd_per_hour"])
        watts_per_unit = float(row["watts"])
        row_key = f"gpu.{key}"
    else:
        key, row, note = prices.cpu_row(device)
        units = max(1, int(device.get("cpu_cores") or row["vcpus"]))
        unit_name = "vCPU"
        usd_per_unit_hour = float(row["usd_per_hour"]) / float(row["vcpus"])
        watts_per_unit = float(row["watts"]) / float(row["vcpus"])
        row_key = key if key == "cpu" else f"cpu.{key}"
    device_hours = wall_h * units
    teacher = teacher_cost(record, prices)
    usd = device_hours * usd_per_unit_hour + teacher["teacher_usd"]
    kwh = device_hours * watts_per_unit / 1000.0 * prices.pue
    return {
        "device_hours": device_hours,
        "unit": unit_name,
        "units": units,
        "usd_per_unit_hour": usd_per_unit_hour,
        "watts": watts_per_unit * units,
        "watts_source": row.get("watts_source", ""),
        "price_source": row.get("price_source", ""),
        "price_row": row_key,
        "priced_as": row.get("name", key),
        "price_note": "; ".join(n for n in (note, teacher.pop("teacher_note")) if n) or None,
        **teacher,
        "energy_kwh": kwh,
        "cost_usd": usd,
        "cost_krw": usd * prices.usd_to_krw,
        "power_cost_krw": kwh * prices.krw_per_kwh,
    }


def teacher_cost(record: dict[str, Any], prices: PriceTable) -> dict[str, Any]:
    """The money a record's teacher tokens cost (`saessak distill`), with the price used; zero for
    any other record. Not priced (and said so) when neither the record nor the table has a price."""
    t = record.get("teacher")
    if not isinstance(t, dict):
        return {"teacher_usd": 0.0, "teacher_note": None}
    tokens_in, tokens_out = _num(t.get("prompt_tokens")), _num(t.get("completion_tokens"))
    if t.get("usd_per_mtok_in") is not None and t.get("usd_per_mtok_out") is not None:
        rates, source = (_num(t["usd_per_mtok_in"]), _num(t["usd_per_mtok_out"])), str(t.get("price_source") or "record")
    else:
        found = prices.teacher_row(t.get("model"))
        if found is None:
            return {"teacher_usd": 0.0, "teacher_price": None,
                    "teacher_note": f"teacher tokens of '{t.get('model')}' not priced (no --teacher-price-per-mtok, "
                                    "no [teacher.*] row matches)"}
        key, row = found
        rates, source = (float(row["usd_per_mtok_in"]), float(row["usd_per_mtok_out"])), f"teacher.{key}"
    usd = (tokens_in * rates[0] + tokens_out * rates[1]) / 1e6
    return {"teacher_usd": usd, "teacher_price": {"usd_per_mtok_in": rates[0], "usd_per_mtok_out": rates[1],
                                                  "source": source}, "teacher_note": None}


# ----------------------------------------------------------------------------- sums

SUM_KEYS = ["wall_s", "cpu_s", "tokens", "flops", "device_hours", "energy_kwh", "cost_usd", "cost_krw", "power_cost_krw",
            "teacher_usd"]


def _num(x: Any) -> float:
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) else 0.0


def sum_rows(rows: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """The SUM_KEYS summed over priced records, with the attempt count and the count per status."""
    out: dict[str, Any] = {k: 0.0 for k in SUM_KEYS} | {"attempts": 0, "statuses": {}}
    for row in rows:
        out["attempts"] += 1
        status = row.get("status") or "done"
        out["statuses"][status] = out["statuses"].get(status, 0) + 1
        for k in SUM_KEYS:
            out[k] += _num(row.get(k))
    return out


def headline_attempts(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The attempts that built the run's model: for each of HEADLINE_STAGES, its last `done` attempt
    and the attempts that one resumed from (back to the attempt that started fresh). Failed tries,
    stages redone from scratch, evaluations, reports and exports are the rest of the bill."""
    chosen = []
    for stage in HEADLINE_STAGES:
        mine = [r for r in rows if stage_name(str(r.get("stage"))) == stage]
        done = [i for i, r in enumerate(mine) if (r.get("status") or "done") == "done"]
        if not done:
            continue
        i = done[-1]
        chain = [mine[i]]
        while chain[-1].get("resumed_from_step") and i > 0:
            i -= 1
            chain.append(mine[i])
        chosen += reversed(chain)
    return chosen


def ledger_costs(records: list[dict[str, Any]], prices: PriceTable) -> dict[str, Any]:
    """Per-record costs, per-stage sums (a resumed or redone stage has several attempts), the total
    and the headline (`headline_attempts`)."""
    rows = []
    per_stage: dict[str, dict[str, Any]] = {}
    for rec in records:
        cost = record_cost(rec, prices)
        row = {**rec, **cost}
        rows.append(row)
        stage = str(rec.get("stage", "?"))
        agg = per_stage.setdefault(stage, {k: 0.0 for k in SUM_KEYS} | {"runs": 0, "statuses": {}})
        agg["runs"] += 1
        status = row.get("status") or "done"
        agg["statuses"][status] = agg["statuses"].get(status, 0) + 1
        for k in SUM_KEYS:
            agg[k] += _num(row.get(k))
        # Facts that do not add up across attempts: keep the latest one seen.
        for k in ("params", "mfu", "device"):
            if k in rec:
                agg[k] = rec[k]
        for k in ("watts", "watts_source", "unit", "units", "priced_as", "price_note"):
            agg[k] = cost[k]
    total = {k: sum(s[k] for s in per_stage.values()) for k in SUM_KEYS}
    all_rows = sum_rows(rows)
    total.update(attempts=all_rows["attempts"], statuses=all_rows["statuses"])
    head = headline_attempts(rows)
    return {"records": rows, "stages": per_stage, "total": total,
            "headline": {**sum_rows(head), "attempt_ids": [r.get("attempt") for r in head],
                         "stages": list(dict.fromkeys(stage_name(str(r["stage"])) for r in head))},
            "price_notes": price_notes(rows)}


def price_notes(rows: list[dict[str, Any]]) -> list[str]:
    """The distinct nearest-row notes of priced records: one per row and CPU name (the latest record's,
    which says most: older records lack the CPU's vendor numbers)."""
    notes = {(r.get("priced_as"), str((r.get("device") or {}).get("cpu"))): r["price_note"]
             for r in rows if r.get("price_note")}
    return sorted(set(notes.values()))


def device_text(d: dict | None) -> str:
    """The device of a record in a few words: "8x NVIDIA H100 80GB HBM3", "AMD EPYC (2 cores)"."""
    if not d:
        return "—"
    if d.get("type") == "cuda":
        return f"{d.get('gpu_count', 1)}x {d.get('gpu')}"
    return f"{d.get('cpu', 'CPU')} ({d.get('cpu_cores')} cores)"


def statuses_text(statuses: dict[str, int]) -> str:
    """{"done": 1, "killed": 1} -> "1 done, 1 killed" (in STATUSES order)."""
    return ", ".join(f"{statuses[s]} {s}" for s in STATUSES if statuses.get(s)) or "—"


def _teacher_text(r: dict[str, Any]) -> str:
    """One distill attempt's teacher tokens and their price, in a few words."""
    t, price = r["teacher"], r.get("teacher_price")
    priced = (f"USD {fmt(r.get('teacher_usd'), 4)} at {fmt(price['usd_per_mtok_in'])}/{fmt(price['usd_per_mtok_out'])} "
              f"per M ({price['source']})" if price else "not priced")
    return (f"{r['stage']} `{t.get('model')}` at {t.get('host')}: {fmt(_num(t.get('prompt_tokens')))} prompt + "
            f"{fmt(_num(t.get('completion_tokens')))} completion tokens, {priced}")


def markdown_table(ledger: dict) -> str:
    rows = []
    for stage, s in ledger["stages"].items():
        rows.append([stage, statuses_text(s.get("statuses") or {"done": s["runs"]}), fmt(s["wall_s"], 1),
                     fmt(s["cpu_s"], 1), device_text(s.get("device")), fmt(s["tokens"] or None),
                     fmt(s["flops"] or None), pct(s.get("mfu")) if s.get("mfu") is not None else "—",
                     fmt(s.get("watts"), 1), fmt(s["energy_kwh"], 3), fmt(s["cost_krw"], 2), fmt(s["cost_usd"], 4)])
    t = ledger["total"]
    rows.append(["**total**", statuses_text(t.get("statuses") or {}), fmt(t["wall_s"], 1), fmt(t["cpu_s"], 1), "",
                 fmt(t["tokens"] or None), fmt(t["flops"] or None), "", "", fmt(t["energy_kwh"], 3),
                 f"**{fmt(t['cost_krw'], 2)}**", f"**{fmt(t['cost_usd'], 4)}**"])
    out = md_table(["stage", "attempts", "wall s", "CPU s", "device", "tokens", "FLOPs", "MFU", "power W", "kWh",
                    "KRW", "USD"], rows)
    lost = [r for r in ledger.get("records", []) if r.get("status") in FAILED_STATUSES]
    if lost:
        out += "\n\nAttempts that did not finish: " + "; ".join(
            f"{r.get('stage')} {r.get('status')}" + (f" ({r['error']})" if r.get("error") else "")
            + f", {fmt(_num(r.get('wall_s')), 1)} s" + (f"; not measured: {r['unmeasured']}" if r.get("unmeasured") else "")
            for r in lost) + "."
    teachers = [r for r in ledger.get("records", []) if isinstance(r.get("teacher"), dict)]
    if teachers:
        out += ("\n\nTeacher tokens (`saessak distill`, in the rows above): "
                + "; ".join(_teacher_text(r) for r in teachers) + ".")
    notes = ledger.get("price_notes") or []
    if notes:
        out += "\n\n" + " ".join(n[0].upper() + n[1:] + "." for n in notes)
    sources = sorted({s["watts_source"] for s in ledger["stages"].values() if s.get("watts_source")})
    if sources:
        out += "\n\nPower figures: " + "; ".join(sources) + "."
    return out


# ----------------------------------------------------------------------------- the project

FIND_DEPTH = 3  # how deep under a project folder run folders are looked for


def is_run_folder(path: Path) -> bool:
    """A folder with a ledger: RUN/ledger.jsonl or RUN/ledger/ (attempt files)."""
    return (path / "ledger.jsonl").is_file() or (path / ATTEMPTS_DIR).is_dir()


def find_runs(root: str | os.PathLike, depth: int = FIND_DEPTH) -> list[Path]:
    """Run folders at `root` or up to `depth` levels under it (not inside another run, not hidden)."""
    root = Path(root)
    if is_run_folder(root):
        return [root]
    if depth <= 0:
        return []
    try:
        children = sorted(p for p in root.iterdir() if p.is_dir() and not p.is_symlink() and not p.name.startswith("."))
    except OSError:
        return []
    return [run for child in children for run in find_runs(child, depth - 1)]


def parse_since(text: str | None) -> float | None:
    """`--since DATE` (ISO 8601 date or date-time, UTC unless it names a zone) as epoch seconds."""
    if text is None:
        return None
    t = epoch(text)
    if t is None:
        raise UserError(f"--since {text!r}: not a date (use YYYY-MM-DD or YYYY-MM-DDTHH:MM)")
    return t


def _own_running(rec: dict[str, Any]) -> bool:
    """An attempt of this very process still running: the report or export that is asking."""
    return rec.get("status") == "running" and rec.get("pid") == os.getpid() and rec.get("host") == socket.gethostname()


def project_costs(dirs: list[str | os.PathLike], prices: PriceTable, since: float | None = None,
                  skip_own: bool = False) -> dict[str, Any]:
    """Every run folder under `dirs` priced: per run its ledger (`ledger_costs`), tag and whether it
    has a finished model; the total over all runs and attempts; what could not be read. `skip_own`
    leaves out this process's own running attempts (a report cannot price itself while it runs)."""
    found: list[Path] = []
    for d in dirs:
        d = Path(d)
        if not d.exists():
            raise UserError(f"{d}: folder not found")
        if not d.is_dir():
            raise UserError(f"{d}: not a folder (give the folder that holds the run folders)")
        found += [r for r in find_runs(d) if r.resolve() not in {f.resolve() for f in found}]
    if not found:
        raise UserError(f"{', '.join(map(str, dirs))}: no run folders (a run folder holds ledger.jsonl or "
                        f"{ATTEMPTS_DIR}/), searched {FIND_DEPTH} levels deep")
    problems: list[str] = []
    runs = []
    left_out = 0
    for path in found:
        records = [r for r in read_ledger(path, problems) if not (skip_own and _own_running(r))]
        if since is not None:
            kept = [r for r in records if (epoch(r.get("start")) or float("-inf")) >= since]
            left_out += len(records) - len(kept)
            records = kept
        rf = RunFolder(path)
        runs.append({"run": str(path), "tag": rf.tag, "model": rf.latest_model_stage(),
                     "ledger": ledger_costs(records, prices)})
    rows = [row for r in runs for row in r["ledger"]["records"]]
    return {"runs": runs, "total": sum_rows(rows), "problems": problems, "left_out_by_since": left_out}


def project_summary(run_dir: str | os.PathLike, prices: PriceTable) -> dict[str, Any] | None:
    """The project around a run: every run folder in the folder that holds it (`find_runs`), summed.
    None when that folder holds no other run (then only this run is known)."""
    run = Path(run_dir).resolve()
    folder = run.parent
    runs = find_runs(folder)
    if not any(r.resolve() != run for r in runs):
        return None
    p = project_costs(runs, prices, skip_own=True)
    t = p["total"]
    return {"folder": str(folder), "runs": len(p["runs"]), "attempts": t["attempts"],
            "failed_attempts": sum(t["statuses"].get(s, 0) for s in FAILED_STATUSES),
            "cost_krw": t["cost_krw"], "cost_usd": t["cost_usd"], "wall_s": t["wall_s"],
            "unreadable": len(p["problems"])}


def project_sentence(run_total: dict[str, Any], project: dict[str, Any] | None) -> str:
    """The report's and the model card's line: this run's cost beside the whole project's."""
    mine = f"This model's run cost **{fmt(run_total['cost_krw'], 2)} KRW** (USD {fmt(run_total['cost_usd'], 4)})"
    if project is None:
        return (mine + "; it is the only run in its folder, so only this run is known "
                "(`saessak bill DIR` sums a folder of runs).")
    return (mine + f"; the project that produced it (`{project['folder']}`) spent **{fmt(project['cost_krw'], 2)} KRW** "
            f"(USD {fmt(project['cost_usd'], 4)}) in all ({project['runs']} runs, {project['failed_attempts']} failed "
            f"attempts of {project['attempts']}).")
