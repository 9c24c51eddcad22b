"""The one generation engine: batched KV-cache decoding for RL rollouts, evaluation and the server.

How it works
- A static KV cache holds one row ("slot") per running sequence: tensors [layers, slots, kv_heads,
  positions, head_dim]. Running sequences always occupy slots 0..n-1: when one finishes, the last
  running sequence is moved into its slot (one row copy), so a decode step reads the cache as a
  plain slice instead of gathering scattered rows.
- A multi-head latent attention model (DeepSeek-V2/V3: its config has `kv_lora_rank`) caches what
  MLA needs and no more: the normalised latent [layers, slots, positions, kv_lora_rank] and the
  roped shared key [layers, slots, positions, qk_rope_head_dim], (kv_lora_rank + qk_rope_head_dim)
  numbers per token per layer instead of 2 x heads x head_dim. Prefill attends in the expanded form
  (keys and values per head, one big matmul), decode in the absorbed form (kv_b_proj folded into
  the query and the output; saessak/model/deepseek.py), which reads the latent cache directly.
- `step()` admits waiting requests (prefill, batched and right-padded; identical prompts, e.g. the
  G completions of one RL prompt, are computed once and copied), then runs one decode step for
  every sequence that was already running. Every running sequence gains exactly one token per step,
  so requests can join and leave between steps (continuous batching).
- Sampling is vectorised over the batch. Randomness comes from a counter-based hash of
  (request seed, token index), so a seeded request draws the same numbers whatever its batch mates
  are, without one torch.Generator call per row per token.
- Text: stop strings are matched on the decoded text; streamed deltas never end inside a UTF-8
  sequence and never change once emitted (saessak/tokenizer/token_text.py explains why this is not a
  re-decode of the whole id list), and hold back any tail that could still become a stop string.

Conventions (relied upon by RL and the server)
- `Completion.token_ids` include the token that ended generation (<|end|> or a stop_token_id) so
  RL trains the model to stop; `text` never contains it. For a stop *string*, token_ids run up to
  and including the token that completed it, and `text` is cut just before the stop string.
- `logprobs[i]` is log p(token_ids[i]) under the model's temperature-1 distribution.
- prompt + completion never exceed `max_seq_len`; reaching it ends the request with "length".
- Not thread-safe: one thread owns an Engine (the server's batching loop does).
"""

from __future__ import annotations

import itertools
import re
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Sequence

import torch

from saessak.errors import UserError
from saessak.model.kernels import (PackedWeights, choose_linear_kernel, linear_kernel, linear_layers,
                                   packed_weights_fit, warm_up, weights_stamp)
from saessak.tokenizer.token_text import TokenTextDecoder, decode_ids, token_bytes_table

_MASK32 = 0xFFFFFFFF
# Prefill at most this many (padded) prompt tokens per forward, to bound activation memory.
_PREFILL_TOKEN_BUDGET = 16384
# KV-cache positions are allocated in multiples of this, so growing the cache is rare.
_POSITION_CHUNK = 64


@dataclass
class SamplingParams:
    max_tokens: int = 128
    temperature: float = 1.0  # 0 => greedy
    top_k: int = 0  # 0 => off
    top_p: float = 1.0
    seed: int | None = None  # same seed => same completion, whatever the batch mates
    stop: Sequence[str] = ()  # output text is cut before the first stop string
    stop_token_ids: Sequence[int] = ()  # in addition to tokenizer.stop_ids (the model's end tokens, always stops)
    logprobs: bool = False  # per generated token log-prob under the temperature-1 distribution
    # A regular expression: generation ends once a completed line (ended by a newline) matches it; the
    # line is kept, the newline is not (evaluation stops at the task's answer line, `정답: ...`).
    stop_at_line: str | None = None

    def validate(self) -> None:
        if not isinstance(self.max_tokens, int) or self.max_tokens < 1:
            raise UserError(f"max_tokens: {self.max_tokens!r} must be an integer >= 1")
        if not self.temperature >= 0:
            raise UserError(f"temperature: {self.temperature!r} must be >= 0")
        if not isinstance(self.top_k, int) or self.top_k < 0:
            raise UserError(f"top_k: {self.top_k!r} must be an integer >= 0")
        if not 0 < self.top_p <= 1:
            raise UserError(f"top_p: {self.top_p!r} must be in (0, 1]")
        if isinstance(self.stop, str):
            self.stop = (self.stop,)
        if any(not isinstance(s, str) or not s for s in self.stop):
            raise UserError(f"stop: {list(self.stop)!r} must be non-empty strings")
        if self.stop_at_line is not None:
            try:
                re.compile(self.stop_at_line)
            except (re.error, TypeError) as e:
                raise UserError(f"stop_at_line: {self.stop_at_line!r} is not a regular expression ({e})") from None


