"""Loads the shipped items of the saessak_ko_mc task (no network, no dataset hub)."""

import json
from pathlib import Path

DATA = Path(__file__).with_name("saessak_ko_mc.jsonl")


def load_docs(**_kwargs):
    import datasets

    rows = [json.loads(line) for line in DATA.read_text(encoding="utf-8").splitlines() if line.strip()]
    return datasets.DatasetDict({"test": datasets.Dataset.from_list(rows)})
