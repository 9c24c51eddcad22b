"""Hugging Face export: transformers loads the folder offline and behaves exactly like our model."""

import json
import os

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from saessak.tokenizer.chat_format import render  # noqa: E402
from saessak.model.checkpoint import load_model  # noqa: E402
from saessak.cli import main  # noqa: E402
from saessak.errors import UserError  # noqa: E402
from saessak.export.hf import export_hf  # noqa: E402
from tests.helpers import KOREAN_SAMPLE, tiny_tokenizer  # noqa: E402
from tests.run_fixture import make_run  # noqa: E402

os.environ["HF_HUB_OFFLINE"] = "1"


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("hf")
    run = make_run(root / "run")
    out = export_hf(run, root / "hf", stage="sft")
    return run, out


@pytest.fixture(scope="module")
def hf_pair(exported):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    run, out = exported
    tok = AutoTokenizer.from_pretrained(out, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(out, local_files_only=True, dtype=torch.float32).eval()
    ours = load_model(run / "sft" / "final").eval()
    return tok, model, ours


def test_folder_has_the_files_and_fields_transformers_needs(exported):
    _, out = exported
    names = {p.name for p in out.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
            "generation_config.json", "README.md"} <= names
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["architectures"] == ["LlamaForCausalLM"] and cfg["model_type"] == "llama"
    tok = tiny_tokenizer()
    gen = json.loads((out / "generation_config.json").read_text())
    assert gen["eos_token_id"][0] == tok.eot_id
    tcfg = json.loads((out / "tokenizer_config.json").read_text())
    assert tcfg["eos_token"] == "<|end|>" and tcfg["bos_token"] == "<s>" and tcfg["pad_token"] == "<pad>"
    assert not any(p.name.startswith(".") for p in out.parent.iterdir())  # no temporary leftovers


def test_logits_match_ours_in_fp32(hf_pair):
    tok, model, ours = hf_pair
    ids = tok(KOREAN_SAMPLE[:3], padding=False)["input_ids"]
    for seq in ids:
        x = torch.tensor([[1] + seq])
        with torch.no_grad():
            diff = (model(x).logits - ours(x)).abs().max().item()
        assert diff < 1e-4


def test_tokenizer_encodes_like_ours(hf_pair):
    tok, _, _ = hf_pair
    ours = tiny_tokenizer()
    for text in KOREAN_SAMPLE + ["숫자 12345와 English 섞기, 😀 이모지"]:
        assert tok.encode(text, add_special_tokens=False) == ours.encode(text)
        assert tok.decode(ours.encode(text), skip_special_tokens=True) == ours.decode(ours.encode(text))


def _template_ids(tok, messages, add_generation_prompt):
    out = tok.apply_chat_template(messages, add_generation_prompt=add_generation_prompt, tokenize=True)
    return list(out["input_ids"] if hasattr(out, "keys") else out)


def test_chat_template_gives_the_same_ids_as_our_renderer(hf_pair):
    tok, _, _ = hf_pair
    ours = tiny_tokenizer()
    conversations = [
        [{"role": "user", "content": "안녕하세요?"}],
        [{"role": "system", "content": "너는 새싹이야."}, {"role": "user", "content": "3 더하기 4는?"},
         {"role": "assistant", "content": "정답: 7"}, {"role": "user", "content": "고마워요!"}],
    ]
    for msgs in conversations:
        for gen in (False, True):
            assert _template_ids(tok, msgs, gen) == render(ours, msgs, add_generation_prompt=gen).ids


def test_greedy_generation_of_32_tokens_is_identical(hf_pair):
    tok, model, ours = hf_pair
    ours_tok = tiny_tokenizer()
    prompt = render(ours_tok, [{"role": "user", "content": "대한민국의 주권은 어디에 있나요?"}], True).ids
    stop = {ours_tok.eot_id, ours_tok.eos_id}
    ids = list(prompt)
    with torch.no_grad():
        for _ in range(32):  # reference greedy loop: full forward pass, argmax of the last position
            nxt = int(ours(torch.tensor([ids]))[0, -1].argmax())
            ids.append(nxt)
            if nxt in stop:
                break
        hf_out = model.generate(torch.tensor([prompt]), max_new_tokens=32, do_sample=False,
                                attention_mask=torch.ones(1, len(prompt), dtype=torch.long))
    assert hf_out[0].tolist() == ids
    assert len(ids) - len(prompt) >= 1


def test_model_card_carries_data_ledger_eval_and_licence(exported):
    _, out = exported
    card = (out / "README.md").read_text()
    assert card.startswith("---\nlicense: apache-2.0")
    assert "kolaw" in card and "GPL-3.0" in card  # data card summary with licence
    assert "KRW" in card and "pretrain" in card  # cost ledger
    assert "josa" in card and "+15.0 pt" in card  # eval with the RL gain
    assert "apply_chat_template" in card


def test_interrupted_export_leaves_no_folder_and_keeps_the_old_one(tmp_path, monkeypatch):
    import saessak.export.hf as hf

    run = make_run(tmp_path / "run", stages=("pretrain",))
    out = tmp_path / "hf"
    real = hf._write_json
    calls = []

    def dies_on_third_file(path, obj):
        calls.append(path)
        if len(calls) == 3:
            raise KeyboardInterrupt  # as if the user pressed Ctrl-C mid-export
        real(path, obj)

    monkeypatch.setattr(hf, "_write_json", dies_on_third_file)
    with pytest.raises(KeyboardInterrupt):
        hf.export_hf(run, out)
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []

    monkeypatch.setattr(hf, "_write_json", real)
    hf.export_hf(run, out)
    before = (out / "config.json").read_text()
    calls.clear()
    monkeypatch.setattr(hf, "_write_json", dies_on_third_file)
    with pytest.raises(KeyboardInterrupt):
        hf.export_hf(run, out)
    assert (out / "config.json").read_text() == before and (out / "README.md").exists()


def test_bad_inputs_are_clear_errors(tmp_path, capsys):
    run = make_run(tmp_path / "run", stages=("pretrain",))
    with pytest.raises(UserError, match="stage 'rl' is not complete"):
        export_hf(run, tmp_path / "o1", stage="rl")
    with pytest.raises(UserError, match="not a model stage"):
        export_hf(run, tmp_path / "o2", stage="data")
    with pytest.raises(UserError, match="run folder not found"):
        export_hf(tmp_path / "nope", tmp_path / "o3")
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.txt").write_text("do not delete")
    with pytest.raises(UserError, match="not an earlier export"):
        export_hf(run, precious)
    assert (precious / "thesis.txt").exists()
    assert main(["export", "hf", "--run", str(tmp_path / "nope"), "--out", str(tmp_path / "o4")]) == 2
    assert "run folder not found" in capsys.readouterr().err
    assert main(["export", "hf", "--run", str(run), "--out", str(tmp_path / "o5")]) == 0
    assert (tmp_path / "o5" / "config.json").exists()


def test_untied_output_head_round_trips(tmp_path):
    """GPU presets do not tie the embeddings: lm_head is its own tensor in both exports."""
    from transformers import AutoModelForCausalLM

    run = make_run(tmp_path / "run", stages=("pretrain",), tie_word_embeddings=False)
    out = export_hf(run, tmp_path / "hf")
    assert json.loads((out / "config.json").read_text())["tie_word_embeddings"] is False
    model = AutoModelForCausalLM.from_pretrained(out, local_files_only=True, dtype=torch.float32).eval()
    ours = load_model(run / "pretrain" / "final").eval()
    x = torch.tensor([[1] + tiny_tokenizer().encode(KOREAN_SAMPLE[1])])
    with torch.no_grad():
        assert (model(x).logits - ours(x)).abs().max().item() < 1e-4
    assert not torch.equal(model.lm_head.weight, model.model.embed_tokens.weight)


def test_model_card_usage_snippet_runs(exported, capsys):
    _, out = exported
    card = (out / "README.md").read_text()
    code = card.split("```python\n", 1)[1].split("```", 1)[0].replace('"PATH"', repr(str(out)))
    code = code.replace("max_new_tokens=64", "max_new_tokens=4")
    exec(compile(code, "model_card_snippet", "exec"), {})
    capsys.readouterr()


# -- prefix-aware detokenisation (how vLLM and transformers' pipeline turn a reply into text) --------

PREFIX_PROMPTS = [
    [{"role": "user", "content": "'다'에 받침이 있나요?"}],
    [{"role": "system", "content": "너는 새싹이야."}, {"role": "user", "content": "3 더하기 4는?"}],
    [{"role": "user", "content": "안녕하세요"}, {"role": "assistant", "content": "반갑습니다."},
     {"role": "user", "content": "오늘은 무슨 요일?"}],
]


def _prefix_aware(decode, prompt, reply):
    """text(prompt + reply) minus text(prompt): what a server that detokenizes with context sends."""
    before = decode(prompt)
    full = decode(prompt + reply)
    assert full.startswith(before)
    return full[len(before):]


def _decode_stream(tokenizer, prompt, reply, primed):
    """vLLM's incremental detokenizer: tokenizers' DecodeStream primed with the prompt's last
    `primed` ids (vLLM 0.32 prefills it with the whole prompt; older versions stepped a suffix)."""
    from tokenizers.decoders import DecodeStream

    stream = DecodeStream(ids=prompt[-primed:], skip_special_tokens=True)
    return "".join(stream.step(tokenizer, t) or "" for t in reply)


def _replies(run):
    """(prompt ids, reply ids, saessak's reply text): greedy replies of the micro model, and replies
    that start with a word-boundary "▁" token, as a trained model's do."""
    from saessak.model.engine import Engine, SamplingParams

    ours = tiny_tokenizer()
    prompts = [render(ours, m, add_generation_prompt=True).ids for m in PREFIX_PROMPTS]
    engine = Engine(load_model(run / "sft" / "final").eval(), ours)
    out = [(p, c.token_ids, c.text) for p, c in
           zip(prompts, engine.generate(prompts, SamplingParams(max_tokens=24, temperature=0)))]
    for p, text in zip(prompts, ["'다'에 받침이 없으므로 '는'을 씁니다.", "정답: 7", KOREAN_SAMPLE[1]]):
        ids = ours.encode(text) + [ours.eot_id]
        assert ours.id_to_token(ids[0]).startswith("\u2581")
        out.append((p, ids, text))
    return out


def test_prefix_aware_decoding_of_the_export_gives_our_reply_text(exported, hf_pair):
    from tokenizers import Tokenizer as HFTokenizer

    from saessak.tokenizer.token_text import decode_ids, token_bytes_table

    run, out = exported
    tok = hf_pair[0]
    ours = tiny_tokenizer()
    table = token_bytes_table(ours)
    exported_tokenizer = HFTokenizer.from_file(str(out / "tokenizer.json"))
    trained = HFTokenizer.from_file(str(run / "tokenizer" / "tokenizer.json"))
    for prompt, reply, text in _replies(run):
        body = reply[:-1] if reply[-1] in (ours.eot_id, ours.eos_id) else reply
        assert decode_ids(table, body) == text  # saessak serve's text for these ids
        # transformers: decode(prompt + reply) minus decode(prompt), as its text-generation pipeline does
        assert _prefix_aware(lambda ids: tok.decode(ids, skip_special_tokens=True), prompt, reply) == text
        # tokenizers' DecodeStream, primed with a few prompt tokens or all of them (vLLM primes a suffix)
        for primed in (4, 8, len(prompt)):
            assert _decode_stream(exported_tokenizer, prompt, body, primed) == text
        if ours.id_to_token(body[0]).startswith("\u2581"):
            # the trained tokenizer's decoder puts the reply's word-boundary "▁" back as a leading space
            assert _prefix_aware(lambda ids: trained.decode(ids, skip_special_tokens=True),
                                 prompt, reply) == " " + text


def test_role_markers_are_structure_not_text(hf_pair):
    tok, _, _ = hf_pair
    ours = tiny_tokenizer()
    messages = [{"role": "system", "content": "너는 새싹이야."}, {"role": "user", "content": "안녕?"},
                {"role": "assistant", "content": "반가워요"}]
    ids = render(ours, messages).ids
    # one id each, still matched in text (the chat template relies on it)
    assert tok.encode("<|user|>안녕", add_special_tokens=False) == [ours.role_ids["user"]] + ours.encode("안녕")
    assert tok.decode(ids, skip_special_tokens=True) == "너는 새싹이야.안녕?반가워요"
    assert tok.decode(ids, skip_special_tokens=False) == "<s>너는 새싹이야.<|end|>안녕?<|end|>반가워요<|end|>"
