"""The RL stage: GRPO on the task suite's checkable Korean tasks (RUN/rl/).

- config.py      GRPOConfig (TRL's names) and every check of it
- curriculum.py  which (family, level) each prompt is drawn at
- rollouts.py    sample G completions per prompt and grade them (dynamic sampling); nothing else
- grpo.py        advantages, the clipped loss, and the update that applies them
- stage.py       the loop (under the shared stage life-cycle, saessak/training/lifecycle.py)
- cli.py         `saessak rl`
"""
