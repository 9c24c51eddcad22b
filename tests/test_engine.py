"""The generation engine: KV-cache decoding matches a plain forward loop; batching, sampling, stops."""

from __future__ import annotations

import pytest
import torch

from saessak.model.engine import Engine, SamplingParams, counter_uniform, sample_tokens
from saessak.errors import UserError
from saessak.tokenizer.token_text import TokenTextDecoder, decode_ids, token_bytes_table
from saessak.training.optim import build_optimizer
from tests.helpers import tiny_model, tiny_tokenizer

PROMPTS = ["대한민국의 주권은", "안녕하세요", "사과 3개와 배 2개를 샀습니다. 모두", "오늘은"]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # tiny matrices: one thread is faster, and much faster when other jobs share the cores
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tok():
    return tiny_tokenizer()


@pytest.fixture(scope="module")
def model(tok):
    # a wide init gives varied greedy continuations (the default init repeats one token)
    return tiny_model(tok.vocab_size, seed=1, initializer_range=0.3)


@pytest.fixture(scope="module")
def prompts(tok):
    return [[tok.bos_id] + tok.encode(p) for p in PROMPTS]


def reference_greedy(model, prompt, max_tokens, stop_ids):
    """No cache: re-run the whole sequence for every token (fp32)."""
    ids = list(prompt)
    out, logprobs = [], []
    with torch.no_grad():
        for _ in range(max_tokens):
            logits = model(torch.tensor([ids]))[0, -1].float()
            t = int(logits.argmax())
            out.append(t)
            logprobs.append(float(torch.log_softmax(logits, -1)[t]))
            ids.append(t)
            if t in stop_ids:
                break
    return out, logprobs


def test_greedy_matches_no_cache_reference(model, tok, prompts):
    engine = Engine(model, tok)
    sp = SamplingParams(max_tokens=24, temperature=0, logprobs=True)
    got = engine.generate(prompts, sp)
    for prompt, c in zip(prompts, got):
        ref, ref_lp = reference_greedy(model, prompt, 24, {tok.eot_id})
        assert c.token_ids == ref
        assert c.prompt_ids == prompt
        assert c.logprobs == pytest.approx(ref_lp, abs=1e-4)
        assert c.finish_reason == ("stop" if ref[-1] == tok.eot_id else "length")
        if "\ufffd" not in tok.decode(ref):  # invalid bytes: see test_token_text_matches_tokenizer
            assert c.text == tok.decode(ref)


def test_mixed_length_batch_equals_one_at_a_time(model, tok, prompts):
    params = [SamplingParams(max_tokens=16, temperature=0.9, top_k=50, seed=i) for i in range(len(prompts))]
    batched = Engine(model, tok).generate(prompts, params)
    engine = Engine(model, tok)
    alone = [engine.generate([p], [sp])[0] for p, sp in zip(prompts, params)]
    assert [c.token_ids for c in batched] == [c.token_ids for c in alone]


def test_more_prompts_than_slots_are_queued(model, tok, prompts):
    sp = SamplingParams(max_tokens=10, temperature=0)
    many = prompts * 3
    small = Engine(model, tok, max_batch_size=3).generate(many, sp)
    big = Engine(model, tok).generate(many, sp)
    assert [c.token_ids for c in small] == [c.token_ids for c in big]
    assert all(len(c.token_ids) >= 1 for c in small)


def test_seed_reproducible_regardless_of_batch_mates(model, tok, prompts):
    engine = Engine(model, tok)
    sp = SamplingParams(max_tokens=20, temperature=1.0, seed=1234)
    alone = engine.generate([prompts[0]], sp)[0]
    with_mates = engine.generate(
        [prompts[2], prompts[0], prompts[1]],
        [SamplingParams(max_tokens=7, temperature=1.0), sp, SamplingParams(max_tokens=30, seed=5)],
    )[1]
    assert alone.token_ids == with_mates.token_ids
    others = {tuple(engine.generate([prompts[0]], SamplingParams(max_tokens=20, seed=s))[0].token_ids)
              for s in range(5)}
    assert len(others) > 1  # different seeds give different samples


