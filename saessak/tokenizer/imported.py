"""An imported model's own tokenizer: its tokenizer.json, chat template and stop tokens.

Read from a Hugging Face folder (nothing downloaded, nothing written there):
- tokenizer.json through `tokenizers` (byte-level BPE as in Llama 3 and Qwen, or SentencePiece-
  style BPE with byte fallback as in Mistral and saessak);
- tokenizer_config.json: the special tokens (`bos_token`, `eos_token`, `pad_token`, ...) the
  chat template reads, and the template itself in older exports (`chat_template`, a string or a
  list of named templates of which "default" is used); transformers 5 keeps it in
  chat_template.jinja, which wins when both exist;
- the ids that end a reply: `eos_token_id` of config.json and generation_config.json (an int or
  a list) and the tokenizer's eos token.

`ImportedTokenizer` offers what every stage uses of saessak's `Tokenizer` (encode, decode, ids,
`chat_template`, `stop_ids`), so the stages do not know which one they hold.
"""

from __future__ import annotations

import json
from pathlib import Path
from saessak.errors import UserError
from saessak.tokenizer.bpe import TextMethods

# Files an imported tokenizer is made of; the import copies those present into RUN/tokenizer/.
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "special_tokens_map.json",
                   "generation_config.json")


def _read_json(path: Path) -> dict:
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UserError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(d, dict):
        raise UserError(f"{path}: expected a JSON object")
    return d


def _token_text(value) -> str | None:
    """A special token as tokenizer_config.json writes it: a string or an AddedToken object."""
    if isinstance(value, dict):
        return value.get("content")
    return value if isinstance(value, str) else None


def read_chat_template(folder: Path, tok_config: dict) -> str | None:
    jinja = folder / "chat_template.jinja"
    if jinja.exists():
        return jinja.read_text(encoding="utf-8")
    t = tok_config.get("chat_template")
    if isinstance(t, list):  # [{"name": "default", "template": ...}, {"name": "tool_use", ...}]
        named = {x.get("name"): x.get("template") for x in t if isinstance(x, dict)}
        t = named.get("default")
    return t if isinstance(t, str) else None


def _ids(value) -> list[int]:
    if value is None:
        return []
    values = value if isinstance(value, list) else [value]
    return [int(v) for v in values if isinstance(v, int)]


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte-level alphabet: each byte as the printable character byte-level BPE writes it."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    out, extra = {}, 0
    for b in range(256):
        if b in keep:
            out[b] = chr(b)
        else:
            out[b] = chr(256 + extra)
            extra += 1
    return out


def _uses(spec, kind: str) -> bool:
    """Whether a tokenizer.json component (decoder, pre_tokenizer) is or contains `kind`."""
    if isinstance(spec, dict):
        return spec.get("type") == kind or any(_uses(v, kind) for v in spec.values())
    if isinstance(spec, list):
        return any(_uses(v, kind) for v in spec)
    return False


class ImportedTokenizer(TextMethods):
    def __init__(self, hf_tokenizer, *, chat_template: str, special: dict[str, str], stop_ids: list[int],
                 source: str):
        self.hf = hf_tokenizer
        self.source = source
        self.vocab_size = hf_tokenizer.get_vocab_size(with_added_tokens=True)
        self.chat_template = chat_template
        self.template_vars = dict(special)
        spec = json.loads(hf_tokenizer.to_str())
        self.byte_level = _uses(spec.get("decoder"), "ByteLevel")
        self.strips_first_space = _uses(spec.get("decoder"), "Strip")
        added = spec.get("added_tokens") or []
        self.special_ids = frozenset(t["id"] for t in added if t.get("special"))

        def tid(name):
            text = special.get(name)
            return hf_tokenizer.token_to_id(text) if text else None

        self.bos_id = tid("bos_token")
        self.eos_id = tid("eos_token")
        self.unk_id = tid("unk_token")
        stops = [i for i in [*stop_ids, self.eos_id] if i is not None and 0 <= i < self.vocab_size]
        if not stops:
            raise UserError(f"{source}: no end-of-reply token: neither config.json/generation_config.json "
                            f"eos_token_id nor tokenizer_config.json eos_token names one")
        self.stop_ids = frozenset(stops)
        self.eot_id = stops[0]
        pad = tid("pad_token")
        self.pad_id = pad if pad is not None else self.eot_id

    @classmethod
    def from_folder(cls, folder: str | Path, model_config: dict | None = None) -> "ImportedTokenizer":
        from tokenizers import Tokenizer as HFTokenizer

        folder = Path(folder)
        tj = folder / "tokenizer.json"
        if not tj.exists():
            raise UserError(f"{tj}: missing; saessak reads the fast tokenizer (tokenizer.json) of the model")
        try:
            hf = HFTokenizer.from_file(str(tj))
        except Exception as e:  # tokenizers raises plain Exception on a bad file
            raise UserError(f"{tj}: not a valid tokenizer.json ({e})") from None
        tc_path = folder / "tokenizer_config.json"
        tc = _read_json(tc_path) if tc_path.exists() else {}
        special = {k: _token_text(v) for k, v in tc.items() if k.endswith("_token") and _token_text(v)}
        template = read_chat_template(folder, tc)
        if not template:
            raise UserError(f"{folder}: no chat template (chat_template.jinja, or chat_template in "
                            f"tokenizer_config.json); a chat model needs one")
        stops: list[int] = []
        gen = folder / "generation_config.json"
        if gen.exists():
            stops += _ids(_read_json(gen).get("eos_token_id"))
        if model_config is None and (folder / "config.json").exists():
            model_config = _read_json(folder / "config.json")
        stops += _ids((model_config or {}).get("eos_token_id"))
        return cls(hf, chat_template=template, special=special, stop_ids=list(dict.fromkeys(stops)),
                   source=str(folder))

    def token_bytes(self) -> list[bytes]:
        """The bytes each id contributes to decoded text (b"" for special tokens), for streaming."""
        if not self.byte_level:
            from saessak.tokenizer.token_text import metaspace_bytes_table

            return metaspace_bytes_table(self)
        back = {c: b for b, c in _bytes_to_unicode().items()}
        table = []
        for i in range(self.vocab_size):
            piece = self.id_to_token(i)
            if piece is None or i in self.special_ids:
                table.append(b"")
            elif all(c in back for c in piece):
                table.append(bytes(back[c] for c in piece))
            else:  # an added, non-special token is written as plain text
                table.append(piece.encode("utf-8"))
        return table


def load_tokenizer(tokenizer_json: str | Path):
    """The tokenizer in `tokenizer_json`'s folder: an imported model's when a chat template comes
    with it (tokenizer_config.json or chat_template.jinja), else saessak's own."""
    from saessak.tokenizer.bpe import Tokenizer

    path = Path(tokenizer_json)
    folder = path if path.is_dir() else path.parent
    if (folder / "chat_template.jinja").exists() or (folder / "tokenizer_config.json").exists():
        return ImportedTokenizer.from_folder(folder)
    return Tokenizer.load(path)
