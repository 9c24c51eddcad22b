"""Serving throughput: `saessak serve` with 1, 8 and 32 concurrent streaming clients, side by side
with what a user would otherwise do — Hugging Face transformers `generate` on the same weights,
serving the same requests one at a time.

Reports aggregate generated tokens/s and time-to-first-token (TTFT) p50/p99 per concurrency level.
For the sequential baseline all requests of a level arrive together, so a request's TTFT includes
the time it waits for the ones before it (as in a one-at-a-time server).

    .venv/bin/python bench/serve_throughput.py            # cpu-tiny shape, 64 new tokens
    .venv/bin/python bench/serve_throughput.py --quick    # under a minute
    .venv/bin/python bench/serve_throughput.py --smoke    # 1 and 2 clients, 4 tokens: the code paths, in seconds
    .venv/bin/python bench/serve_throughput.py --model runs/NAME   # a trained run or checkpoint

The last stdout line is one JSON object with the key figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench._lib.record import add_record_args, emit  # noqa: E402  (first: it notes the load before the work)

QUESTIONS = [
    "안녕하세요, 자기소개를 해 주세요.", "서울의 봄 날씨는 어떤가요?", "사과 3개와 배 2개는 모두 몇 개예요?",
    "내일이 화요일이면 오늘은 무슨 요일이에요?", "한국어 띄어쓰기 규칙을 설명해 주세요.",
    "도서관에서 책을 빌리는 방법을 알려 주세요.", "2024년 3월 15일은 무슨 요일인가요?", "짧은 시를 한 편 써 주세요.",
]


def percentile(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    if not xs:
        return float("nan")
    k = min(len(xs) - 1, max(0, round(q / 100 * (len(xs) - 1))))
    return xs[k]


def build_default_checkpoint(folder: Path) -> Path:
    """cpu-tiny model shape with random weights, and a small Korean tokenizer (the model's vocabulary is
    the tokenizer's: the server refuses a tokenizer that does not belong to its model)."""
    import dataclasses

    from saessak.model import Llama, model_config
    from saessak.model.checkpoint import save_model
    from saessak.tokenizer import train_tokenizer

    text = [q * 3 for q in QUESTIONS] * 30
    tok = train_tokenizer(text, 600)
    cfg = dataclasses.replace(model_config("cpu-tiny", tok.vocab_size), max_position_embeddings=512)
    model = Llama(cfg)
    model.init_weights(0)
    save_model(folder, model)
    tok.save(folder / "tokenizer.json")
    return folder


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- our server --------------------------------------------------------------------------------

async def sse_chunks(client, url: str, body: dict):
    """POST a streaming request; yield (seconds since the request was sent, chunk object) for each SSE
    event, or (None, None) once if the answer is not 200. Also used by bench/serve_vs_vllm.py."""
    t0 = time.perf_counter()
    async with client.stream("POST", url, json=body) as r:
        if r.status_code != 200:
            yield None, None
            return
        async for line in r.aiter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                yield time.perf_counter() - t0, json.loads(line[6:])


async def one_stream(client, url: str, question: str, max_tokens: int, seed: int) -> dict:
    body = {"messages": [{"role": "user", "content": question}], "max_tokens": max_tokens, "stream": True,
            "temperature": 0.7, "seed": seed, "stream_options": {"include_usage": True}}
    ttft, tokens = None, 0
    async for t, obj in sse_chunks(client, url, body):
        if obj is None:
            return {"ok": False}
        if obj.get("usage"):
            tokens = obj["usage"]["completion_tokens"]
        for ch in obj.get("choices", []):
            if ttft is None and (ch["delta"].get("content") or ch["finish_reason"]):
                ttft = t
    return {"ok": tokens > 0, "ttft": ttft, "tokens": tokens}


async def run_level(base_url: str, clients: int, per_client: int, max_tokens: int) -> dict:
    import httpx

    url = base_url + "/v1/chat/completions"
    limits = httpx.Limits(max_connections=clients + 4)
    async with httpx.AsyncClient(timeout=600, limits=limits) as client:
        async def worker(c: int):
            out = []
            for k in range(per_client):
                out.append(await one_stream(client, url, QUESTIONS[(c + k) % len(QUESTIONS)], max_tokens,
                                            seed=c * 1000 + k))
            return out

        t0 = time.perf_counter()
        results = [r for rs in await asyncio.gather(*(worker(c) for c in range(clients))) for r in rs]
        wall = time.perf_counter() - t0
    ok = [r for r in results if r["ok"]]
    ttfts = [r["ttft"] for r in ok]
    tokens = sum(r["tokens"] for r in ok)
    return {"clients": clients, "requests": len(results), "failed": len(results) - len(ok), "tokens": tokens,
            "wall_s": round(wall, 3), "tok_s": round(tokens / wall, 1),
            "ttft_p50_s": round(percentile(ttfts, 50), 4), "ttft_p99_s": round(percentile(ttfts, 99), 4)}


def bench_ours(ckpt: Path, levels: list[int], per_client: int, max_tokens: int, threads: int | None) -> dict:
    import httpx

    port = free_port()
    cmd = [sys.executable, "-m", "saessak", "serve", "--model", str(ckpt), "--port", str(port),
           "--max-batch-size", str(max(levels)), "--max-queue", str(4 * max(levels))]
    if threads:
        cmd += ["--threads", str(threads)]
    env = dict(os.environ, PYTHONPATH=str(REPO), TOKENIZERS_PARALLELISM="false")
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while True:
            try:
                if httpx.get(base + "/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.time() > deadline or proc.poll() is not None:
                raise RuntimeError("server did not start")
            time.sleep(0.2)
        asyncio.run(run_level(base, 2, 1, 8))  # warm-up
        return {str(c): asyncio.run(run_level(base, c, per_client, max_tokens)) for c in levels}
    finally:
        proc.terminate()
        proc.wait(timeout=20)


# -- the transformers baseline -----------------------------------------------------------------

def hf_model_from(ckpt: Path):
    """LlamaForCausalLM with our weights (the parameter names are Llama's): checked to match."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from saessak.model.checkpoint import load_model

    ours = load_model(ckpt).eval()
    c = ours.config
    hf_cfg = LlamaConfig(vocab_size=c.vocab_size, hidden_size=c.hidden_size, intermediate_size=c.intermediate_size,
                         num_hidden_layers=c.num_hidden_layers, num_attention_heads=c.num_attention_heads,
                         num_key_value_heads=c.num_key_value_heads, max_position_embeddings=c.max_position_embeddings,
                         rope_theta=c.rope_theta, rms_norm_eps=c.rms_norm_eps,
                         tie_word_embeddings=c.tie_word_embeddings, attention_bias=False, mlp_bias=False,
                         head_dim=c.head_dim)
    hf = LlamaForCausalLM(hf_cfg).eval()
    missing, unexpected = hf.load_state_dict(ours.state_dict(), strict=False)
    assert not unexpected and all(k == "lm_head.weight" for k in missing), (missing, unexpected)
    x = torch.randint(0, c.vocab_size, (1, 16))
    with torch.no_grad():
        diff = (hf(x).logits - ours(x)).abs().max().item()
    assert diff < 1e-3, f"HF model does not match ours (max logit diff {diff})"
    return hf


def bench_hf_sequential(ckpt: Path, tokenizer_json: Path, levels: list[int], per_client: int, max_tokens: int,
                        baseline_requests: int | None) -> dict:
    import torch
    from transformers.generation.streamers import BaseStreamer

    from saessak.tokenizer.chat_format import prompt_ids
    from saessak.tokenizer import Tokenizer

    tok = Tokenizer.load(tokenizer_json)
    hf = hf_model_from(ckpt)

    class FirstToken(BaseStreamer):
        def __init__(self):
            self.calls, self.t_first = 0, None

        def put(self, value):  # first call: the prompt; second: the first new token
            self.calls += 1
            if self.calls == 2 and self.t_first is None:
                self.t_first = time.perf_counter()

        def end(self):
            pass

    out = {}
    for clients in levels:
        n = clients * per_client
        if baseline_requests:
            n = min(n, baseline_requests)
        t0 = time.perf_counter()
        ttfts, tokens = [], 0
        for i in range(n):
            ids = prompt_ids(tok, [{"role": "user", "content": QUESTIONS[i % len(QUESTIONS)]}])
            streamer = FirstToken()
            torch.manual_seed(i)
            with torch.no_grad():
                gen = hf.generate(torch.tensor([ids]), max_new_tokens=max_tokens, do_sample=True, temperature=0.7,
                                  top_p=1.0, top_k=0, eos_token_id=tok.eot_id, pad_token_id=tok.pad_id,
                                  streamer=streamer)
            tokens += gen.shape[1] - len(ids)
            ttfts.append((streamer.t_first or time.perf_counter()) - t0)  # queueing included
        wall = time.perf_counter() - t0
        out[str(clients)] = {"clients": clients, "requests": n, "failed": 0, "tokens": tokens,
                             "wall_s": round(wall, 3), "tok_s": round(tokens / wall, 1),
                             "ttft_p50_s": round(percentile(ttfts, 50), 4),
                             "ttft_p99_s": round(percentile(ttfts, 99), 4)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=None, help="run or checkpoint folder (default: random cpu-tiny weights)")
    ap.add_argument("--quick", action="store_true", help="fewer and shorter requests (under a minute)")
    ap.add_argument("--max-tokens", type=int, default=None)
    ap.add_argument("--threads", type=int, default=None, help="torch threads for both sides (default: torch's)")
    ap.add_argument("--smoke", action="store_true", help="1 and 2 clients, 4 tokens: every path in seconds (tests)")
    add_record_args(ap)
    args = ap.parse_args()

    levels = [1, 2] if args.smoke else [1, 8, 32]
    per_client = 1 if args.quick or args.smoke else 2
    max_tokens = args.max_tokens or (4 if args.smoke else 32 if args.quick else 64)
    # sequential tokens/s does not depend on the count
    baseline_requests = 2 if args.smoke else 6 if args.quick else None

    with tempfile.TemporaryDirectory() as tmp:
        if args.model:
            from saessak.model.loading import find

            found = find(args.model, needed_by="bench/serve_throughput.py")
            ckpt, tokenizer_json = found.checkpoint, found.tokenizer_json
        else:
            ckpt = build_default_checkpoint(Path(tmp) / "ckpt")
            tokenizer_json = ckpt / "tokenizer.json"
        if args.threads:
            import torch

            torch.set_num_threads(args.threads)
        ours = bench_ours(ckpt, levels, per_client, max_tokens, args.threads)
        hf = bench_hf_sequential(ckpt, tokenizer_json, levels, per_client, max_tokens, baseline_requests)

    print(f"{'clients':>7} | {'saessak tok/s':>13} {'TTFT p50':>9} {'p99':>7} | {'HF seq tok/s':>12} "
          f"{'TTFT p50':>9} {'p99':>7} | speed-up")
    for c in levels:
        o, h = ours[str(c)], hf[str(c)]
        print(f"{c:>7} | {o['tok_s']:>13.1f} {o['ttft_p50_s']:>9.3f} {o['ttft_p99_s']:>7.3f} | {h['tok_s']:>12.1f} "
              f"{h['ttft_p50_s']:>9.3f} {h['ttft_p99_s']:>7.3f} | {o['tok_s'] / h['tok_s']:.1f}x")
    summary = {
        "bench": "serve_throughput", "quick": args.quick, "smoke": args.smoke, "max_tokens": max_tokens, "threads": args.threads,
        "ours": ours, "hf_sequential": hf,
        f"speedup_at_{levels[-1]}": round(ours[str(levels[-1])]["tok_s"] / hf[str(levels[-1])]["tok_s"], 2),
        "failed_requests": sum(v["failed"] for v in ours.values()),
    }
    emit("serve_throughput", summary, args)


def render(r: dict) -> str:
    """The record as docs/BENCHMARKS.md shows it (scripts/docs_figures.py)."""
    from saessak.io import md_table

    rows = []
    for c, o in r["ours"].items():
        h = r["hf_sequential"][c]
        rows.append([c, f"{o['tok_s']:,.1f}", f"{o['ttft_p50_s']:.3f} / {o['ttft_p99_s']:.3f}", f"{h['tok_s']:,.1f}",
                     f"{h['ttft_p50_s']:.2f} / {h['ttft_p99_s']:.2f}", f"{o['tok_s'] / h['tok_s']:.1f}x"])
    top = max(r["ours"], key=int)
    speedup = r[f"speedup_at_{top}"]
    return "\n".join([f"Up to {r['max_tokens']} new tokens per request, torch threads: {r['threads'] or 'default'}"
                      + (" (--quick: one request per client)" if r.get("quick") else "") + ".", "",
                      md_table(["clients", "saessak tok/s", "TTFT p50 / p99 (s)", "HF sequential tok/s",
                                "TTFT p50 / p99 (s)", "speed-up"], rows), "",
                      f"Failed requests: {r['failed_requests']}. Target, >= 5x at {top} clients: "
                      f"**{'met' if speedup >= 5 else 'missed'}** ({speedup:.2f}x)."])


if __name__ == "__main__":
    main()