def test_identical_prompts_sample_independently(model, tok, prompts):
    # RL asks for G completions of one prompt: the shared prefill must not make them identical.
    outs = Engine(model, tok).generate([prompts[1]] * 8, SamplingParams(max_tokens=12, temperature=1.0))
    assert len({tuple(c.token_ids) for c in outs}) > 1


def test_top_k_one_and_tiny_top_p_are_greedy(model, tok, prompts):
    engine = Engine(model, tok)
    greedy = engine.generate(prompts, SamplingParams(max_tokens=12, temperature=0))
    k1 = engine.generate(prompts, SamplingParams(max_tokens=12, temperature=1.5, top_k=1, seed=3))
    p0 = engine.generate(prompts, SamplingParams(max_tokens=12, temperature=1.5, top_p=1e-6, seed=3))
    assert [c.token_ids for c in k1] == [c.token_ids for c in greedy]
    assert [c.token_ids for c in p0] == [c.token_ids for c in greedy]


def test_sampler_follows_the_distribution():
    logits = torch.log(torch.tensor([[0.1, 0.6, 0.3, 0.0]])).expand(4000, 4)
    n = logits.shape[0]
    tokens = sample_tokens(logits.clone(), torch.ones(n), torch.zeros(n, dtype=torch.long), torch.ones(n),
                           torch.arange(n), torch.zeros(n, dtype=torch.long))
    freq = torch.bincount(tokens, minlength=4).float() / n
    assert freq.tolist() == pytest.approx([0.1, 0.6, 0.3, 0.0], abs=0.03)
    top_p = sample_tokens(logits.clone(), torch.ones(n), torch.zeros(n, dtype=torch.long), torch.full((n,), 0.65),
                          torch.arange(n), torch.zeros(n, dtype=torch.long))
    assert set(top_p.tolist()) == {1, 2}  # 0.6 alone is below 0.65, so the 0.3 token stays
    u = counter_uniform(torch.arange(10000), torch.zeros(10000, dtype=torch.long))
    assert 0 <= float(u.min()) and float(u.max()) < 1 and abs(float(u.mean()) - 0.5) < 0.02


def test_stop_token_ids_and_max_tokens(model, tok, prompts):
    engine = Engine(model, tok)
    free = engine.generate([prompts[0]], SamplingParams(max_tokens=20, temperature=0))[0]
    assert free.finish_reason == "length" and len(free.token_ids) == 20
    stop_tok = free.token_ids[5]
    first = free.token_ids.index(stop_tok)
    c = engine.generate([prompts[0]], SamplingParams(max_tokens=20, temperature=0, stop_token_ids=[stop_tok]))[0]
    assert c.finish_reason == "stop"
    assert c.token_ids == free.token_ids[: first + 1]  # the stop token is kept in token_ids...
    assert c.text == tok.decode(free.token_ids[:first])  # ...but not in the text


def test_context_limit_ends_with_length(model, tok, prompts):
    engine = Engine(model, tok, max_seq_len=len(prompts[0]) + 5)
    c = engine.generate([prompts[0]], SamplingParams(max_tokens=50, temperature=0))[0]
    assert c.finish_reason == "length" and len(c.token_ids) == 5
    ref, _ = reference_greedy(model, prompts[0], 5, set())
    assert c.token_ids == ref
    with pytest.raises(UserError, match="context limit"):
        engine.add_request(list(range(8, 8 + len(prompts[0]) + 5)), SamplingParams())


def test_abort_frees_slot_and_others_continue(model, tok, prompts):
    engine = Engine(model, tok, max_batch_size=2)
    sp = SamplingParams(max_tokens=15, temperature=0)
    a = engine.add_request(prompts[0], sp)
    b = engine.add_request(prompts[1], sp)
    c = engine.add_request(prompts[2], sp)  # waits: only two slots
    engine.step()
    engine.step()
    assert engine.num_running() == 2 and engine.num_waiting() == 1
    engine.abort(a)
    assert engine.num_running() == 1
    outs = engine.step()
    ab = [o for o in outs if o.request_id == a]
    assert len(ab) == 1 and ab[0].finished and ab[0].finish_reason == "abort"
    assert engine.num_running() == 2  # c took the freed slot
    tokens = {b: [], c: []}
    for o in outs:
        if o.request_id != a:
            tokens[o.request_id] += o.new_token_ids
    while engine.has_unfinished():
        for o in engine.step():
            assert o.request_id != a
            tokens[o.request_id] += o.new_token_ids
    solo = Engine(model, tok).generate([prompts[1], prompts[2]], sp)
    assert solo[1].token_ids == tokens[c]
    assert solo[0].token_ids[2:] == tokens[b]  # b's first two tokens came before we started counting


