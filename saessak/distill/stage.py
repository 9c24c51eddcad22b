"""`saessak distill`: ask a teacher, keep what is correct, write a chat dataset (RUN/distill/).

    RUN/distill/
      settings.json     what is being asked (teacher host and model, sampling, prompts file hash)
      items/NNNNNN.json one file per finished prompt, written atomically when all its samples are in
      train.jsonl       the dataset: {"messages": [...], "id", "source", "graded", "task", "level"}
      data_card.json, data_card.md
      done.json         written last

Resuming: the prompts are a pure function of the settings (prompts.py), so a rerun of the same
command finds the same prompt at the same position and asks only those without an item file; the
dataset is then built from the item files in order, so a killed-and-rerun distillation gives the
same dataset as one that ran through (with a teacher that honours `seed`, even the same replies).
A rerun with other settings would mix two datasets: refused unless `--force`.

Privacy (saessak/data/ingest.py): every prompt passes a `Door` before it leaves the machine
(masked unless `--allow-pii`); a generated task prompt that looks like personal data is withheld
instead (masking it would change the question). Every reply passes a masking `Door` before it is
graded and enters the dataset, and so does every user prompt kept in the dataset.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from saessak.data.ingest import Door, counts_text
from saessak.distill.card import write_card
from saessak.distill.config import DistillConfig
from saessak.distill.prompts import task_items, user_items
from saessak.distill.teacher import Teacher
from saessak.errors import UserError
from saessak.io import file_sha256, read_json, read_json_or_none, write_json, write_text
from saessak.ledger import StageTimer, load_prices, now_iso
from saessak.runfolder import RunFolder
from saessak.tasks.base import stable_hash
from saessak.tasks.registry import grade

STAGE = "distill"
SENT, REPLIES, TASKS = "sent to the teacher", "teacher replies", "task prompts"
PROGRESS_EVERY_S = 2.0  # at most one progress line this often while prompts finish
QUIET_PROGRESS_S = 30.0  # and one this often while none does (a slow teacher is still being waited for)


def _log(msg: str) -> None:
    print(msg, flush=True)  # progress must show as it happens, also when stdout is a file


def parse_price(text: str | None) -> tuple[float, float] | None:
    """`--teacher-price-per-mtok 0.55,2.19` -> (USD per million prompt tokens, per million completion tokens)."""
    if text is None:
        return None
    try:
        a, b = (float(x) for x in text.split(","))
        if not (a >= 0 and b >= 0):
            raise ValueError
    except ValueError:
        raise UserError(f"--teacher-price-per-mtok {text!r}: expected IN,OUT (USD per million prompt and "
                        "completion tokens, numbers >= 0), e.g. 0.55,2.19") from None
    return a, b


def api_key(env: str | None) -> str | None:
    if env is None:
        return None
    value = os.environ.get(env)
    if not value:
        raise UserError(f"--api-key-env {env}: the environment variable is not set (or empty)")
    return value.strip()


def _item_path(out: Path, i: int) -> Path:
    return out / "items" / f"{i:06d}.json"


def _check_settings(out: Path, settings: dict) -> None:
    """An unfinished distillation continues only with the settings it started with."""
    path = out / "settings.json"
    prev = read_json_or_none(path)
    if prev is None:
        write_json(path, settings)
        return
    if prev != settings:
        differ = [k for k in sorted({*prev, *settings}) if prev.get(k) != settings.get(k)]
        raise UserError(f"{out}: an unfinished distillation with other settings is there (differs in: "
                        f"{', '.join(differ)}); rerun it with the same settings to continue, or pass --force "
                        "to start over")


def _through(door: Door, messages: list[dict]) -> tuple[list[dict], dict[str, int]]:
    """The messages as `door` lets them through (masked, or only counted), and the identifiers found."""
    out, found = [], Counter()
    for m in messages:
        text, counts = door.scan(m["content"])
        out.append({"role": m["role"], "content": text})
        found.update(counts)
    return out, dict(found)


class _Asker:
    """Asks one prompt's samples, masks and grades them, writes the prompt's item file."""

    def __init__(self, cfg: DistillConfig, teacher: Teacher, out: Path, allow_pii: bool, stop: threading.Event):
        self.cfg, self.teacher, self.out, self.stop = cfg, teacher, out, stop
        # The door out: masks (or with --allow-pii only counts); the door in always masks.
        self.door_out = Door(keep_pii=allow_pii, stage=STAGE, warn=lambda m: None)
        self.door_in = Door(stage=STAGE)
        self.allow_pii = allow_pii

    def __call__(self, i: int, item: dict) -> dict | None:
        cfg = self.cfg
        sent, sent_pii = _through(self.door_out, item["messages"])
        record: dict[str, Any] = {"index": i, "id": item["id"], "source": item["source"],
                                  "task": item.get("task"), "level": item.get("level"), "pii_sent": sent_pii}
        if item["source"] == "task" and sent_pii and not self.allow_pii:
            # A generated question whose numbers read as an identifier: masking would change it.
            record.update(withheld=True, messages=item["messages"], samples=[])
            write_json(_item_path(self.out, i), record)
            return record
        if item["source"] == "task":
            train_prompt, prompt_pii = item["messages"], {}
            if cfg.teacher_system:
                sent = [{"role": "system", "content": cfg.teacher_system}, *sent]
        else:
            train_prompt, prompt_pii = _through(self.door_in, item["messages"])
        samples = []
        for k in range(cfg.samples):
            if self.stop.is_set():
                return None  # an unfinished prompt leaves no file: the rerun asks it again
            seed = stable_hash(STAGE, cfg.seed, item["id"], k) % (2 ** 31)
            reply = self.teacher.chat(sent, temperature=cfg.temperature, top_p=cfg.top_p,
                                      max_tokens=cfg.max_tokens, seed=seed)
            text, reply_pii = self.door_in.scan(reply.text)
            sample = {"reply": text, "finish_reason": reply.finish_reason, "prompt_tokens": reply.prompt_tokens,
                      "completion_tokens": reply.completion_tokens, "usage_reported": reply.usage_reported,
                      "pii": reply_pii, "seed": seed}
            if item["source"] == "task":
                g = grade(item["example"], text)  # graded as it will be trained on: masked
                sample.update(correct=bool(g["correct"]), parsed=g["parsed"] if isinstance(g["parsed"], str) else None)
            samples.append(sample)
        record.update(withheld=False, messages=train_prompt, sent=sent, pii_prompt=prompt_pii, samples=samples)
        write_json(_item_path(self.out, i), record)
        return record


def _start_workers(asker: _Asker, items: list[dict], pending: list[int], n: int,
                   stop: threading.Event) -> queue.Queue:
    """`n` threads ask the pending prompts; each result, (record, None) or (None, error), is put on
    the queue returned. Daemon threads, so that Ctrl-C or an error ends the process at once instead
    of waiting for requests in flight (their prompts are asked again by the rerun)."""
    todo: queue.Queue = queue.Queue()
    for i in pending:
        todo.put(i)
    results: queue.Queue = queue.Queue()

    def work() -> None:
        while not stop.is_set():
            try:
                i = todo.get_nowait()
            except queue.Empty:
                return
            try:
                rec = asker(i, items[i])
            except BaseException as e:  # noqa: BLE001 -- handed to the main thread, which ends the stage with it
                results.put((None, e))
                return
            if rec is not None:
                results.put((rec, None))

    for k in range(min(n, len(pending))):
        threading.Thread(target=work, name=f"saessak-distill-{k}", daemon=True).start()
    return results


def keep(record: dict, sample: dict) -> bool:
    """A sample enters the dataset: a whole reply (not cut by max_tokens), and for a task, a correct one."""
    if not sample["reply"].strip() or sample.get("finish_reason") == "length":
        return False
    return record["source"] != "task" or bool(sample.get("correct"))


def dataset_rows(records: list[dict]) -> list[dict]:
    rows = []
    for rec in records:
        for k, s in enumerate(rec["samples"]):
            if keep(rec, s):
                row = {"messages": [*rec["messages"], {"role": "assistant", "content": s["reply"]}],
                       "id": f"{rec['id']}#{k}", "source": rec["source"], "graded": rec["source"] == "task"}
                if rec["source"] == "task":
                    row.update(task=rec["task"], level=rec["level"])
                rows.append(row)
    return rows


def _progress_line(done: int, total: int, kept: int, asked: int, started: float, first_done: int) -> str:
    elapsed = time.monotonic() - started
    rate = (done - first_done) / elapsed if elapsed > 0 else 0.0
    eta = f"{(total - done) / rate:,.0f} s" if rate > 0 else "—"
    return (f"distill: {done:,}/{total:,} prompts ({100 * done / max(total, 1):.0f}%), {kept:,}/{asked:,} samples "
            f"kept, {rate:.2f} prompts/s, ETA {eta}")


def run_distill(run: str | os.PathLike, *, teacher_url: str, teacher_model: str, api_key_env: str | None = None,
                prompts_file: str | None = None, allow_pii: bool = False, price_per_mtok: str | None = None,
                force: bool = False, log: Callable[[str], None] = _log, **overrides: Any) -> dict:
    cfg = DistillConfig(**overrides)
    cfg.validate()
    price = parse_price(price_per_mtok)
    key = api_key(api_key_env)
    rf = RunFolder(run)
    out = rf.stage_dir(STAGE)
    teacher = Teacher(teacher_url, teacher_model, key, key_name=api_key_env, timeout_s=cfg.timeout_s,
                      max_retries=cfg.max_retries, backoff_s=cfg.backoff_s, max_backoff_s=cfg.max_backoff_s, log=log)
    items = task_items(cfg.tasks, cfg.levels, cfg.items_per_level, cfg.seed)
    if prompts_file:
        items += user_items(prompts_file)
    if not items:
        raise UserError("nothing to ask: --tasks none and no --prompts FILE")
    if (out / "done.json").exists() and not force:
        log(f"distill: {out} is complete (done.json); --force to redo")
        return read_json(out / "done.json")
    if force and out.exists():
        shutil.rmtree(out)
    settings = {"teacher_host": teacher.host, "teacher_model": teacher_model, **cfg.identity(),
                "prompts_file": ({"path": str(prompts_file), "sha256": file_sha256(prompts_file)}
                                 if prompts_file else None),
                "allow_pii": allow_pii, "items": len(items)}
    _check_settings(out, settings)
    if allow_pii:
        print(f"saessak: WARNING: {STAGE}: --allow-pii: prompts are sent to {teacher.host} WITHOUT masking their "
              "personal data (the dataset is still masked)", file=sys.stderr, flush=True)
    pending = [i for i in range(len(items)) if not _item_path(out, i).exists()]
    first_done = len(items) - len(pending)
    if first_done:
        log(f"distill: resuming: {first_done:,} of {len(items):,} prompts already answered")
    teacher_fact: dict[str, Any] = {"host": teacher.host, "model": teacher_model}
    if price is not None:
        teacher_fact.update(usd_per_mtok_in=price[0], usd_per_mtok_out=price[1],
                            price_source="--teacher-price-per-mtok")
    if price is None:
        row = load_prices().teacher_row(teacher_model)
        log(f"distill: teacher tokens priced with prices.toml [teacher.{row[0]}]" if row else
            "distill: teacher tokens are counted but not priced: give --teacher-price-per-mtok IN,OUT")
    log(f"distill: asking {teacher.host} ({teacher_model}) {len(pending):,} prompts x {cfg.samples} samples, "
        f"temperature {cfg.temperature}, {cfg.concurrency} at once")
    stop = threading.Event()
    asker = _Asker(cfg, teacher, out, allow_pii, stop)
    with StageTimer(rf.root, STAGE, facts={"teacher": teacher_fact, "prompts": len(items)}) as timer:
        def account() -> dict:
            fact = {**teacher_fact, **teacher.usage()}
            timer.progress(tokens=fact["prompt_tokens"] + fact["completion_tokens"], teacher=fact)
            return fact

        started, done, kept, asked, last = time.monotonic(), first_done, 0, 0, 0.0
        results = _start_workers(asker, items, pending, cfg.concurrency, stop)
        try:
            left = len(pending)
            while left:
                finished = []
                try:
                    while len(finished) < left:  # everything that is in, without waiting longer than needed
                        finished.append(results.get(timeout=PROGRESS_EVERY_S if not finished else 0.0))
                except queue.Empty:
                    pass
                for rec, error in finished:
                    if error is not None:
                        raise error  # a worker's UserError (bad key, teacher gone) ends the stage here
                    done, left = done + 1, left - 1
                    asked += len(rec["samples"])
                    kept += sum(keep(rec, s) for s in rec["samples"])
                account()
                now = time.monotonic()
                if (finished and now - last >= PROGRESS_EVERY_S) or now - last >= QUIET_PROGRESS_S or not left:
                    log(_progress_line(done, len(items), kept, asked, started, first_done))
                    last = now
        except BaseException:
            stop.set()  # the workers finish the request in hand and stop; an unfinished prompt leaves no file
            account()
            raise
        records = [read_json(_item_path(out, i)) for i in range(len(items))]
        summary = _finish(out, rf, cfg, items, records, teacher, teacher_model, allow_pii, settings, log)
        fact = account()
        timer.finish(tokens=fact["prompt_tokens"] + fact["completion_tokens"], teacher=fact,
                     rows=summary["dataset"]["rows"])
    write_json(out / "done.json", summary)
    return summary


def _finish(out: Path, rf: RunFolder, cfg: DistillConfig, items: list[dict], records: list[dict], teacher: Teacher,
            teacher_model: str, allow_pii: bool, settings: dict, log: Callable[[str], None]) -> dict:
    """The dataset, its card and the summary done.json holds, from every item file (all attempts)."""
    for i, (item, rec) in enumerate(zip(items, records)):
        if rec.get("id") != item["id"]:
            raise UserError(f"{_item_path(out, i)}: holds prompt {rec.get('id')!r}, not {item['id']!r}; "
                            "rerun with --force")
    rows = dataset_rows(records)
    write_text(out / "train.jsonl", "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    door_out = Door(keep_pii=allow_pii, stage=STAGE, warn=lambda m: None)
    door_in = Door(stage=STAGE)
    for rec in records:
        src = TASKS if rec["source"] == "task" else "--prompts"
        door_out.count(f"{src} ({SENT})", rec["pii_sent"])
        if rec["source"] != "task":
            door_in.count("--prompts", rec.get("pii_prompt") or {})
        for s in rec["samples"]:
            door_in.count(REPLIES, s["pii"])
    per_level: dict[str, dict[str, dict[str, int]]] = {}
    counts = {"prompts": len(records), "withheld": 0, "samples": 0, "kept": len(rows), "truncated": 0,
              "ungraded_kept": 0, "usage_missing": 0}
    usage = {"prompt_tokens": 0, "completion_tokens": 0}
    for rec in records:
        counts["withheld"] += bool(rec.get("withheld"))
        for s in rec["samples"]:
            counts["samples"] += 1
            counts["truncated"] += s.get("finish_reason") == "length"
            counts["usage_missing"] += not s.get("usage_reported")
            usage["prompt_tokens"] += s["prompt_tokens"]
            usage["completion_tokens"] += s["completion_tokens"]
            if rec["source"] == "task":
                c = per_level.setdefault(rec["task"], {}).setdefault(str(rec["level"]), {"samples": 0, "correct": 0})
                c["samples"] += 1
                c["correct"] += keep(rec, s)
            else:
                counts["ungraded_kept"] += keep(rec, s)
    pass_rates = {fam: {lvl: {**c, "pass_rate": c["correct"] / c["samples"] if c["samples"] else None}
                        for lvl, c in sorted(levels.items())} for fam, levels in per_level.items()}
    summary = {
        "format": "messages", "created": now_iso(),
        "teacher": {"host": teacher.host, "model": teacher_model, **usage},
        "sampling": {k: getattr(cfg, k) for k in ("samples", "temperature", "top_p", "max_tokens", "seed")},
        "teacher_system": cfg.teacher_system or None,
        "tasks": {"families": sorted(per_level), "levels": list(cfg.levels), "items_per_level": cfg.items_per_level,
                  "split": "train"},
        "prompts_file": settings["prompts_file"],
        "counts": counts, "pass_rates": pass_rates,
        "pii": door_in.record(), "pii_sent": door_out.record(), "allow_pii": allow_pii,
        "dataset": {"path": "train.jsonl", "rows": len(rows), "sha256": file_sha256(out / "train.jsonl")},
    }
    write_card(out, summary)
    sent_total = sum(summary["pii_sent"]["total"].values())
    log(f"distill: {'kept unmasked' if allow_pii else 'masked'} {sent_total:,} identifiers in the prompts sent "
        f"({counts_text(summary['pii_sent']['total'])}); masked {sum(summary['pii']['total'].values()):,} in what "
        f"enters the dataset ({counts_text(summary['pii']['total'])})")
    if not rows:
        print(f"saessak: WARNING: {STAGE}: no reply was kept (none graded correct and whole): the dataset is empty; "
              "see the pass rates in data_card.md (a teacher that never writes '정답: ...' needs --teacher-system)",
              file=sys.stderr, flush=True)
    log(f"distill: {len(rows):,} of {counts['samples']:,} samples kept -> {out / 'train.jsonl'} "
        f"(teacher tokens: {usage['prompt_tokens']:,} prompt, {usage['completion_tokens']:,} completion)")
    return summary
