"""Small fixtures shared by tests: a tokenizer and a model trained or initialised in seconds."""

from __future__ import annotations

import functools

KOREAN_SAMPLE = [
    "대한민국은 민주공화국이다. 대한민국의 주권은 국민에게 있고, 모든 권력은 국민으로부터 나온다.",
    "안녕하세요, 저는 새싹입니다. 2024년 3월 15일에 서울에서 만났어요.",
    "사과 3개와 배 2개를 샀습니다. 모두 12,000원이었습니다.",
    "오늘은 월요일이고 내일은 화요일입니다. 정답: 화요일",
    "리브레오피스는 자유 소프트웨어 사무용 프로그램입니다. 문서를 열고 저장할 수 있습니다.",
    "학생들은 도서관에서 책을 읽고, 친구와 함께 공부를 했다.",
]


@functools.lru_cache(maxsize=None)
def tiny_tokenizer(vocab_size: int = 512):
    from saessak.tokenizer import train_tokenizer

    return train_tokenizer(KOREAN_SAMPLE * 20, vocab_size)


def tiny_config(vocab_size: int, **overrides):
    from saessak.model import ModelConfig

    kw = dict(vocab_size=vocab_size, hidden_size=64, intermediate_size=160, num_hidden_layers=2,
              num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256)
    kw.update(overrides)
    return ModelConfig(**kw)


def tiny_model(vocab_size: int = 512, seed: int = 0, **overrides):
    from saessak.model import Llama

    model = Llama(tiny_config(vocab_size, **overrides))
    model.init_weights(seed)
    return model.eval()
