"""vLLM serves `saessak export hf` of a run and answers exactly like `saessak serve` on that run.

Slow (vLLM takes minutes to start on CPU) and needs the separate vLLM environment that
`bash scripts/vllm_env.sh` creates (skipped with that instruction when it is absent). Both servers
are started the way bench/serve_vs_vllm.py starts them; the model is a tiny chat model trained in
the test to answer a few Korean questions, so its replies are real Korean text whose first token
carries the word-boundary "▁" (the case where vLLM used to show a leading space). Its replies to
unseen prompts are noise that may contain broken UTF-8 (byte tokens that form no character): their
tokens must still be equal, but their text is compared only where it is valid UTF-8, because the
two sides replace invalid bytes differently (saessak: one U+FFFD per maximal invalid sequence,
Python's rule; tokenizers' ByteFallback: one per byte; docs/EXPORT.md).
"""

from __future__ import annotations

import os

import pytest

from tests.helpers import tiny_tokenizer
from tests.serve_util import DEMO_CHATS, train_demo_chat_model

pytestmark = pytest.mark.slow

CONVERSATIONS = [[{"role": "user", "content": q}] for q, _ in DEMO_CHATS] + [
    [{"role": "system", "content": "너는 새싹이야."}, {"role": "user", "content": "안녕하세요"}],
    [{"role": "user", "content": "안녕하세요"}, {"role": "assistant", "content": DEMO_CHATS[0][1]},
     {"role": "user", "content": "오늘은 월요일이야. 내일은?"}],
    [{"role": "user", "content": "서울의 봄 날씨는 어떤가요?"}],
]
MAX_TOKENS = 96  # the memorised answers end with <|end|> well before this


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    from bench.serve_vs_vllm import start_saessak, start_vllm, vllm_python
    from saessak.export.hf import export_hf
    from tests.run_fixture import make_run

    py = vllm_python(None)
    if py is None:
        pytest.skip("vLLM environment not found (SAESSAK_VLLM_VENV or ${SAESSAK_CACHE:-~/.cache/saessak}/vllm-venv): "
                    "create it with `bash scripts/vllm_env.sh`")
    os.environ["HF_HUB_OFFLINE"] = "1"
    root = tmp_path_factory.mktemp("vllm")
    run = make_run(root / "run", stages=("sft",))
    # head_dim 32: vLLM's CPU attention supports 32, 64, 80, 96, ... (not the helper's default 24)
    train_demo_chat_model(run / "sft" / "final", num_attention_heads=3, num_key_value_heads=3)
    hf_dir = export_hf(run, root / "hf", stage="sft")
    ours = start_saessak(run, threads=1, max_batch=8, workdir=root)
    try:
        theirs = start_vllm(py, hf_dir, threads=1, max_batch=8, max_len=256, workdir=root)
    except Exception:
        ours.stop()
        raise
    yield run, hf_dir, ours, theirs
    theirs.stop()
    ours.stop()


def _valid_utf8(ids) -> bool:
    from saessak.tokenizer.token_text import token_bytes_table

    table = token_bytes_table(tiny_tokenizer())
    try:
        b"".join(table[i] for i in ids).decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False


def _client(server):
    from openai import OpenAI

    return OpenAI(base_url=server.base + "/v1", api_key="unused", max_retries=0, timeout=300)


def _chat(server, messages, **extra):
    return _client(server).chat.completions.create(model=server.model, messages=messages, max_tokens=MAX_TOKENS,
                                                   temperature=0, **extra)


def _stream(server, messages):
    chunks = list(_client(server).chat.completions.create(
        model=server.model, messages=messages, max_tokens=MAX_TOKENS, temperature=0, stream=True,
        stream_options={"include_usage": True}))
    deltas = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    usage = [c.usage for c in chunks if c.usage]
    return deltas, finish, usage


def test_greedy_replies_are_the_same_tokens_and_text(served):
    from saessak.model.checkpoint import load_model
    from saessak.model.engine import Engine, SamplingParams
    from saessak.tokenizer.chat_format import render

    run, _, ours, theirs = served
    tok = tiny_tokenizer()
    prompts = [render(tok, m, add_generation_prompt=True).ids for m in CONVERSATIONS]
    engine = Engine(load_model(run / "sft" / "final").eval(), tok)  # the engine `saessak serve` runs
    reference = engine.generate(prompts, SamplingParams(max_tokens=MAX_TOKENS, temperature=0))
    compared = 0
    for messages, prompt, ref in zip(CONVERSATIONS, prompts, reference):
        a = _chat(ours, messages)
        b = _chat(theirs, messages, extra_body={"return_token_ids": True})
        # vLLM tokenised the chat template to our ids and generated our greedy tokens
        assert b.prompt_token_ids == prompt
        assert b.choices[0].token_ids == ref.token_ids
        assert a.choices[0].finish_reason == b.choices[0].finish_reason == ref.finish_reason
        assert (a.usage.prompt_tokens, a.usage.completion_tokens) == (b.usage.prompt_tokens, b.usage.completion_tokens)
        assert a.choices[0].message.content == ref.text
        if _valid_utf8(ref.token_ids):
            assert b.choices[0].message.content == ref.text
            assert not ref.text[:1].isspace()
            compared += tok.id_to_token(ref.token_ids[0]).startswith("\u2581")
    assert compared >= 3  # replies starting with "▁" (vLLM showed a leading space there before the fix)


def test_streaming_gives_the_same_text_on_both(served):
    _, _, ours, theirs = served
    for messages in CONVERSATIONS:
        b = _chat(theirs, messages, extra_body={"return_token_ids": True})
        whole = _chat(ours, messages).choices[0].message.content
        a_deltas, a_finish, a_usage = _stream(ours, messages)
        b_deltas, b_finish, b_usage = _stream(theirs, messages)
        assert "".join(a_deltas) == whole
        assert a_finish == b_finish and len(a_finish) == 1
        assert a_usage[0].completion_tokens == b_usage[0].completion_tokens
        if _valid_utf8(b.choices[0].token_ids):
            assert "".join(b_deltas) == whole
            assert not a_deltas[0][:1].isspace() and not b_deltas[0][:1].isspace()


def test_the_openai_client_sees_the_same_api(served):
    _, _, ours, theirs = served
    for server in (ours, theirs):
        models = _client(server).models.list().data
        assert [m.id for m in models] == [server.model]
        r = _chat(server, CONVERSATIONS[0], n=1, stop=["."])
        assert r.object == "chat.completion" and r.choices[0].message.role == "assistant"
        assert "." not in r.choices[0].message.content
    a, b = _chat(ours, CONVERSATIONS[0], stop=["."]), _chat(theirs, CONVERSATIONS[0], stop=["."])
    assert a.choices[0].message.content == b.choices[0].message.content
    assert a.choices[0].finish_reason == b.choices[0].finish_reason


def test_transformers_pipeline_gives_the_same_reply(served):
    """transformers' text-generation pipeline cuts the prompt's text off the whole text (prefix-aware)."""
    import torch
    from transformers import pipeline

    _, hf_dir, ours, _ = served
    gen = pipeline("text-generation", model=str(hf_dir), dtype=torch.float32)
    for messages in CONVERSATIONS[:3]:
        got = gen(messages, max_new_tokens=MAX_TOKENS, do_sample=False, return_full_text=False)[0]["generated_text"]
        assert got == _chat(ours, messages).choices[0].message.content
