"""The eval stage: how well each model stage does on the task suite's held-out items, and
lm-evaluation-harness on an exported folder.

- config.py     EvalConfig: the settings a recipe fills and the command line overrides
- task_eval.py  draw distinct held-out items, score greedy pass@1 and pass@k, write RUN/eval/
- results.py    read results, compare two stages item by item, the summary the report carries
- lm_eval.py    `saessak eval lm-eval` (project tasks in lm_eval_tasks/)
- cli.py        `saessak eval`
"""
