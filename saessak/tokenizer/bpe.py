"""The saessak tokenizer: SentencePiece-style BPE with byte fallback, trained with HF `tokenizers`.

- NFC normalisation, spaces as "▁" (Metaspace, prepended to every text segment), digits split one
  by one so numbers tokenize consistently; unknown characters fall back to <0xNN> byte tokens, so
  nothing is ever <unk>.
- Special tokens (saessak.special_tokens) get ids 0..7, the 256 byte tokens follow.
- The saved tokenizer.json is a plain `tokenizers` file that transformers loads with
  PreTrainedTokenizerFast and that converts to GGUF's "llama" (SentencePiece) vocabulary.

`Tokenizer` is the thin wrapper every stage uses; streaming text for the engine is
saessak/tokenizer/token_text.py.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

from saessak.tokenizer import special_tokens as st
from saessak.errors import UserError

BYTE_TOKENS = [f"<0x{i:02X}>" for i in range(256)]


def build_trainable(vocab_size: int):
    """An untrained `tokenizers.Tokenizer` and its trainer, configured as described above."""
    from tokenizers import Tokenizer as HFTokenizer
    from tokenizers import decoders, models, normalizers, pre_tokenizers, trainers

    tok = HFTokenizer(models.BPE(unk_token=st.UNK, byte_fallback=True, fuse_unk=True))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True),
            pre_tokenizers.Digits(individual_digits=True),
        ]
    )
    tok.decoder = decoders.Sequence(
        [
            decoders.Replace("▁", " "),
            decoders.ByteFallback(),
            decoders.Fuse(),
            decoders.Strip(" ", 1, 0),
        ]
    )
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=st.SPECIAL_TOKENS + BYTE_TOKENS,
        initial_alphabet=[],
        limit_alphabet=2000,
        show_progress=False,
    )
    return tok, trainer


def train_tokenizer(texts: Iterable[str], vocab_size: int) -> "Tokenizer":
    """Train on an iterable of documents and return the wrapped tokenizer."""
    min_vocab = len(st.SPECIAL_TOKENS) + len(BYTE_TOKENS) + 64
    if vocab_size < min_vocab:
        raise UserError(f"--vocab-size {vocab_size}: must be at least {min_vocab}")
    tok, trainer = build_trainable(vocab_size)
    tok.train_from_iterator(texts, trainer=trainer)
    return Tokenizer(_byte_tokens_as_vocab(tok))


def _byte_tokens_as_vocab(tok):
    """The trainer registers every reserved token as an added special token; byte tokens must be
    ordinary vocabulary (ByteFallback decodes them, and skip_special_tokens must not drop them)."""
    import json

    from tokenizers import Tokenizer as HFTokenizer

    spec = json.loads(tok.to_str())
    byte_set = set(BYTE_TOKENS)
    spec["added_tokens"] = [t for t in spec["added_tokens"] if t["content"] not in byte_set]
    for t in spec["added_tokens"]:
        t["normalized"] = False
        t["special"] = True
    out = HFTokenizer.from_str(json.dumps(spec))
    for i, name in enumerate(st.SPECIAL_TOKENS):
        assert out.token_to_id(name) == i, f"special token {name} must have id {i}"
    return out


class TextMethods:
    """Encoding and decoding through the `tokenizers` object `self.hf`; shared by saessak's tokenizer
    and an imported model's (saessak/tokenizer/imported.py). encode() never adds special tokens."""

    def encode(self, text: str) -> list[int]:
        return self.hf.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return [e.ids for e in self.hf.encode_batch(texts, add_special_tokens=False)]

    def decode(self, ids: Iterable[int], skip_special_tokens: bool = True) -> str:
        return self.hf.decode(list(ids), skip_special_tokens=skip_special_tokens)

    def token_to_id(self, token: str) -> int | None:
        return self.hf.token_to_id(token)

    def id_to_token(self, i: int) -> str | None:
        return self.hf.id_to_token(i)


class Tokenizer(TextMethods):
    """Wrapper with the ids every stage needs. encode() never adds BOS: callers add it explicitly."""

    def __init__(self, hf_tokenizer):
        self.hf = hf_tokenizer
        self.vocab_size = hf_tokenizer.get_vocab_size(with_added_tokens=True)
        ids = {t: hf_tokenizer.token_to_id(t) for t in st.SPECIAL_TOKENS}
        missing = [t for t, i in ids.items() if i is None]
        if missing:
            raise UserError(f"tokenizer lacks the reserved special tokens {missing}: retrain it with saessak")
        self.unk_id = ids[st.UNK]
        self.bos_id = ids[st.BOS]
        self.eos_id = ids[st.EOS]
        self.pad_id = ids[st.PAD]
        self.eot_id = ids[st.END_OF_TURN]
        self.role_ids = {role: ids[tok] for role, tok in st.ROLE_TOKENS.items()}
        self.special_ids = frozenset(ids.values())
        # What every tokenizer carries (an imported model's too, saessak/tokenizer/imported.py): the
        # chat template, the special tokens it reads, the ids that end a reply.
        from saessak.tokenizer.chat_format import CHAT_TEMPLATE

        self.chat_template = CHAT_TEMPLATE
        self.template_vars = {"bos_token": st.BOS, "eos_token": st.END_OF_TURN, "pad_token": st.PAD,
                              "unk_token": st.UNK}
        self.stop_ids = frozenset([self.eot_id])
        self.strips_first_space = True  # the decoder's Strip removes the space Metaspace put first
        self.source = "saessak's tokenizer"

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Tokenizer":
        from tokenizers import Tokenizer as HFTokenizer

        path = Path(path)
        if path.is_dir():
            path = path / "tokenizer.json"
        if not path.exists():
            raise UserError(f"{path}: tokenizer not found (run `saessak tokenizer train` first)")
        try:
            return cls(HFTokenizer.from_file(str(path)))
        except Exception as e:  # tokenizers raises plain Exception on a bad file
            raise UserError(f"{path}: not a valid tokenizer.json ({e})") from None

    def save(self, path: str | os.PathLike) -> None:
        from saessak.io import write_text

        write_text(path, self.hf.to_str(pretty=True))

