"""Imported families against transformers itself: logits, greedy generation, chat-template ids and
the assistant mask (issue 14). Checkpoints are tiny random ones made here (tests/hf_fixtures.py)."""

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from saessak.model.checkpoint import load_model  # noqa: E402
from saessak.model.engine import Engine, SamplingParams  # noqa: E402
from saessak.tokenizer.chat_format import render  # noqa: E402
from saessak.tokenizer.imported import ImportedTokenizer  # noqa: E402
from tests.hf_fixtures import conversation, make_checkpoint  # noqa: E402

FAMILIES = ["llama", "qwen2", "qwen3", "mistral"]


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("hf")
    # Qwen3 sharded (index + several files), Llama 3 with its template in chat_template.jinja.
    return {f: make_checkpoint(f, root / f, shard=f == "qwen3", template_file=f == "llama") for f in FAMILIES}


@pytest.mark.parametrize("family", FAMILIES)
def test_logits_and_greedy_tokens_equal_transformers(checkpoints, family):
    path = checkpoints[family]
    ours = load_model(path).eval()
    ref = transformers.AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    assert type(ref).__name__ == ours.config.architecture
    gen = torch.Generator().manual_seed(1)
    ids = torch.randint(0, ours.config.vocab_size, (2, 48), generator=gen)
    with torch.no_grad():
        diff = (ours(ids) - ref(ids).logits).abs().max().item()
    assert diff <= 1e-4, f"{family}: max |logit difference| {diff}"

    tok = ImportedTokenizer.from_folder(path)
    prompt = render(tok, conversation()[:2], add_generation_prompt=True).ids
    with torch.no_grad():
        out = ref.generate(torch.tensor([prompt]), max_new_tokens=32, min_new_tokens=32, do_sample=False,
                           eos_token_id=None, pad_token_id=tok.pad_id)
    expected = out[0, len(prompt):].tolist()
    engine = Engine(ours, tok, max_batch_size=2)
    got = engine.generate([prompt], SamplingParams(max_tokens=32, temperature=0.0, stop_token_ids=()))[0]
    # These seeded random models never emit their end token in 32 steps, so all 32 are compared.
    assert len(got.token_ids) == 32 and got.token_ids == expected


@pytest.mark.parametrize("family", FAMILIES)
def test_chat_template_ids_and_assistant_mask(checkpoints, family):
    from transformers import AutoTokenizer

    path = checkpoints[family]
    conv = conversation()
    if family == "mistral":  # Mistral's template folds the system prompt into the first [INST]
        conv = conv[:]
    hf_tok = AutoTokenizer.from_pretrained(path)
    tok = ImportedTokenizer.from_folder(path)
    for gen in (False, True):
        msgs = conv if not gen else conv[:4]
        r = render(tok, msgs, add_generation_prompt=gen)
        expected = hf_tok.apply_chat_template(msgs, tokenize=True, add_generation_prompt=gen)
        expected = expected["input_ids"] if isinstance(expected, dict) or hasattr(expected, "keys") else expected
        assert r.ids == list(expected)
    r = render(tok, conv)
    # The trained tokens are exactly each assistant reply followed by its end token.
    runs, cur = [], []
    for i, m in zip(r.ids, r.loss_mask):
        if m:
            cur.append(i)
        elif cur:
            runs.append(cur)
            cur = []
    if cur:
        runs.append(cur)
    replies = [m["content"] for m in conv if m["role"] == "assistant"]
    assert len(runs) == len(replies)
    for run, reply in zip(runs, replies):
        assert run[-1] in tok.stop_ids
        assert tok.decode(run[:-1]).strip() == reply


def test_a_bf16_checkpoint_loads_in_bf16_without_an_fp32_copy(tmp_path):
    """The weights go from the file straight into a model built on the meta device, in their dtype."""
    path = make_checkpoint("qwen2", tmp_path / "bf16", dtype="bfloat16")
    model = load_model(path)
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    ref = transformers.AutoModelForCausalLM.from_pretrained(path, dtype=torch.bfloat16).eval()
    ids = torch.randint(0, model.config.vocab_size, (1, 16), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours, theirs = model.eval()(ids).float(), ref(ids).logits.float()
    # bf16 rounds differently op by op; the two agree to bf16's precision on logits of this size.
    assert (ours - theirs).abs().max().item() <= 0.05 * theirs.abs().max().item()


def test_lora_reference_is_the_base_with_adapters_off(checkpoints):
    """GRPO's reference under LoRA: the same module with adapters disabled gives the base's logits."""
    pytest.importorskip("peft")
    from saessak.model.lora import BaseOnly, LoraSettings, attach, counts, merge

    model = load_model(checkpoints["qwen2"]).eval()
    ids = torch.randint(0, model.config.vocab_size, (1, 12), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        base = model(ids)
    lora = attach(model, LoraSettings(lora_r=4, lora_targets="q_proj,v_proj,down_proj"))
    c = counts(model)
    assert 0 < c["trainable_params"] < c["params"]
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)  # a trained adapter
        adapted, reference = model(ids), BaseOnly(lora)(ids)
        assert torch.equal(reference, base)
        assert (adapted - base).abs().max() > 1e-3
        assert torch.equal(model(ids), adapted)  # switched back on afterwards
        # GRPO reads the reference's log-probs through its body and head apart: the base's too
        from saessak.rl.grpo import Seq, completion_logprobs, micro_batch
        mb = micro_batch([Seq(ids[0, :5].tolist(), ids[0, 5:].tolist(), 1.0, True)], 0, "cpu")
        want = torch.log_softmax(base[0, 4:11].float(), -1).gather(-1, ids[0, 5:12, None])[:, 0]
        assert torch.allclose(completion_logprobs(BaseOnly(lora), mb, 1.0)[0][0], want, atol=1e-5)
        assert not torch.allclose(completion_logprobs(model, mb, 1.0)[0][0], want, atol=1e-3)
        merged = merge(lora)(ids)
    assert (merged - adapted).abs().max() <= 1e-4
