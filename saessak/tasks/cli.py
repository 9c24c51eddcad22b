"""`saessak tasks {list,sample,grade}`: generate and grade the verifiable Korean tasks."""

from __future__ import annotations

import json
import sys

from saessak.errors import UserError


def register(subparsers) -> None:
    p = subparsers.add_parser("tasks", help="Korean verifiable tasks: list, sample, grade")
    sub = p.add_subparsers(dest="tasks_command", metavar="ACTION", required=True)

    ls = sub.add_parser("list", help="list the task families")
    ls.set_defaults(func=run_list)

    sp = sub.add_parser("sample", help="print examples as JSON Lines")
    sp.add_argument("task", help="task family (see `saessak tasks list`)")
    sp.add_argument("--split", default="train", help="train, val or test (disjoint by construction)")
    sp.add_argument("--n", type=int, default=10, help="number of examples")
    sp.add_argument("--seed", type=int, default=0)
    sp.add_argument("--level", type=int, default=None, help="difficulty 1..5 (default: mixed)")
    sp.add_argument("--start", type=int, default=0, help="index of the first example")
    sp.add_argument("--corpus", default=None, help="spacing only: a corpus split file (e.g. RUN/data/val.jsonl or val.parquet)")
    sp.add_argument("--solutions", action="store_true", help="add a worked `solution` to each example")
    sp.set_defaults(func=run_sample)

    gp = sub.add_parser("grade", help="grade JSON Lines of examples with a \"response\" field")
    gp.add_argument("file", nargs="?", default="-", help="JSONL file, or - for stdin")
    gp.set_defaults(func=run_grade)


def run_list(args) -> int:
    from saessak.tasks.registry import DESCRIPTIONS, FAMILIES

    for name in FAMILIES:
        print(f"{name}\t{DESCRIPTIONS[name]}")
    return 0


def run_sample(args) -> int:
    from saessak.tasks.registry import sample, solution

    for ex in sample(args.task, args.split, args.n, args.seed, args.level, start=args.start,
                     corpus=args.corpus):
        if args.solutions:
            ex["solution"] = solution(ex)
        print(json.dumps(ex, ensure_ascii=False))
    return 0


def run_grade(args) -> int:
    from saessak.tasks.registry import grade

    from saessak.io import iter_jsonl

    name = "<stdin>" if args.file == "-" else args.file
    try:
        stream = sys.stdin if args.file == "-" else open(args.file, encoding="utf-8")
    except OSError as e:
        raise UserError(f"{name}: cannot open ({e.strerror})") from None
    with stream:
        for n, record in iter_jsonl(stream, name):
            _check_record(name, n, record)
            try:
                grades = grade(record, record["response"])
            except (KeyError, TypeError, ValueError, IndexError) as e:
                # An example edited by hand or from another version: say which line, no traceback.
                raise UserError(f"{name}:{n}: example does not fit task {record['task']!r} ({e!r})") from None
            record["reward"] = grades["correctness"]
            record["correct"] = grades["correct"]
            record["grades"] = {k: v for k, v in grades.items() if k not in ("correct", "parsed")}
            record["parsed"] = grades["parsed"]
            print(json.dumps(record, ensure_ascii=False))
    return 0


def _check_record(name: str, n: int, record) -> None:
    if not isinstance(record, dict):
        raise UserError(f"{name}:{n}: expected a JSON object")
    for field in ("task", "answer", "meta", "response"):
        if field not in record:
            raise UserError(f"{name}:{n}: missing field {field!r}")
    if not isinstance(record["response"], str):
        raise UserError(f"{name}:{n}: field 'response' must be a string")
    from saessak.tasks.registry import FAMILIES

    if record["task"] not in FAMILIES:
        raise UserError(f"{name}:{n}: task {record['task']!r} is unknown (known: {', '.join(FAMILIES)})")
