"""The report stage: everything a run left in its folder, priced and summarised (RUN/report.md, .json, plots/).

- build.py            gather the sections and price the ledger; write report.json, report.md, plots
- markdown.py         report.md
- plots.py            training curves from RUN/<stage>/metrics.jsonl
- projection.py       what the recipe would cost on GPUs (FLOPs-based)
- results_section.py  the generated "Latest speedrun" section of docs/RESULTS.md
- cli.py              `saessak report`
"""