@dataclass
class Completion:
    prompt_ids: list[int]
    token_ids: list[int]
    text: str
    finish_reason: str  # "stop" | "length" | "abort"
    logprobs: list[float] | None


@dataclass
class RequestOutput:
    request_id: str
    new_token_ids: list[int]
    delta_text: str
    finished: bool
    finish_reason: str | None
    num_prompt_tokens: int
    num_generated_tokens: int


@dataclass
class _Request:
    id: str
    prompt_ids: list[int]
    params: SamplingParams
    seed: int
    max_new: int  # max_tokens capped by the context limit
    stop_ids: frozenset[int]
    track_text: bool  # decode incrementally (streaming or stop strings); else decode once at the end
    decoder: TokenTextDecoder | None
    out_ids: list[int] = field(default_factory=list)
    logprobs: list[float] | None = None
    sent: int = 0  # characters of text already handed out as deltas
    text: str | None = None
    finish_reason: str | None = None
    slot: int = -1


class _SlotCache:
    """The KV-cache hook handed to the model (see saessak/model/llama.py and deepseek.py): writes new
    keys/values (`update`) or MLA latents (`update_latent`) into the engine's slots and returns what
    attention must see, with its mask (boolean in prefill, additive float in decode)."""

    def __init__(self, engine: "Engine"):
        self.e = engine
        self.mode = ""
        self.absorb = False  # MLA: attend in the absorbed form (decode) or the expanded one (prefill)

    def for_prefill(self, start: int, inverse: torch.Tensor | None, length: int, mask: torch.Tensor):
        self.mode, self.start, self.inverse, self.length, self.mask = "prefill", start, inverse, length, mask
        self.absorb = False
        return self

    def for_decode(self, n: int, rows: torch.Tensor, pos: torch.Tensor, span: int, mask: torch.Tensor):
        self.mode, self.n, self.rows, self.pos, self.span, self.mask = "decode", n, rows, pos, span, mask
        self.absorb = True
        return self

    def update_latent(self, layer_idx: int, c_kv: torch.Tensor, k_pe: torch.Tensor):
        """MLA: c_kv [B, T, kv_lora_rank], k_pe [B, T, qk_rope_head_dim] into the latent caches
        (self.e._k holds the latents, self.e._v the rope keys: [layers, slots, positions, width])."""
        cc, cr = self.e._k[layer_idx], self.e._v[layer_idx]
        if self.mode == "prefill":
            # rows are unique prompts; duplicate prompts' slots get copies
            cs = c_kv if self.inverse is None else c_kv.index_select(0, self.inverse)
            rs = k_pe if self.inverse is None else k_pe.index_select(0, self.inverse)
            m = cs.shape[0]
            cc[self.start:self.start + m, :self.length] = cs
            cr[self.start:self.start + m, :self.length] = rs
            return c_kv, k_pe, self.mask
        # decode: one new token per slot, written at that slot's own position
        cc[self.rows, self.pos] = c_kv[:, 0]
        cr[self.rows, self.pos] = k_pe[:, 0]
        return cc[:self.n, :self.span], cr[:self.n, :self.span], self.mask

    def update(self, layer_idx: int, k: torch.Tensor, v: torch.Tensor):
        ck, cv = self.e._k[layer_idx], self.e._v[layer_idx]
        if self.mode == "prefill":
            # k: [unique prompts, kv_heads, T, D]; rows of duplicate prompts are copies.
            kk = k if self.inverse is None else k.index_select(0, self.inverse)
            vv = v if self.inverse is None else v.index_select(0, self.inverse)
            m = kk.shape[0]
            ck[self.start:self.start + m, :, :self.length] = kk
            cv[self.start:self.start + m, :, :self.length] = vv
            return k, v, self.mask
        # decode: k is [n, kv_heads, 1, D], written at each slot's own position
        ck[self.rows, :, self.pos] = k[:, :, 0]
        cv[self.rows, :, self.pos] = v[:, :, 0]
        return ck[:self.n, :, :self.span], cv[:self.n, :, :self.span], self.mask


