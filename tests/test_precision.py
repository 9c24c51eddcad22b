"""Precision by measurement (saessak/model/precision.py) and the evaluation's answer-line stop."""

from __future__ import annotations

import types

import pytest
import torch

from saessak.errors import UserError
from saessak.model import model_config
from saessak.model.engine import Engine, SamplingParams, _matching_line_end
from saessak.tasks.base import ANSWER_LINE_STOP
from saessak.model import precision
from tests.helpers import tiny_tokenizer


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SAESSAK_CACHE", str(tmp_path))
    return tmp_path / "precision.json"


def _fake_measure(calls, bf16_faster: bool):
    def measure(shapes, rows, mode="train"):
        calls.append((mode, rows))
        fp32_s, bf16_s = (1.0, 0.4) if bf16_faster else (1.0, 2.0)
        return {"fp32_s": fp32_s, "bf16_s": bf16_s, "fp32_gflops": 100.0, "bf16_gflops": 100.0 * fp32_s / bf16_s}
    return measure


def test_auto_measures_once_then_reads_the_cache(cache, monkeypatch):
    calls = []
    monkeypatch.setattr(precision, "measure", _fake_measure(calls, bf16_faster=True))
    cfg = model_config("micro")
    first = precision.choose_dtype("cpu", "auto", cfg, rows=256)
    assert (first.dtype, first.source, first.speedup) == ("bf16", "measured", 2.5)
    again = precision.choose_dtype("cpu", None, cfg, rows=256)
    assert (again.dtype, again.source) == ("bf16", "cached") and len(calls) == 1
    # another shape or row count is another question
    precision.choose_dtype("cpu", "auto", model_config("cpu-tiny"), rows=256)
    assert len(calls) == 2
    assert cache.exists() and '"dtype": "bf16"' in cache.read_text()


def test_cache_is_invalidated_when_the_cpu_or_torch_changes(cache, monkeypatch):
    import saessak.ledger as ledger

    calls = []
    monkeypatch.setattr(precision, "measure", _fake_measure(calls, bf16_faster=False))
    cfg = model_config("micro")
    assert precision.choose_dtype("cpu", "auto", cfg).dtype == "fp32"
    assert precision.choose_dtype("cpu", "auto", cfg).source == "cached"
    real = ledger.cpu_info()
    monkeypatch.setattr(ledger, "cpu_info", lambda text=None: {**real, "cpu": "Another CPU Model 9000"})
    assert precision.choose_dtype("cpu", "auto", cfg).source == "measured"
    monkeypatch.setattr(torch, "__version__", "9.99.0+cpu")
    assert precision.choose_dtype("cpu", "auto", cfg).source == "measured"
    assert len(calls) == 3
    # ... and the earlier machine's verdict is still there for it
    monkeypatch.setattr(ledger, "cpu_info", lambda text=None: real)
    monkeypatch.undo()
    monkeypatch.setenv("SAESSAK_CACHE", str(cache.parent))
    assert precision.choose_dtype("cpu", "auto", cfg).source == "cached"


def test_explicit_dtype_wins_and_bad_values_are_user_errors(cache, monkeypatch):
    monkeypatch.setattr(precision, "measure", lambda *a, **k: pytest.fail("an explicit dtype must not measure"))
    assert precision.choose_dtype("cpu", "fp32", None).facts() == {"dtype": "fp32", "source": "given", "mode": "train"}
    assert precision.choose_dtype("cpu", "bf16", None).dtype == "bf16"
    with pytest.raises(UserError, match="--dtype 'fp8'"):
        precision.choose_dtype("cpu", "fp8", None)


def test_damaged_cache_is_measured_again(cache, monkeypatch):
    calls = []
    monkeypatch.setattr(precision, "measure", _fake_measure(calls, bf16_faster=True))
    cache.write_text("{not json")
    assert precision.choose_dtype("cpu", "auto", model_config("micro")).source == "measured"
    assert precision.choose_dtype("cpu", "auto", model_config("micro")).source == "cached"


def test_real_measurement_is_quick_and_counts_the_models_shapes():
    cfg = model_config("cpu-tiny")
    shapes = precision.linear_shapes(cfg)
    h, i = cfg.hidden_size, cfg.intermediate_size
    assert shapes[(h, i)] == 2 * cfg.num_hidden_layers and shapes[(i, h)] == cfg.num_hidden_layers
    assert shapes[(h, cfg.vocab_size)] == 1  # the (tied) lm_head runs once
    m = precision.measure(shapes, 128, "train")
    assert m["fp32_s"] > 0 and m["bf16_s"] > 0 and m["fp32_s"] + m["bf16_s"] < 2.0
    assert m["fp32_gflops"] > 0.5 and m["bf16_gflops"] > 0.5


# ----------------------------------------------------------------------------- answer-line stop


@pytest.mark.parametrize("text,sent,end", [
    ("먼저 조사를 고릅니다.\n정답: 을\n", 0, len("먼저 조사를 고릅니다.\n정답: 을")),
    ("정답:\n정답: 42\n더", 0, len("정답:\n정답: 42")),  # an empty answer line does not stop
    ("a\nb\n정답：３\nc\n", 4, len("a\nb\n정답：３")),  # full-width colon; lines before `sent` were checked
    ("정답: 1", 0, None),  # not completed yet
    ("| 이름 | 정답 |\n|---|---|\n", 0, None),  # a table header is not an answer line
])
def test_matching_line_end(text, sent, end):
    assert _matching_line_end(text, sent, ANSWER_LINE_STOP) == end


class _Scripted(torch.nn.Module):
    """Emits a fixed token script whatever the prompt (position decides the token)."""

    def __init__(self, script, vocab, prompt_len):
        super().__init__()
        self.script, self.vocab, self.plen = script, vocab, prompt_len
        self.dummy = torch.nn.Parameter(torch.zeros(1))
        self.config = types.SimpleNamespace(vocab_size=vocab, max_position_embeddings=128, num_hidden_layers=1,
                                            num_key_value_heads=1, head_dim=2)

    def hidden_states(self, ids, pos, cache=None, attn_mask=None):
        return pos.float().unsqueeze(-1)

    def lm_head(self, h):
        idx = (h[..., 0].long() - (self.plen - 1)).clamp(0, len(self.script) - 1)
        out = torch.full((*h.shape[:-1], self.vocab), -1e4)
        return out.scatter(-1, torch.tensor(self.script)[idx].unsqueeze(-1), 0.0)


def test_engine_ends_a_completion_at_its_answer_line():
    tok = tiny_tokenizer()
    script = tok.encode("조사를 고릅니다.\n정답: 을\n그리고 더 씁니다 정답: 를\n") + [tok.eot_id]
    prompt = [tok.bos_id] + tok.encode("문제")
    engine = Engine(_Scripted(script, tok.vocab_size, len(prompt)), tok, max_batch_size=4)
    free, cut = engine.generate([prompt, prompt], [SamplingParams(max_tokens=60, temperature=0),
                                                   SamplingParams(max_tokens=60, temperature=0,
                                                                  stop_at_line=ANSWER_LINE_STOP)])
    assert free.text.startswith("조사를 고릅니다.\n정답: 을\n그리고") and free.finish_reason == "stop"
    assert cut.text == "조사를 고릅니다.\n정답: 을" and cut.finish_reason == "stop"
    assert len(cut.token_ids) < len(free.token_ids)
    with pytest.raises(UserError, match="stop_at_line"):
        engine.generate([prompt], SamplingParams(stop_at_line="("))
