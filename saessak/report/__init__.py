"""The report stage: everything a run left in its folder, priced and summarised (RUN/report.md, .json, plots/).

- build.py            gather the sections and price the ledger; write report.json, report.md, plots
- markdown.py         report.md
- plots.py            training curves from RUN/<stage>/metrics.jsonl
- projection.py       what the recipe would cost on GPUs (FLOPs-based)
- pii_section.py      personal data masked (or kept) per source at the door into training
- bill.py             the project's bill: every attempt of every run under a folder, priced (bill.md, .json, .png)
- cli.py              `saessak report`, `saessak bill`
"""
