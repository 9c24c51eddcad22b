"""llama.cpp (through llama-cpp-python) loads our GGUF and computes what our model computes.

Slow: needs llama-cpp-python, which is built from source (about 15-20 minutes on 2 cores; see
docs/EXPORT.md). Skipped when it is not installed.
"""

import numpy as np
import pytest

pytestmark = pytest.mark.slow

llama_cpp = pytest.importorskip("llama_cpp")
torch = pytest.importorskip("torch")

from saessak.tokenizer.chat_format import render  # noqa: E402
from saessak.model.checkpoint import load_model  # noqa: E402
from saessak.export.gguf_export import export_gguf  # noqa: E402
from tests.helpers import KOREAN_SAMPLE, tiny_tokenizer  # noqa: E402
from tests.run_fixture import make_run  # noqa: E402


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    root = tmp_path_factory.mktemp("llamacpp")
    # Wider initial weights than training uses: spread-out logits, so greedy choices are not near-ties.
    run = make_run(root / "run", stages=("pretrain",), initializer_range=0.3)
    path = export_gguf(run, root / "m.gguf")
    # f32 KV cache (the default is f16, which alone moves logits by ~1e-2).
    llm = llama_cpp.Llama(model_path=str(path), n_ctx=256, n_threads=2, logits_all=True, verbose=False, seed=0,
                          type_k=llama_cpp.GGML_TYPE_F32, type_v=llama_cpp.GGML_TYPE_F32)
    return llm, load_model(run / "pretrain" / "final").eval()


def _llama_logits(llm, ids):
    llm.reset()
    llm.eval(ids)
    return np.array(llm.scores[: len(ids)])


def test_tokenizer_matches(pair):
    llm, _ = pair
    tok = tiny_tokenizer()
    for text in KOREAN_SAMPLE + ["숫자 12345, English words, 이모지 😀"]:
        assert llm.tokenize(text.encode("utf-8"), add_bos=False, special=False) == tok.encode(text), text
    chat = render(tok, [{"role": "user", "content": "안녕하세요"}], add_generation_prompt=True).ids
    text = "<s><|user|>안녕하세요<|end|><|assistant|>"
    assert llm.tokenize(text.encode("utf-8"), add_bos=False, special=True) == chat


def test_logits_match(pair):
    llm, ours = pair
    tok = tiny_tokenizer()
    ids = [tok.bos_id] + tok.encode(KOREAN_SAMPLE[0])
    with torch.no_grad():
        ref = ours(torch.tensor([ids]))[0].numpy()
    got = _llama_logits(llm, ids)
    np.testing.assert_allclose(got, ref, atol=2e-3, rtol=1e-3)


def test_greedy_tokens_match(pair):
    llm, ours = pair
    tok = tiny_tokenizer()
    prompt = render(tok, [{"role": "user", "content": "대한민국의 주권은 어디에 있나요?"}], True).ids
    ref = list(prompt)
    with torch.no_grad():
        for _ in range(32):
            ref.append(int(ours(torch.tensor([ref]))[0, -1].argmax()))
    got = list(prompt)
    llm.reset()
    llm.eval(got)
    for _ in range(32):
        nxt = int(np.argmax(llm.scores[len(got) - 1]))
        got.append(nxt)
        llm.eval([nxt])
    assert got == ref
