"""The data card of a distilled dataset: RUN/distill/data_card.json (the summary done.json also holds)
and data_card.md (the same facts for people). Format: docs/DATA_CARD.md#distilled-data."""

from __future__ import annotations

from pathlib import Path

from saessak import __version__
from saessak.data.ingest import counts_text
from saessak.io import md_table, pct, write_json, write_text
from saessak.ledger import git_commit

SCHEMA_VERSION = 1


def write_card(out: Path, summary: dict) -> None:
    card = {"schema_version": SCHEMA_VERSION, "kind": "distillation",
            "tool": {"name": "saessak", "version": __version__, "git_commit": git_commit()}, **summary}
    write_json(out / "data_card.json", card)
    write_text(out / "data_card.md", card_markdown(card))


def card_markdown(card: dict) -> str:
    t, s, c = card["teacher"], card["sampling"], card["counts"]
    prompts_file = card.get("prompts_file")
    user = (f"`{prompts_file['path']}` (sha256 {prompts_file['sha256'][:12]}…), kept ungraded" if prompts_file
            else "none")
    lines = [
        "# Data card: distilled traces", "",
        (f"- created: {card['created']} (saessak {card['tool']['version']}, commit "
         f"{card['tool']['git_commit'] or '—'})"),
        (f"- teacher: `{t['model']}` at `{t['host']}`; tokens: {t['prompt_tokens']:,} prompt, "
         f"{t['completion_tokens']:,} completion"),
        (f"- sampling: {s['samples']} samples per prompt, temperature {s['temperature']}, top_p {s['top_p']}, "
         f"max_tokens {s['max_tokens']}, seed {s['seed']}"),
        (f"- task prompts: families {', '.join(card['tasks']['families']) or 'none'}, levels "
         f"{', '.join(map(str, card['tasks']['levels']))}, {card['tasks']['items_per_level']} train-split items per "
         "family and level; only replies the suite's grader marks correct are kept"),
        f"- user prompts: {user}",
        (f"- counts: {c['prompts']:,} prompts ({c['withheld']:,} withheld as personal data), {c['samples']:,} "
         f"samples, {c['kept']:,} kept ({c['ungraded_kept']:,} ungraded), {c['truncated']:,} cut at max_tokens"),
        f"- dataset: `{card['dataset']['path']}`, {card['dataset']['rows']:,} rows, sha256 {card['dataset']['sha256']}",
        "",
        "## Pass rate per family and level", "",
    ]
    rows = [[fam, lvl, f"{r['correct']:,}/{r['samples']:,}", pct(r["pass_rate"])]
            for fam, levels in card["pass_rates"].items() for lvl, r in levels.items()]
    lines += [md_table(["family", "level", "correct / samples", "pass rate"], rows) if rows else "_No task prompts._", ""]
    sent, kept_in = card["pii_sent"], card["pii"]
    how = "**sent unmasked (--allow-pii)**" if card["allow_pii"] else "masked before sending"
    lines += ["## Personal data", "",
              (f"- prompts sent to the teacher: {sum(sent['total'].values()):,} identifiers {how} "
               f"({counts_text(sent['total'])})"),
              (f"- dataset (teacher replies and user prompts): {sum(kept_in['total'].values()):,} identifiers "
               f"masked ({counts_text(kept_in['total'])})"), ""]
    return "\n".join(lines)
