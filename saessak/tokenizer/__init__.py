"""The tokenizer stage and what every later stage needs of it.

- bpe.py            the SentencePiece-style byte-fallback BPE (`Tokenizer`, `train_tokenizer`)
- special_tokens.py the reserved special tokens (fixed ids 0..7)
- chat_format.py    conversations -> token ids with the assistant-only loss mask; saessak's own template
- chat_template.py  any Jinja chat template rendered as transformers does, with the assistant-only mask
- imported.py       an imported model's tokenizer.json, chat template and stop tokens
- token_text.py     prefix-stable streaming detokenisation for the generation engine
- stats.py          how well it compresses Korean (RUN/tokenizer/stats.json)
- stage.py          `saessak tokenizer train`: RUN/data -> RUN/tokenizer
"""

from saessak.tokenizer.bpe import BYTE_TOKENS, Tokenizer, train_tokenizer

__all__ = ["BYTE_TOKENS", "Tokenizer", "train_tokenizer"]
