import pytest

from saessak.tokenizer.chat_format import CHAT_TEMPLATE, render, render_text
from saessak.errors import UserError
from tests.helpers import tiny_tokenizer

CONV = [
    {"role": "system", "content": "당신은 새싹입니다."},
    {"role": "user", "content": "사과 3개와 배 2개는 모두 몇 개인가요?"},
    {"role": "assistant", "content": "3 + 2 = 5\n정답: 5"},
]


def test_render_equals_encoding_the_whole_text():
    tok = tiny_tokenizer()
    for gen in (False, True):
        r = render(tok, CONV, add_generation_prompt=gen)
        assert r.ids == tok.encode(render_text(CONV, add_generation_prompt=gen))


def test_loss_mask_covers_only_assistant_content_and_its_end():
    tok = tiny_tokenizer()
    r = render(tok, CONV)
    trained = [i for i, m in zip(r.ids, r.loss_mask) if m]
    assert trained == tok.encode(CONV[2]["content"]) + [tok.eot_id]
    assert tok.decode(trained) == CONV[2]["content"]


def test_jinja_template_renders_the_same_text():
    jinja2 = pytest.importorskip("jinja2")
    out = jinja2.Template(CHAT_TEMPLATE).render(messages=CONV, add_generation_prompt=True, bos_token="<s>")
    assert out == render_text(CONV, add_generation_prompt=True)


@pytest.mark.parametrize("bad", [[], [{"role": "robot", "content": "x"}], [{"role": "user"}], "hi"])
def test_bad_messages_name_the_problem(bad):
    with pytest.raises(UserError):
        render(tiny_tokenizer(), bad)
