"""Korean arithmetic word problems with everyday units (원, 개, 명, 시간, 분, km, 할 = 10%).

Each problem computes its answer directly and also records the arithmetic as a plain expression
(`meta["expr"]`); `evaluate` re-computes that expression with exact fractions, which is the
cross-check the tests run over thousands of problems.
"""

from __future__ import annotations

import ast
import operator
import random
from fractions import Fraction

from saessak.tasks.base import Draft, format_number, parse_number

TASK = "arith"

_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}


def evaluate(expr: str) -> Fraction:
    """Exact value of an expression of integers, + - * / and parentheses (nothing else is allowed)."""
    def ev(node):
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant) and type(node.value) is int:
            return Fraction(node.value)
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            return _OPS[type(node.op)](ev(node.left), ev(node.right))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return -ev(node.operand)
        raise ValueError(f"not allowed in an arithmetic expression: {ast.dump(node)}")
    return ev(ast.parse(expr, mode="eval"))


def _won(n: int) -> str:
    return f"{n:,}원"


# Each template: rng -> (prompt, steps, expr, exact value, unit). Steps are the worked solution.

def _add(r):
    thing, unit = r.choice([("사과", "개"), ("사탕", "개"), ("연필", "자루"), ("학생", "명")])
    a, b = r.randint(1, 9), r.randint(1, 9)
    return (f"{thing} {a}{unit}에 {b}{unit}를 더하면 몇 {unit}인가요?" if unit != "명" else
            f"학생 {a}명에 {b}명이 더 오면 몇 명인가요?",
            [f"{a} + {b} = {a + b}"], f"{a}+{b}", Fraction(a + b), unit)


def _sub(r):
    a = r.randint(5, 20)
    b = r.randint(1, a - 1)
    return (f"사탕 {a}개 중 {b}개를 먹으면 몇 개가 남나요?", [f"{a} - {b} = {a - b}"], f"{a}-{b}",
            Fraction(a - b), "개")


def _times(r):
    per, boxes = r.randint(2, 12), r.randint(2, 9)
    return (f"한 상자에 {per}개씩 {boxes}상자면 모두 몇 개인가요?", [f"{per} × {boxes} = {per * boxes}"],
            f"{per}*{boxes}", Fraction(per * boxes), "개")


def _share(r):
    people, each = r.randint(2, 9), r.randint(2, 12)
    total = people * each
    return (f"구슬 {total}개를 {people}명이 똑같이 나누면 한 명이 몇 개를 가지나요?",
            [f"{total} ÷ {people} = {each}"], f"{total}/{people}", Fraction(each), "개")


def _price(r):
    price, qty = r.randint(1, 30) * 100, r.randint(2, 9)
    return (f"한 개에 {_won(price)}인 빵 {qty}개는 얼마인가요?", [f"{price:,} × {qty} = {price * qty:,}"],
            f"{price}*{qty}", Fraction(price * qty), "원")