def _mix32(x: torch.Tensor) -> torch.Tensor:
    # A 32-bit integer hash (multiply-xorshift); constants < 2**27 keep int64 products exact.
    x = x ^ (x >> 16)
    x = (x * 0x45D9F3B) & _MASK32
    x = x ^ (x >> 16)
    x = (x * 0x45D9F3B) & _MASK32
    return x ^ (x >> 16)


def counter_uniform(seeds: torch.Tensor, counters: torch.Tensor) -> torch.Tensor:
    """Uniform floats in [0, 1) from (seed, counter) pairs: a pure function, vectorised."""
    h = _mix32(_mix32(seeds & _MASK32) ^ ((seeds >> 32) & _MASK32))
    h = _mix32(h ^ (counters & _MASK32))
    h = _mix32(h ^ 0x9E3779B)
    return (h >> 8).to(torch.float32) * (1.0 / (1 << 24))


def sample_tokens(logits: torch.Tensor, temperature: torch.Tensor, top_k: torch.Tensor, top_p: torch.Tensor,
                  seeds: torch.Tensor, counters: torch.Tensor) -> torch.Tensor:
    """One token per row. logits [n, V] float32; temperature 0 => argmax; top_k 0 => off."""
    greedy = temperature <= 0
    if bool(greedy.all()):
        return logits.argmax(-1)
    scaled = logits / torch.where(greedy, torch.ones_like(temperature), temperature).unsqueeze(1)
    if bool((top_k > 0).any()):
        kmax = int(top_k.max())
        kth = scaled.topk(min(kmax, scaled.shape[1]), dim=-1).values
        idx = (top_k.clamp(min=1, max=kth.shape[1]) - 1).unsqueeze(1)
        thresh = kth.gather(1, idx)
        thresh = torch.where((top_k > 0).unsqueeze(1), thresh, torch.full_like(thresh, float("-inf")))
        scaled = scaled.masked_fill(scaled < thresh, float("-inf"))
    probs = torch.softmax(scaled, dim=-1)
    if bool((top_p < 1).any()):
        sorted_p, order = probs.sort(dim=-1, descending=True)
        before = sorted_p.cumsum(-1) - sorted_p  # mass strictly above each token
        drop_sorted = before >= top_p.unsqueeze(1)  # the top token always has before == 0: kept
        drop = torch.zeros_like(drop_sorted).scatter(1, order, drop_sorted)
        probs = probs.masked_fill(drop, 0.0)
    # Inverse-CDF sampling with one uniform per row; (1 - 1e-6) keeps u strictly below the total.
    cdf = probs.cumsum(-1)
    u = counter_uniform(seeds, counters) * cdf[:, -1] * (1 - 1e-6)
    sampled = torch.searchsorted(cdf, u.unsqueeze(1), right=True).squeeze(1).clamp(max=logits.shape[1] - 1)
    if bool(greedy.any()):
        sampled = torch.where(greedy, logits.argmax(-1), sampled)
    return sampled


def _matching_line_end(text: str, sent: int, pattern: str) -> int | None:
    """The end (the newline's index) of the first line completed after `sent` characters that matches
    `pattern`, or None. Lines ended before `sent` were checked when their newline arrived."""
    start = text.rfind("\n", 0, sent) + 1  # the line in progress when the new text began
    end = text.find("\n", sent)
    while end >= 0:
        if re.search(pattern, text[start:end]):
            return end
        start, end = end + 1, text.find("\n", end + 1)
    return None


def _held_back(text: str, stops: Sequence[str]) -> int:
    """Length of the longest tail of `text` that is a proper prefix of a stop string."""
    best = 0
    for s in stops:
        for n in range(min(len(s) - 1, len(text)), best, -1):
            if text.endswith(s[:n]):
                best = n
                break
    return best


