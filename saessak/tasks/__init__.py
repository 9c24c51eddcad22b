"""Korean tasks whose answers a program checks: generators, graders and rewards.

Families: josa (조사), numbers (수 읽기), arith (문장제), calendar (날짜·요일), spacing (띄어쓰기).
Other stages use `FAMILIES`, `LEVELS`, `SPLITS`, `sample`, `grade`, `solution`, `prompt_messages`, `REWARDS`
and `combine_rewards`.
See docs/TASKS.md.
"""

from saessak.tasks.base import LEVELS, SPLITS
from saessak.tasks.registry import FAMILIES, grade, prompt_messages, sample, solution
from saessak.tasks.rewards import REWARDS, combine_rewards, register_reward

__all__ = ["FAMILIES", "LEVELS", "SPLITS", "sample", "grade", "solution", "prompt_messages", "REWARDS",
           "combine_rewards", "register_reward"]