def _change(r):
    price, qty = r.randint(5, 30) * 100, r.randint(2, 5)
    paid = (price * qty // 10000 + 1) * 10000
    cost = price * qty
    return (f"{_won(price)}짜리 공책 {qty}권을 사고 {_won(paid)}을 냈습니다. 거스름돈은 얼마인가요?",
            [f"{price:,} × {qty} = {cost:,}", f"{paid:,} - {cost:,} = {paid - cost:,}"],
            f"{paid}-{price}*{qty}", Fraction(paid - cost), "원")


def _discount(r):
    price, hal = r.randint(2, 50) * 1000, r.randint(1, 5)
    off = price * hal // 10
    return (f"{_won(price)}짜리 옷을 {hal}할 할인하면 얼마인가요?",
            [f"{hal}할은 {hal * 10}%입니다.", f"할인액: {price:,} × {hal}/10 = {off:,}",
             f"{price:,} - {off:,} = {price - off:,}"],
            f"{price}-{price}*{hal}/10", Fraction(price - off), "원")


def _minutes(r):
    h, m = r.randint(1, 9), r.randint(1, 59)
    return (f"{h}시간 {m}분은 모두 몇 분인가요?", [f"{h} × 60 + {m} = {h * 60 + m}"], f"{h}*60+{m}",
            Fraction(h * 60 + m), "분")


def _distance(r):
    speed, h = r.choice([40, 50, 60, 80, 90, 100]), r.randint(1, 4)
    m = r.choice([0, 15, 30, 45])
    km = Fraction(speed) * (h * 60 + m) / 60
    when = f"{h}시간" + (f" {m}분" if m else "")
    return (f"시속 {speed}km로 {when} 동안 가면 몇 km를 가나요?",
            [f"{when} = {h * 60 + m}분", f"{speed} × {h * 60 + m} ÷ 60 = {format_number(km)}"],
            f"{speed}*({h}*60+{m})/60", km, "km")


def _not_hal(r):
    total, hal = r.choice([10, 20, 30, 40, 50, 60]), r.randint(1, 9)
    part = total * hal // 10
    return (f"학생 {total}명 중 {hal}할이 안경을 씁니다. 안경을 쓰지 않는 학생은 몇 명인가요?",
            [f"{total} × {hal}/10 = {part}", f"{total} - {part} = {total - part}"],
            f"{total}-{total}*{hal}/10", Fraction(total - part), "명")


def _pizza(r):
    pizzas, people = r.randint(1, 7), r.randint(2, 9)
    value = Fraction(pizzas, people)
    return (f"피자 {pizzas}판을 {people}명이 똑같이 나누면 한 명이 몇 판을 먹나요?",
            [f"{pizzas} ÷ {people} = {format_number(value)}"], f"{pizzas}/{people}", value, "판")


def _shopping(r):
    a, b = r.randint(5, 20) * 100, r.randint(5, 30) * 100
    na, nb, hal = r.randint(2, 6), r.randint(1, 4), r.randint(1, 3)
    total = a * na + b * nb
    pay = Fraction(total * (10 - hal), 10)
    return (f"사과는 한 개 {_won(a)}, 배는 한 개 {_won(b)}입니다. 사과 {na}개와 배 {nb}개를 사고 "
            f"전체 금액에서 {hal}할을 할인받았습니다. 얼마를 내나요?",
            [f"{a:,} × {na} + {b:,} × {nb} = {total:,}", f"{hal}할 할인이면 {10 - hal}/10을 냅니다.",
             f"{total:,} × {10 - hal}/10 = {format_number(pay)}"],
            f"({a}*{na}+{b}*{nb})*(10-{hal})/10", pay, "원")


def _ride_time(r):
    km, speed = r.randint(3, 40), r.choice([4, 5, 6, 8, 10, 12, 15, 20])
    hours = Fraction(km, speed)
    return (f"{km}km를 시속 {speed}km로 가면 몇 시간이 걸리나요? (분수로 답하세요)",
            [f"{km} ÷ {speed} = {format_number(hours)}"], f"{km}/{speed}", hours, "시간")


def _water(r):
    liters, people = r.randint(1, 6), r.randint(2, 6)
    drank = r.choice([2, 3, 4])
    share = Fraction(liters, people)
    left = share - share / drank
    return (f"물 {liters}L를 {people}명이 똑같이 나눈 뒤, 한 명이 자기 몫의 1/{drank}을 마셨습니다. "
            f"그 사람에게 남은 물은 몇 L인가요?",
            [f"한 명의 몫: {liters} ÷ {people} = {format_number(share)}",
             f"남은 양: {format_number(share)} × ({drank}-1)/{drank} = {format_number(left)}"],
            f"{liters}/{people}-{liters}/{people}/{drank}", left, "L")


def _wage(r):
    wage, hours, days = r.choice([9860, 10000, 10030, 12000]), r.randint(2, 8), r.randint(2, 6)
    bonus = r.randint(1, 5) * 1000
    total = wage * hours * days + bonus
    return (f"시급 {_won(wage)}으로 하루 {hours}시간씩 {days}일 일하고 교통비 {_won(bonus)}을 더 받았습니다. "
            f"모두 얼마인가요?",
            [f"{wage:,} × {hours} × {days} = {wage * hours * days:,}",
             f"{wage * hours * days:,} + {bonus:,} = {total:,}"],
            f"{wage}*{hours}*{days}+{bonus}", Fraction(total), "원")


TEMPLATES = {
    1: (_add, _sub),
    2: (_times, _share, _price, _minutes),
    3: (_change, _discount, _not_hal, _minutes),
    4: (_distance, _pizza, _discount, _not_hal),
    5: (_shopping, _ride_time, _water, _wage),
}


def make(rng: random.Random, level: int) -> Draft:
    template = rng.choice(TEMPLATES[level])
    prompt, steps, expr, value, unit = template(rng)
    # The split key is the arithmetic itself: the same sum in other words stays in one split.
    meta = {"expr": expr, "unit": unit, "template": template.__name__.strip("_"), "steps": steps}
    return Draft(prompt, format_number(value), meta, key=expr)


def check(example: dict, answer: str) -> tuple[float, object]:
    got = parse_number(answer)
    if got is None:
        return 0.0, None
    return float(got == Fraction(example["answer"])), format_number(got)


def solution(example: dict) -> str:
    steps = example["meta"]["steps"]
    return "\n".join(steps + [f"정답: {example['answer']}"])