def test_requests_join_and_leave_between_steps(model, tok, prompts):
    sp_short = SamplingParams(max_tokens=4, temperature=0)
    sp_long = SamplingParams(max_tokens=18, temperature=0.8, seed=9)
    engine = Engine(model, tok)
    got: dict[str, list[int]] = {}
    text: dict[str, str] = {}
    ids = [engine.add_request(prompts[0], sp_long)]
    for i in range(12):
        if i in (2, 5, 6):
            ids.append(engine.add_request(prompts[1 + len(ids) % 3], sp_short))
        for o in engine.step():
            got.setdefault(o.request_id, []).extend(o.new_token_ids)
            text[o.request_id] = text.get(o.request_id, "") + o.delta_text
    while engine.has_unfinished():
        for o in engine.step():
            got.setdefault(o.request_id, []).extend(o.new_token_ids)
            text[o.request_id] = text.get(o.request_id, "") + o.delta_text
    solo = Engine(model, tok)
    for k, rid in enumerate(ids):
        prompt = prompts[0] if k == 0 else prompts[1 + k % 3]
        want = solo.generate([prompt], sp_long if k == 0 else sp_short)[0]
        assert got[rid] == want.token_ids
        assert text[rid] == want.text


def test_bf16_copy_follows_source_weight_updates(tok, prompts):
    model = tiny_model(tok.vocab_size, seed=2, initializer_range=0.3)
    engine = Engine(model, tok, dtype=torch.bfloat16)
    assert next(model.parameters()).dtype == torch.float32  # the caller's model is untouched
    sp = SamplingParams(max_tokens=8, temperature=0)
    before = engine.generate(prompts, sp)
    with torch.no_grad():
        model.lm_head.weight.mul_(-1.0)  # an "optimizer step" that changes every greedy choice
    after = engine.generate(prompts, sp)
    ref, _ = reference_greedy(model, prompts[0], 1, set())
    assert after[0].token_ids[0] == ref[0]
    assert [c.token_ids for c in before] != [c.token_ids for c in after]
    # the training stages' own optimizer (fused AdamW: no version bump) must re-sync the copy too
    opt = build_optimizer(model, lr=0.2, weight_decay=0.0)
    model(torch.tensor([prompts[0]])).logsumexp(-1).sum().backward()
    opt.step()
    stepped = engine.generate(prompts, sp)
    fresh = Engine(model, tok, dtype=torch.bfloat16).generate(prompts, sp)
    assert [c.token_ids for c in stepped] == [c.token_ids for c in fresh]
    assert [c.token_ids for c in stepped] != [c.token_ids for c in after]


def test_bad_requests_raise_user_errors(model, tok):
    engine = Engine(model, tok)
    with pytest.raises(UserError, match="max_tokens"):
        engine.add_request([1, 2], SamplingParams(max_tokens=0))
    with pytest.raises(UserError, match="top_p"):
        engine.add_request([1, 2], SamplingParams(top_p=0))
    with pytest.raises(UserError, match="at least one token"):
        engine.add_request([], SamplingParams())
    with pytest.raises(UserError, match="vocabulary"):
        engine.add_request([1, 10**6], SamplingParams())


# -- text streaming with a scripted model ---------------------------------------------------------

class ScriptedModel(torch.nn.Module):
    """Emits a fixed token script after a prompt of known length (to test text handling exactly)."""

    def __init__(self, vocab_size: int, prompt_len: int, script: list[int], max_pos: int = 128):
        super().__init__()
        from tests.helpers import tiny_config

        self.config = tiny_config(vocab_size, max_position_embeddings=max_pos)
        self.lm_head = torch.nn.Linear(max_pos, vocab_size, bias=False)
        with torch.no_grad():
            self.lm_head.weight.zero_()
            for i, t in enumerate(script):
                self.lm_head.weight[t, prompt_len - 1 + i] = 100.0

    def hidden_states(self, input_ids, position_ids, kv_cache=None):
        return torch.nn.functional.one_hot(position_ids, self.config.max_position_embeddings).float()