class Engine:
    def __init__(self, model, tokenizer, max_batch_size: int = 64, max_seq_len: int | None = None,
                 device: str | torch.device = "cpu", dtype: torch.dtype | None = None,
                 linear_kernel: str | None = "auto"):
        """`dtype=None` runs the model as it is. Another dtype (e.g. torch.bfloat16) runs a private
        copy of the weights in that dtype, re-synced automatically when the source model's
        parameters may have changed (`kernels.weights_stamp`: an in-place write or any optimizer
        step, fused ones included, which leave version counters alone): RL can keep training
        the fp32 model and generate from the same Engine. `linear_kernel`: the matmul implementation
        of the forward passes, "auto" (the faster on this CPU, measured once and cached:
        saessak/model/kernels.py), "aten" or "onednn"."""
        self.tokenizer = tokenizer
        self.device = torch.device(device)
        self.max_batch_size = int(max_batch_size)
        if self.max_batch_size < 1:
            raise UserError(f"max_batch_size: {max_batch_size} must be >= 1")
        cfg = model.config
        self.max_seq_len = int(max_seq_len or cfg.max_position_embeddings)
        self.vocab_limit = min(cfg.vocab_size, tokenizer.vocab_size)
        self._token_bytes = token_bytes_table(tokenizer)
        self._strip = getattr(tokenizer, "strips_first_space", True)
        self._source = model
        self._dtype = dtype
        self._source_stamp = None
        self.model = model
        self._sync_weights()
        self._cache = _SlotCache(self)
        self._n_layers = cfg.num_hidden_layers
        # MLA (DeepSeek): _k/_v hold the latent [L, slots, positions, kv_lora_rank] and the rope key
        # [L, slots, positions, qk_rope_head_dim]; otherwise keys/values [L, slots, kv_heads, positions, head_dim].
        self._mla = bool(getattr(cfg, "kv_lora_rank", 0))
        if self._mla:
            self._latent_dims = (int(cfg.kv_lora_rank), int(cfg.qk_rope_head_dim))
        else:
            self._kv_heads, self._head_dim = cfg.num_key_value_heads, cfg.head_dim
        self._k = self._v = None
        self._cap_slots = self._cap_pos = 0
        self._ids = itertools.count()
        self._waiting: deque[_Request] = deque()
        self._running: list[_Request] = []  # index == slot
        self._requests: dict[str, _Request] = {}
        self._aborted: list[_Request] = []
        # per-slot state, kept in step with self._running
        self._lens = torch.zeros(0, dtype=torch.long)
        self._last = torch.zeros(0, dtype=torch.long)
        # The linear layers' kernel for decode and for prefill: given, or timed on this engine's own
        # steps (saessak/model/kernels.py). oneDNN reads packed copies of the weights, refreshed between
        # batches when the weights changed (an RL optimizer step), like the private dtype copy.
        self._linears = linear_layers(self.model)
        self._packed = None

        def timer() -> dict:
            self._pack()
            return self._time_kernels()

        self.kernel = choose_linear_kernel(self.model, self.device.type, self.max_batch_size, linear_kernel,
                                           timer=timer)
        if self.kernel.uses("onednn"):
            self._pack()
        else:
            self._linears, self._packed = [], None

    def warm_up(self) -> float:
        """Prepare the linear kernel for every decode width up to max_batch_size (oneDNN builds a
        primitive per input shape; saessak/model/kernels.py `warm_up`). For a long-lived server, not
        needed for a one-off generate. Returns the seconds spent (0 with aten)."""
        if self.kernel.kernel != "onednn":  # the decode widths; prefill shapes cannot all be known
            return 0.0
        return warm_up(self._linears, self.max_batch_size, self._packed)

    # -- weights ---------------------------------------------------------------------------------
    def _pack(self) -> None:
        if self._packed is None and self.device.type == "cpu" and packed_weights_fit(self._linears):
            self._packed = PackedWeights(self._linears, self.max_batch_size)
            self._packed.refresh()

    def _weights_stamp(self) -> tuple[int, int]:
        # buffers too: a MoE router's bias (e_score_correction_bias) is a buffer moved between steps
        return weights_stamp([*self._source.parameters(), *self._source.buffers()])

    def _sync_weights(self) -> None:
        src = self._source
        src_dtype = next(src.parameters()).dtype
        if self._dtype is None or self._dtype == src_dtype:
            if self.model is not src:
                self.model = src
            if next(src.parameters()).device != self.device:  # `.to` would reshard an FSDP model
                self.model.to(self.device)
            self._model_dtype = src_dtype
            return
        stamp = self._weights_stamp()
        if stamp == self._source_stamp and self.model is not src:
            return
        import copy

        if self.model is src:
            self.model = copy.deepcopy(src).to(device=self.device, dtype=self._dtype).eval()
        else:
            with torch.no_grad():
                for p_dst, p_src in zip(self.model.parameters(), src.parameters()):
                    p_dst.copy_(p_src)
                for b_dst, b_src in zip(self.model.buffers(), src.buffers()):
                    b_dst.copy_(b_src)
        self._source_stamp = stamp
        self._model_dtype = self._dtype

    # -- public API -----------------------------------------------------------------------------
    def add_request(self, prompt_ids: list[int], params: SamplingParams, request_id: str | None = None,
                    *, stream: bool = True) -> str:
        """Queue one request; it starts at the next step(). `stream=False` skips per-token text
        decoding when no stop strings need it (generate() uses that)."""
        params.validate()
        prompt_ids = [int(t) for t in prompt_ids]
        if not prompt_ids:
            raise UserError("prompt: must contain at least one token")
        if len(prompt_ids) >= self.max_seq_len:
            raise UserError(
                f"prompt: {len(prompt_ids)} tokens leave no room to generate within the context limit of "
                f"{self.max_seq_len} tokens"
            )
        bad = [t for t in prompt_ids if not 0 <= t < self.vocab_limit]
        if bad:
            raise UserError(f"prompt: token id {bad[0]} is outside the vocabulary (size {self.vocab_limit})")
        rid = request_id if request_id is not None else f"req-{next(self._ids)}"
        if rid in self._requests:
            raise UserError(f"request_id: {rid!r} is already in use")
        seed = params.seed if params.seed is not None else int(torch.randint(0, 2**62, (1,)).item())
        track = stream or bool(params.stop) or params.stop_at_line is not None
        req = _Request(
            id=rid, prompt_ids=prompt_ids, params=params, seed=int(seed) & ((1 << 63) - 1),
            max_new=min(params.max_tokens, self.max_seq_len - len(prompt_ids)),
            stop_ids=frozenset([*self.tokenizer.stop_ids, *params.stop_token_ids]), track_text=track,
            decoder=TokenTextDecoder(self._token_bytes, self._strip) if track else None,
            logprobs=[] if params.logprobs else None,
        )
        self._requests[rid] = req
        self._waiting.append(req)
        return rid

    @torch.inference_mode()
    def abort(self, request_id: str) -> None:
        """Stop a request now and free its slot; the next step() reports it finished ("abort")."""
        req = self._requests.get(request_id)
        if req is None or req.finish_reason is not None:
            return
        req.finish_reason = "abort"
        if req.slot >= 0:
            self._free_slots([req.slot])
        else:
            self._waiting.remove(req)
        self._aborted.append(req)

    def has_unfinished(self) -> bool:
        return bool(self._waiting or self._running or self._aborted)

    def num_running(self) -> int:
        return len(self._running)

    def num_waiting(self) -> int:
        return len(self._waiting)

    @torch.inference_mode()
    def step(self) -> list[RequestOutput]:
        outputs = [self._output(r, [], "") for r in self._aborted]
        for r in self._aborted:
            self._requests.pop(r.id, None)
        self._aborted = []
        if not self._running:
            self._sync_weights()  # between batches only: a running batch keeps one set of weights
            if self._packed is not None:
                self._packed.refresh()
        decoding = len(self._running)
        admitted = self._admit()
        if admitted:
            with linear_kernel(self.model, self.kernel.prefill, self._linears, self._packed):
                outputs += self._prefill(admitted)
        if decoding:
            with linear_kernel(self.model, self.kernel.kernel, self._linears, self._packed):
                outputs += self._decode(decoding)
        return outputs

    def generate(self, prompts: list[list[int]], params: SamplingParams | list[SamplingParams]) -> list[Completion]:
        """Complete every prompt (more than max_batch_size are queued); results in input order."""
        if isinstance(params, SamplingParams):
            params = [params] * len(prompts)
        if len(params) != len(prompts):
            raise UserError(f"params: {len(params)} sampling params for {len(prompts)} prompts")
        ids = [self.add_request(p, sp, stream=False) for p, sp in zip(prompts, params)]
        reqs = [self._requests[i] for i in ids]
        pending = set(ids)
        while pending:
            for out in self.step():
                if out.finished:
                    pending.discard(out.request_id)
        return [
            Completion(prompt_ids=r.prompt_ids, token_ids=r.out_ids, text=r.text or "",
                       finish_reason=r.finish_reason or "abort", logprobs=r.logprobs)
            for r in reqs
        ]

    # -- slots and cache -----------------------------------------------------------------------
    def cache_tensors(self) -> dict[str, torch.Tensor]:
        """The allocated cache tensors by name (empty before the first request is admitted)."""
        if self._k is None:
            return {}
        if self._mla:
            return {"latent": self._k, "rope_key": self._v}
        return {"k": self._k, "v": self._v}

    def kv_cache_bytes_per_token(self) -> int | None:
        """Bytes the allocated cache holds per token (one slot position), all layers together;
        None before the cache exists."""
        if self._k is None:
            return None
        total = sum(t.numel() * t.element_size() for t in self.cache_tensors().values())
        return total // (self._cap_slots * self._cap_pos)

    def _reserve(self, slots: int, positions: int) -> None:
        if slots <= self._cap_slots and positions <= self._cap_pos:
            return
        new_slots = min(self.max_batch_size, max(slots, 2 * self._cap_slots, 8))
        new_pos = min(self.max_seq_len, max(positions, self._cap_pos))
        new_pos = min(self.max_seq_len, -(-new_pos // _POSITION_CHUNK) * _POSITION_CHUNK)
        if self._mla:
            r, rope = self._latent_dims
            k_shape = (self._n_layers, new_slots, new_pos, r)
            v_shape = (self._n_layers, new_slots, new_pos, rope)
        else:
            k_shape = v_shape = (self._n_layers, new_slots, self._kv_heads, new_pos, self._head_dim)
        k = torch.zeros(k_shape, dtype=self._model_dtype, device=self.device)
        v = torch.zeros(v_shape, dtype=self._model_dtype, device=self.device)
        n = len(self._running)
        if self._k is not None and n:
            used = int(self._lens[:n].max())
            # positions are the second-last axis in both layouts (the kv_heads axis, if any, is in "...")
            k[:, :n, ..., :used, :] = self._k[:, :n, ..., :used, :]
            v[:, :n, ..., :used, :] = self._v[:, :n, ..., :used, :]
        self._k, self._v = k, v
        for name in ("_lens", "_last"):
            old = getattr(self, name)
            new = torch.zeros(new_slots, dtype=torch.long)
            new[: old.shape[0]] = old[:new_slots]
            setattr(self, name, new)
        self._cap_slots, self._cap_pos = new_slots, new_pos

    def _admit(self) -> list[_Request]:
        free = self.max_batch_size - len(self._running)
        admitted = []
        while self._waiting and len(admitted) < free:
            admitted.append(self._waiting.popleft())
        if admitted:
            n = len(self._running) + len(admitted)
            longest = max(len(r.prompt_ids) + r.max_new for r in self._running + admitted)
            self._reserve(n, longest)
        return admitted

    def _free_slots(self, slots: list[int]) -> None:
        """Remove finished sequences; the last running sequence moves into each hole."""
        for s in sorted(slots, reverse=True):
            last = len(self._running) - 1
            self._running[s].slot = -1
            if s != last:
                moved = self._running[last]
                used = int(self._lens[last])
                self._k[:, s, ..., :used, :] = self._k[:, last, ..., :used, :]
                self._v[:, s, ..., :used, :] = self._v[:, last, ..., :used, :]
                self._lens[s], self._last[s] = self._lens[last], self._last[last]
                self._running[s] = moved
                moved.slot = s
            self._running.pop()

    # -- forward passes -------------------------------------------------------------------------
    def _hidden_states(self, ids: torch.Tensor, pos: torch.Tensor, cache: _SlotCache) -> torch.Tensor:
        if not self._mla:
            return self.model.hidden_states(ids, pos, cache)
        # MoE layers in training mode count routed tokens for the next router-bias update (and build
        # balance losses): generated tokens are not a training batch, so run them in eval mode.
        training = [m for m in self.model.modules() if m.training and hasattr(m, "load_accum")]
        for m in training:
            m.training = False
        try:
            return self.model.hidden_states(ids, pos, cache)
        finally:
            for m in training:
                m.training = True

    def _prefill(self, admitted: list[_Request]) -> list[RequestOutput]:
        outputs = []
        chunk: list[_Request] = []
        longest = 0
        for r in admitted:
            longest2 = max(longest, len(r.prompt_ids))
            if chunk and longest2 * (len(chunk) + 1) > _PREFILL_TOKEN_BUDGET:
                outputs += self._prefill_chunk(chunk)
                chunk, longest2 = [], len(r.prompt_ids)
            chunk.append(r)
            longest = longest2
        if chunk:
            outputs += self._prefill_chunk(chunk)
        return outputs

    def _prefill_chunk(self, chunk: list[_Request]) -> list[RequestOutput]:
        start = len(self._running)
        for i, r in enumerate(chunk):
            r.slot = start + i
            self._running.append(r)
        # Identical prompts (RL's G samples per prompt) are run once and their cache rows copied.
        unique: dict[tuple[int, ...], int] = {}
        inverse = [unique.setdefault(tuple(r.prompt_ids), len(unique)) for r in chunk]
        rows = list(unique)
        inv = None if len(rows) == len(chunk) else torch.tensor(inverse)
        logits = self._prefill_logits(rows, start, inv)
        if inv is not None:
            logits = logits.index_select(0, inv.to(logits.device))
        n = start + len(chunk)
        self._lens[start:n] = torch.tensor([len(r.prompt_ids) for r in chunk])
        return self._sample_and_advance(chunk, logits, start)

    def _prefill_logits(self, rows: list[Sequence[int]], start: int, inv: torch.Tensor | None) -> torch.Tensor:
        """Run the prompts `rows` (right-padded into one batch), filling cache slots from `start`
        (`inv`: the slot rows' indices into `rows`, for duplicated prompts); the last position's logits."""
        lengths = torch.tensor([len(p) for p in rows])
        T = int(lengths.max())
        ids = torch.full((len(rows), T), self.tokenizer.pad_id, dtype=torch.long)
        for i, p in enumerate(rows):
            ids[i, : len(p)] = torch.tensor(p)
        pos = torch.arange(T)
        # causal and within the prompt; padded query rows still see key 0, so no row is all-masked
        mask = (pos[None, :] <= pos[:, None])[None] & (pos[None, None, :] < lengths[:, None, None])
        cache = self._cache.for_prefill(start, inv, T, mask.unsqueeze(1).to(self.device))
        hidden = self._hidden_states(ids.to(self.device), pos.expand(len(rows), T).to(self.device), cache)
        return self.model.lm_head(hidden[torch.arange(len(rows)), lengths - 1])

    def _decode(self, n: int) -> list[RequestOutput]:
        logits = self._decode_logits(n, self._lens[:n], self._last[:n])
        self._lens[:n] += 1
        return self._sample_and_advance(self._running[:n], logits, 0)

    def _decode_logits(self, n: int, lens: torch.Tensor, last: torch.Tensor) -> torch.Tensor:
        """One decode step for slots 0..n-1 (`lens`: their cached lengths, `last`: their last tokens)."""
        span = int(lens.max()) + 1
        # an additive float mask: CPU SDPA runs measurably faster with it than with a bool mask
        visible = (torch.arange(span)[None, :] <= lens[:, None])[:, None, None, :]
        mask = torch.zeros(visible.shape, dtype=self._model_dtype).masked_fill_(~visible, float("-inf"))
        rows = torch.arange(n)
        dev = self.device
        cache = self._cache.for_decode(n, rows.to(dev), lens.to(dev), span, mask.to(dev))
        hidden = self._hidden_states(last[:, None].to(dev), lens[:, None].to(dev), cache)
        return self.model.lm_head(hidden[:, 0])

    @torch.inference_mode()
    def _time_kernels(self, rounds: int = 3, budget_s: float = 2.0) -> dict:
        """Seconds of this engine's own decode step (at its full width, up to 64 sequences) and of a
        prefill (256 prompt tokens) with each linear kernel, the best of `rounds` after an untimed
        warm-up round (oneDNN builds its primitives), kernels alternating (fewer rounds once `budget_s`
        is spent, at least one); and the largest relative
        difference between the two kernels' logits. Runs on random tokens in the cache's first slots,
        before any request (saessak/model/kernels.py `choose_linear_kernel`)."""
        if self._running or self._waiting:
            raise RuntimeError("the kernels are timed before the engine takes requests")
        width = min(self.max_batch_size, 64)
        T = max(1, min(64, self.max_seq_len // 4))
        p = max(1, min(self.max_batch_size, 256 // T))
        self._reserve(max(width, p), T + 1)
        gen = torch.Generator().manual_seed(0)
        prompts = torch.randint(0, self.vocab_limit, (p, T), generator=gen).tolist()
        last = torch.randint(0, self.vocab_limit, (width,), generator=gen)
        lens = torch.full((width,), T)
        best = {(phase, k): float("inf") for phase in ("decode", "prefill") for k in ("aten", "onednn")}
        logits = {}
        started = time.perf_counter()
        for r in range(rounds + 1):
            if r > 1 and time.perf_counter() - started > budget_s:  # a big model: one timed round will do
                break
            for k in ("aten", "onednn"):
                with linear_kernel(self.model, k, self._linears, self._packed):
                    t0 = time.perf_counter()
                    self._prefill_logits(prompts, 0, None)
                    t1 = time.perf_counter()
                    logits[k] = self._decode_logits(width, lens, last).float()
                    t2 = time.perf_counter()
                if r:
                    best["prefill", k] = min(best["prefill", k], t1 - t0)
                    best["decode", k] = min(best["decode", k], t2 - t1)
        a, b = logits["aten"], logits["onednn"]
        diff = float((a - b).abs().max() / a.abs().max().clamp_min(1e-12))
        return {phase: {f"{k}_s": best[phase, k] for k in ("aten", "onednn")} for phase in ("decode", "prefill")} | {
            "max_rel_diff": diff}

    def _sample_and_advance(self, reqs: list[_Request], logits: torch.Tensor, start: int) -> list[RequestOutput]:
        logits = logits.float()
        if logits.shape[1] > self.vocab_limit:  # model rows the tokenizer cannot decode
            logits[:, self.vocab_limit:] = float("-inf")
        ps = [r.params for r in reqs]
        temps = torch.tensor([p.temperature for p in ps], dtype=torch.float32, device=logits.device)
        if bool((temps <= 0).all()):
            tokens = logits.argmax(-1)
        else:
            tokens = sample_tokens(
                logits, temps,
                torch.tensor([p.top_k for p in ps], device=logits.device),
                torch.tensor([p.top_p for p in ps], dtype=torch.float32, device=logits.device),
                torch.tensor([r.seed for r in reqs], device=logits.device),
                torch.tensor([len(r.out_ids) for r in reqs], device=logits.device),
            )
        lp = None
        if any(p.logprobs for p in ps):
            lp = torch.log_softmax(logits, dim=-1).gather(1, tokens[:, None])[:, 0].tolist()
        tokens_cpu = tokens.cpu()
        self._last[start:start + len(reqs)] = tokens_cpu
        outputs, finished = [], []
        for i, (r, t) in enumerate(zip(reqs, tokens_cpu.tolist())):
            r.out_ids.append(t)
            if r.logprobs is not None:
                r.logprobs.append(lp[i])
            delta = self._advance_text(r, t)
            if r.finish_reason is not None:
                finished.append(r.slot)
            outputs.append(self._output(r, [t], delta))
        if finished:
            for r in (self._running[s] for s in finished):
                self._requests.pop(r.id, None)
            self._free_slots(finished)
        return outputs

    def _advance_text(self, r: _Request, t: int) -> str:
        """Update r's text state with token t; set finish_reason when it ends. Returns the delta."""
        if t in r.stop_ids:
            r.finish_reason = "stop"
        elif r.track_text:
            r.decoder.push([t])
            if r.params.stop_at_line is not None:
                text = r.decoder.emitted
                end = _matching_line_end(text, r.sent, r.params.stop_at_line)
                if end is not None:
                    r.finish_reason = "stop"
                    r.text = text[:end]
                    return self._take(r, r.text)
            if r.params.stop:
                text = r.decoder.emitted
                # a stop string can only newly appear in the tail reached by the new text
                lookback = max(len(s) for s in r.params.stop) + 8
                begin = max(0, r.sent - lookback)
                hits = [i for i in (text.find(s, begin) for s in r.params.stop) if i >= 0]
                if hits:
                    r.finish_reason = "stop"
                    r.text = text[: min(hits)]
                    return self._take(r, r.text)
        if r.finish_reason is None and (len(r.out_ids) >= r.max_new):
            r.finish_reason = "length"
        if r.finish_reason is None:
            if not r.track_text:
                return ""
            text = r.decoder.emitted
            safe = len(text) - (_held_back(text, r.params.stop) if r.params.stop else 0)
            return self._take(r, text[:safe])
        # finished by a stop token or by length: the whole text, without a trailing stop token
        body = r.out_ids[:-1] if t in r.stop_ids else r.out_ids
        if r.track_text:  # the stop token itself was never pushed to the decoder
            r.decoder.flush()
            text = r.decoder.emitted
        else:
            text = decode_ids(self._token_bytes, body, self._strip)
        r.text = text
        return self._take(r, text)

    @staticmethod
    def _take(r: _Request, text: str) -> str:
        delta = text[r.sent:]
        r.sent = len(text)
        return delta

    @staticmethod
    def _output(r: _Request, new_ids: list[int], delta: str) -> RequestOutput:
        return RequestOutput(
            request_id=r.id, new_token_ids=new_ids, delta_text=delta, finished=r.finish_reason is not None,
            finish_reason=r.finish_reason, num_prompt_tokens=len(r.prompt_ids), num_generated_tokens=len(r.out_ids),
        )
