"""Korean tasks whose answers a program checks: generators, graders and rewards.

Families: josa (조사), numbers (수 읽기), arith (문장제), calendar (날짜·요일), spacing (띄어쓰기).
Other stages use `FAMILIES`, `LEVELS`, `SPLITS`, `sample`, `grade`, `solution`, `prompt_messages`, `REWARDS`
and `combine_rewards`.
See docs/TASKS.md.

- josa.py, numbers.py, arith.py, calendar_task.py, spacing.py  one family each: make, check, solution
- readings.py   reading numbers aloud (numbers asks for it, josa needs it)
- base.py       the example, deterministic generation, the hash split, `정답:` parsing
- rewards.py    the reward registry and `combine_rewards`
- registry.py   the families by name: sample, grade, solution, prompt_messages
- crosscheck.py the graders against Kiwi, datetime and expression evaluation
- cli.py        `saessak tasks list|sample|grade`
"""

from saessak.tasks.base import LEVELS, SPLITS
from saessak.tasks.registry import FAMILIES, grade, prompt_messages, sample, solution
from saessak.tasks.rewards import REWARDS, combine_rewards, register_reward

__all__ = ["FAMILIES", "LEVELS", "SPLITS", "sample", "grade", "solution", "prompt_messages", "REWARDS",
           "combine_rewards", "register_reward"]