KOREAN_REPLY = "네, 뷁햏 쀍! 좋아요 😀 끝"


def stream(engine, prompt, params):
    rid = engine.add_request(prompt, params)
    deltas, reason = [], None
    while engine.has_unfinished():
        for o in engine.step():
            assert o.request_id == rid
            deltas.append(o.delta_text)
            reason = o.finish_reason
    return deltas, reason


def test_byte_fallback_korean_streams_whole_characters(tok):
    ids = tok.encode(KOREAN_REPLY)
    assert sum(8 <= t < 8 + 256 for t in ids) >= 8  # rare syllables and the emoji fall back to bytes
    prompt = [tok.bos_id, tok.role_ids["user"], tok.role_ids["assistant"]]
    model = ScriptedModel(tok.vocab_size, len(prompt), ids + [tok.eot_id])
    deltas, reason = stream(Engine(model, tok), prompt, SamplingParams(max_tokens=100, temperature=0))
    assert reason == "stop"
    assert "".join(deltas) == tok.decode(ids) == KOREAN_REPLY
    assert all("\ufffd" not in d for d in deltas)
    assert any(d == "" for d in deltas)  # some steps produced only part of a character


def test_stop_string_cuts_text_and_is_never_leaked(tok):
    ids = tok.encode(KOREAN_REPLY)
    prompt = [tok.bos_id, tok.role_ids["assistant"]]
    model = ScriptedModel(tok.vocab_size, len(prompt), ids + [tok.eot_id])
    engine = Engine(model, tok)
    deltas, reason = stream(engine, prompt, SamplingParams(max_tokens=100, temperature=0, stop=["좋아요", "쀍!"]))
    assert reason == "stop"
    assert "".join(deltas) == "네, 뷁햏 "
    assert "쀍" not in "".join(deltas)
    # the non-streaming path gives the same text
    c = engine.generate([prompt], SamplingParams(max_tokens=100, temperature=0, stop=["쀍!"]))[0]
    assert c.text == "네, 뷁햏 " and c.finish_reason == "stop"
    # a partial match that never completes is released at the end
    deltas, reason = stream(engine, prompt, SamplingParams(max_tokens=100, temperature=0, stop=["좋아요 😀 안녕"]))
    assert "".join(deltas) == KOREAN_REPLY and reason == "stop"


def test_token_text_matches_tokenizer_and_is_prefix_stable(tok):
    from tests.helpers import KOREAN_SAMPLE

    table = token_bytes_table(tok)
    for text in KOREAN_SAMPLE + [KOREAN_REPLY, "  두 칸 공백과 tab\t그리고 \n 줄바꿈", "ASCII only"]:
        ids = tok.encode(text)
        assert decode_ids(table, ids) == tok.decode(ids)
        assert decode_ids(table, [tok.bos_id, tok.role_ids["assistant"]] + ids + [tok.eot_id]) == tok.decode(ids)
    gen = torch.Generator().manual_seed(0)
    compared = 0
    normal = [i for i in range(tok.vocab_size) if not 8 <= i < 8 + 256]
    rare = [tok.encode(ch) for ch in "뷁햏쀍😀"]  # each is a run of byte tokens
    for k in range(200):
        ids = [normal[j] for j in torch.randint(0, len(normal), (20,), generator=gen).tolist()]
        for j in torch.randint(0, 20, (3,), generator=gen).tolist():
            ids[j:j] = rare[j % 4]
        if k % 2:  # and half of them with random bytes, which may be invalid UTF-8
            ids[5:5] = torch.randint(8, 8 + 256, (3,), generator=gen).tolist()
        d = TokenTextDecoder(table)
        seen = []
        for t in ids:
            d.push([t])
            seen.append(d.emitted)
        d.flush()
        assert all(d.emitted.startswith(s) for s in seen)  # text once emitted never changes
        if "\ufffd" not in tok.decode(ids):
            assert d.emitted == tok.decode(ids)
            compared += 1
    assert compared > 20
