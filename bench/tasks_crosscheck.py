"""Task-suite benchmark: grader agreement with independent references, and generation/grading speed.

Side by side with what a user would otherwise reach for: Kiwi.join for particles (on raw digits,
as a user would call it, and on our spoken readings), num2words for Sino-Korean readings (when
installed; it is not a dependency), datetime for calendar answers, expression evaluation for arith.

    .venv/bin/python bench/tasks_crosscheck.py [--quick]

The last stdout line is one JSON object with the key figures.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._lib.record import add_record_args, emit  # noqa: E402  (first: it notes the load before the work)


def throughput(n: int) -> dict:
    from saessak.tasks import FAMILIES, grade, sample, solution

    out = {}
    for task in FAMILIES:
        t0 = time.perf_counter()
        examples = sample(task, "train", n, seed=0)
        t1 = time.perf_counter()
        for ex in examples:
            grade(ex, solution(ex))
        t2 = time.perf_counter()
        out[task] = {"sample_per_s": round(n / (t1 - t0)), "solve_and_grade_per_s": round(n / (t2 - t1))}
    return out


def _corpus_texts(path: str) -> list[str]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line)["text"] for line in f if line.strip()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, under a minute")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: every check in seconds (tests)")
    parser.add_argument("--corpus", help="a run's data/val.jsonl: also check josa on its nouns and "
                                         "grade spacing items cut from it")
    add_record_args(parser)
    args = parser.parse_args()
    from saessak.tasks import crosscheck

    size = dict(words=50, numbers=20, examples=50, limit=500, rand=100, speed=20) if args.smoke else \
        dict(words=1_000, numbers=200, examples=1_000, limit=20_000, rand=2_000, speed=200) if args.quick else \
        dict(words=20_000, numbers=2_000, examples=20_000, limit=1_000_000, rand=100_000, speed=2_000)
    t0 = time.perf_counter()
    texts = _corpus_texts(args.corpus) if args.corpus else None
    josa = crosscheck.josa_vs_kiwi(n_words=size["words"], n_numbers=size["numbers"], corpus_texts=texts)
    numbers = crosscheck.numbers_round_trip(limit=size["limit"], n_random=size["rand"])
    table = crosscheck.numbers_table()
    n2w = crosscheck.numbers_vs_num2words(limit=min(size["limit"], 100_000), n_random=size["rand"] // 4)
    calendar = crosscheck.calendar_vs_datetime(n=size["examples"])
    arith = crosscheck.arith_vs_expression(n=size["examples"])
    speed = throughput(size["speed"])

    print("josa vs Kiwi.join:")
    for source in ("kiwi_dictionary", "task_word_lists", "digits_and_acronyms", "corpus"):
        if source not in josa:
            continue
        r = josa[source]
        print(f"  {source:22s} {r['agree']:>7}/{r['checked']:<7} {r['rate']:.4f}")
    print(f"  Kiwi.join on raw digits 0..100 agrees with the spoken-reading rule: {josa['kiwi_raw_digits_0_100_agree']}/101")
    print(f"numbers: table {table['agree']}/{table['checked']}, sino round trip {numbers['sino_agree']}/{numbers['sino_checked']}, "
          f"native {numbers['native_agree']}/{numbers['native_checked']}")
    if n2w:
        print(f"  num2words Sino readings agree {n2w['sino_agree']}/{n2w['sino_checked']}; "
              f"hand-checked table {n2w['table_agree']}/{n2w['table_checked']}")
    else:
        print("  num2words not installed: comparison skipped")
    print(f"calendar vs datetime: examples {calendar['examples_agree']}/{calendar['examples_checked']}, "
          f"days {calendar['days_agree']}/{calendar['days_checked']}")
    print(f"arith vs expression: {arith['agree']}/{arith['checked']}")
    for task, r in speed.items():
        print(f"  {task:9s} sample {r['sample_per_s']:>6}/s  solve+grade {r['solve_and_grade_per_s']:>6}/s")
    summary = {
        "quick": args.quick,
        "smoke": args.smoke,
        "josa_kiwi_dictionary_rate": josa["kiwi_dictionary"]["rate"],
        "josa_kiwi_dictionary_checked": josa["kiwi_dictionary"]["checked"],
        "josa_digits_acronyms_rate": josa["digits_and_acronyms"]["rate"],
        "josa_digits_acronyms_checked": josa["digits_and_acronyms"]["checked"],
        "josa_corpus_rate": josa["corpus"]["rate"] if "corpus" in josa else None,
        "josa_corpus_checked": josa["corpus"]["checked"] if "corpus" in josa else None,
        "kiwi_raw_digits_agree_of_101": josa["kiwi_raw_digits_0_100_agree"],
        "numbers_table": f"{table['agree']}/{table['checked']}",
        "numbers_round_trip_rate": numbers["sino_agree"] / numbers["sino_checked"],
        "numbers_round_trip_checked": numbers["sino_checked"],
        "num2words_sino_rate": n2w["sino_agree"] / n2w["sino_checked"] if n2w else None,
        "num2words_sino_checked": n2w["sino_checked"] if n2w else None,
        "num2words_table": f"{n2w['table_agree']}/{n2w['table_checked']}" if n2w else None,
        "calendar_datetime_rate": calendar["examples_agree"] / calendar["examples_checked"],
        "calendar_checked": calendar["examples_checked"],
        "arith_expression_rate": arith["agree"] / arith["checked"],
        "arith_checked": arith["checked"],
        "sample_per_s": {t: r["sample_per_s"] for t, r in speed.items()},
        "solve_grade_per_s": {t: r["solve_and_grade_per_s"] for t, r in speed.items()},
        "wall_s": round(time.perf_counter() - t0, 1),
    }
    emit("tasks_crosscheck", summary, args)


def render(r: dict) -> str:
    """The record as docs/BENCHMARKS.md shows it (scripts/docs_figures.py)."""
    from saessak.io import md_table

    def agree(rate: float | None, checked: int | None) -> list[str]:
        return ["—", "not run"] if rate is None else [f"{checked:,}" if checked else "—", f"**{100 * rate:.1f} %**"]

    def fraction(text: str | None) -> list[str]:
        if not text:
            return ["—", "not run (num2words not installed)"]
        a, n = (int(x) for x in text.split("/"))
        return [f"{n:,}", f"{100 * a / n:.0f} %"]

    rows = [
        ["josa on nouns of Kiwi's dictionary x 8 particle pairs", "kiwipiepy `Kiwi.join`",
         *agree(r["josa_kiwi_dictionary_rate"], r["josa_kiwi_dictionary_checked"])],
        ["josa on nouns Kiwi finds in the --corpus file x 8", "`Kiwi.join`",
         *agree(r["josa_corpus_rate"], r.get("josa_corpus_checked"))],
        ["josa on digits and acronyms (Kiwi given the spoken reading) x 8", "`Kiwi.join`",
         *agree(r["josa_digits_acronyms_rate"], r.get("josa_digits_acronyms_checked"))],
        ["what a user would get: `Kiwi.join` on raw digits 0..100 + 을", "spoken-reading rule", "101",
         f"{100 * r['kiwi_raw_digits_agree_of_101'] / 101:.0f} %"],
        ["numbers, hand-checked table", "by hand", *fraction(r["numbers_table"])],
        ["numbers, Sino reading -> digits round trip", "`parse_sino`",
         *agree(r["numbers_round_trip_rate"], r.get("numbers_round_trip_checked"))],
        ["num2words Sino readings (spaces ignored)", "ours",
         *agree(r["num2words_sino_rate"], r.get("num2words_sino_checked"))],
        ["num2words on the hand-checked table", "by hand", *fraction(r["num2words_table"])],
        ["calendar answers", "`datetime`", *agree(r["calendar_datetime_rate"], r.get("calendar_checked"))],
        ["arith answers", "exact evaluation of the recorded expression",
         *agree(r["arith_expression_rate"], r.get("arith_checked"))],
    ]
    speed = md_table(["family", "sampled per s", "worked solution + grading per s"],
                     [[t, f"{(r.get('sample_per_s') or {}).get(t, 0):,}", f"{v:,}"] for t, v in r["solve_grade_per_s"].items()])
    return "\n".join([md_table(["check", "reference", "checked", "agreement"], rows), "",
                      f"Speed (one process; {r['wall_s']} s for the whole run):", "", speed])


if __name__ == "__main__":
    main()
