"""The door into training: every text from outside the project passes `Door` before a stage trains on it.

docs/PII.md promises that personal data never reaches the model. That holds only if masking sits
where data enters, so every path in goes through one object:

- the corpus build (`data/build.py`): each source document, `Door.scan`; the data card counts what
  is written (per source, after dedup);
- SFT chat data (`sft/data.py`): `--data FILE` and `--hf-dataset ID`, every message's content
  (system, user, assistant), `Door.messages`, counted per source in `RUN/sft/done.json` ("pii");
- any path added later (imported datasets, distillation prompts and the replies a teacher sends
  back, text sent out to a third party) must take its text through a `Door` too, with a source name,
  and write `Door.record()` where its stage records its inputs.

Text the project generates itself (task items and their worked solutions, the identity chats) is
not personal data and does not pass: masking it would change answers (a 13-digit number the
numbers task reads aloud can pass the RRN rules).

`keep_pii=True` (`--keep-pii`) opts out: the text goes in as it is, a warning goes to stderr
whatever the stage's own log level, and the record says `"keep_pii": true` with the identifiers
that were kept. The counts come from `saessak.pii.mask_pii` either way, so masked and kept counts
mean the same thing.
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Callable
from typing import Any

from saessak.pii import mask_pii

KEEP_PII_HELP = ("do NOT mask personal data (phone, 주민등록번호, card, ...) in the input; logged as a warning and "
                 "recorded in the stage's done.json. Only for data you are allowed to train on as it is")


def add_keep_pii_option(parser) -> None:
    """`--keep-pii` on a command whose input enters training (`data build`, `sft`)."""
    parser.add_argument("--keep-pii", action="store_true", help=KEEP_PII_HELP)


def _warn(msg: str) -> None:
    print(f"saessak: WARNING: {msg}", file=sys.stderr, flush=True)


def counts_text(counts: dict[str, int]) -> str:
    """`{"phone": 3, "rrn": 1}` -> "phone 3, rrn 1" (or "none")."""
    return ", ".join(f"{k} {v:,}" for k, v in sorted(counts.items()) if v) or "none"


class Door:
    """Masks (or, with `keep_pii`, only counts) personal data in text entering training, per source.

    `scan` masks one text and returns its counts without recording them (the corpus build records
    only documents that survive dedup); `text` and `messages` mask and record under a source name.
    """

    def __init__(self, keep_pii: bool = False, stage: str = "training", warn: Callable[[str], None] = _warn):
        self.keep_pii = keep_pii
        self.stage = stage
        self._warn = warn
        self._sources: dict[str, Counter] = {}
        if keep_pii:
            warn(f"{stage}: --keep-pii: personal data in the input is NOT masked and goes into training as it is")

    def scan(self, text: str) -> tuple[str, dict[str, int]]:
        """(the text to train on, identifiers found per type): masked unless `keep_pii`."""
        masked, counts = mask_pii(text)
        return (text if self.keep_pii else masked), counts

    def count(self, source: str, counts: dict[str, int]) -> None:
        """Record `counts` (from `scan`) under `source`; a source is listed even when it had none."""
        self._sources.setdefault(source, Counter()).update(counts)

    def text(self, text: str, source: str) -> str:
        out, counts = self.scan(text)
        self.count(source, counts)
        return out

    def messages(self, messages: list[dict], source: str) -> list[dict]:
        """A conversation with every message's content masked; roles and order kept."""
        out = []
        for m in messages:
            out.append({**m, "content": self.text(m["content"], source)})
        self._sources.setdefault(source, Counter())
        return out

    def per_source(self) -> dict[str, dict[str, int]]:
        return {s: dict(sorted(c.items())) for s, c in self._sources.items()}

    def total(self) -> dict[str, int]:
        out: Counter = Counter()
        for c in self._sources.values():
            out.update(c)
        return dict(sorted(out.items()))

    def record(self) -> dict[str, Any]:
        """What the stage writes beside its inputs (done.json "pii"): the choice and the counts per source."""
        key = "kept" if self.keep_pii else "masked"
        return {"keep_pii": self.keep_pii, key: self.per_source(), "total": self.total()}

    def announce(self, source: str, counts: dict[str, int], log: Callable[[str], None]) -> None:
        """One source's counts: masked ones to `log`; kept ones as a warning."""
        n = sum(counts.values())
        if self.keep_pii:
            self._warn(f"{self.stage}: --keep-pii: {n:,} identifiers left unmasked in {source} ({counts_text(counts)})")
        else:
            log(f"{self.stage}: masked {n:,} identifiers in {source} ({counts_text(counts)})")

    def report(self, log: Callable[[str], None]) -> None:
        """`announce` every source recorded with `count`, `text` or `messages`."""
        for source, counts in self.per_source().items():
            self.announce(source, counts, log)
