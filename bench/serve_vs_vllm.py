"""Serving side by side with vLLM: `saessak serve` on a run folder and vLLM (CPU build) on that run's
`saessak export hf` folder, the same weights, the same requests, the same machine.

For each model shape (cpu-tiny, and d12, about 90 M parameters with the bench tokenizer's
vocabulary) and each level of 1, 8, 32 and 128 concurrent streaming clients (each client sends
its requests one after another), both servers get the same chat requests: a fixed prompt length
(distinct random words per request, and fresh prompts for every timed run and for the warm-up, so
vLLM's prefix cache, on by default, has nothing to reuse beyond the chat template: each run's hit
rate is read from vLLM's /metrics and recorded) and a fixed output length (greedy; the random model cannot emit an end token, and vLLM
is also told `ignore_eos`, so both sides generate exactly max_tokens per request). Reported per
side: aggregate generated tokens/s, time to first token (TTFT) p50/p99, inter-token latency (ITL:
the gaps between streamed chunks) p50/p99, peak RSS of the server's process tree, start-up time
(spawn to a healthy /health) and how many replies were identical on both sides. Both servers
stay up during a shape's run and each level runs on one, then on the other, --repeats times
(default 3, alternating, the side that goes first alternating too); the run with the median
throughput is reported, with every run's figure, and each repeat's pair of runs gives a paired
ratio (the machine's load between repeats cancels out of it).

    .venv/bin/python bench/serve_vs_vllm.py                  # both shapes, 1/8/32/128 clients
    .venv/bin/python bench/serve_vs_vllm.py --quick          # one request per client, 32 tokens
    .venv/bin/python bench/serve_vs_vllm.py --smoke          # tiny shape, 1 and 2 clients, saessak only
    .venv/bin/python bench/serve_vs_vllm.py --shapes cpu-tiny --levels 32
    .venv/bin/python bench/serve_vs_vllm.py --shapes cpu-tiny --levels 32,128 --per-client 8 --repeats 7 \
        --record bench/results/serve_vs_vllm_steady.json     # steady state: docs/BENCHMARKS.md's second block

vLLM runs from its own environment (`bash scripts/vllm_env.sh`; --vllm-python to point elsewhere).
Without it (and always in --smoke, where starting vLLM would take minutes) the vLLM side is
reported as absent. Both sides get the same number of compute threads (--threads, default 1:
vLLM's own default on a 2-core machine, where it keeps one core for its front-end process).

The last stdout line is one JSON object with the key figures.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench._lib.record import add_record_args, emit  # noqa: E402  (first: it notes the load before the work)
from bench.serve_throughput import QUESTIONS, free_port, percentile, sse_chunks  # noqa: E402


def vllm_python(explicit: str | None) -> Path | None:
    """The vLLM environment's python (scripts/vllm_env.sh puts it there), or None when absent."""
    if explicit:
        return Path(explicit)
    venv = os.environ.get("SAESSAK_VLLM_VENV") or Path(
        os.environ.get("SAESSAK_CACHE") or Path.home() / ".cache" / "saessak") / "vllm-venv"
    py = Path(venv) / "bin" / "python"
    # the stamp is written last, once vLLM imports: a half-finished install counts as absent
    return py if py.exists() and (Path(venv) / ".saessak-vllm-stamp").exists() else None


# -- the model both sides serve ----------------------------------------------------------------

def build_run(root: Path, shape: str, max_len: int):
    """A run folder (tokenizer + an `sft` model with random weights) and its tokenizer.

    The model cannot end a reply or emit a byte token, so every request generates exactly
    max_tokens text pieces on both sides: residual dimension 0 is held at a constant (set in every
    embedding, written by no layer) and the output rows of the special and byte tokens read only
    that dimension, with a large negative weight. The output head is therefore untied (the d12
    recipe's GPU shape is untied anyway); the cost of a forward pass is the shape's."""
    import dataclasses


    from saessak.model import Llama, model_config
    from saessak.model.checkpoint import save_model
    from saessak.runfolder import RunFolder
    from saessak.tokenizer import train_tokenizer

    tok = train_tokenizer([q * 3 for q in QUESTIONS] * 30, 600)
    cfg = dataclasses.replace(model_config(shape, tok.vocab_size), max_position_embeddings=max_len,
                              tie_word_embeddings=False)
    model = Llama(cfg)
    model.init_weights(0)
    blocked = sorted(tok.special_ids | {i for i in range(tok.vocab_size) if tok.id_to_token(i).startswith("<0x")})
    from tests.serve_util import block_tokens  # the same trick as the serving tests' never-ending model

    block_tokens(model, blocked, lift=1.0)
    run = RunFolder(root)
    tok.save(run.tokenizer_json)
    run.mark_done("tokenizer", {"vocab_size": tok.vocab_size})
    save_model(run.final_checkpoint("sft"), model.eval(), meta={"preset": shape, "stage": "sft"})
    run.mark_done("sft", {"steps": 0})
    return root, tok, cfg.num_parameters()


def make_prompts(tok, n: int, prompt_tokens: int, seed: int = 0) -> list[str]:
    """n user messages, each exactly `prompt_tokens` tokens once in the chat template (different words
    per message). Words are whole "▁word" pieces of the vocabulary, checked by re-encoding."""
    from saessak.tokenizer.chat_format import prompt_ids

    words = [p[1:] for p in (tok.id_to_token(i) for i in range(tok.vocab_size))
             if p.startswith("\u2581") and len(p) > 2 and all("가" <= c <= "힣" for c in p[1:])]
    rng = random.Random(seed)
    out = []
    while len(out) < n:
        chosen = rng.choices(words, k=prompt_tokens)
        for k in range(prompt_tokens, 0, -1):
            text = " ".join(chosen[:k])
            if len(prompt_ids(tok, [{"role": "user", "content": text}])) == prompt_tokens:
                out.append(text)
                break
    return out


def prompt_plan(tok, levels: list[int], per_client: int, repeats: int, prompt_tokens: int,
                seed: int = 1) -> tuple[dict[int, list[list[str]]], list[str]]:
    """Each level's prompt set for each timed run, and the warm-up's: no prompt is sent twice (both
    sides get the same sets). A prompt sent again would let vLLM's prefix cache skip its prefill,
    which saessak's engine does not have."""
    rng = random.Random(seed)
    by_level = {c: [make_prompts(tok, c * per_client, prompt_tokens, seed=rng.randrange(1 << 30))
                    for _ in range(repeats)] for c in levels}
    return by_level, make_prompts(tok, 2, prompt_tokens, seed=rng.randrange(1 << 30))


# -- one server ---------------------------------------------------------------------------------

class RssSampler(threading.Thread):
    """Peak resident memory of a process and its children (sampled every 0.2 s)."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid, self.peak, self.stop_flag = pid, 0, threading.Event()

    def run(self):
        import psutil

        try:
            root = psutil.Process(self.pid)
        except psutil.NoSuchProcess:
            return
        while not self.stop_flag.is_set():
            total = 0
            try:
                for p in [root, *root.children(recursive=True)]:
                    try:
                        total += p.memory_info().rss
                    except psutil.NoSuchProcess:
                        pass
            except psutil.NoSuchProcess:
                return
            self.peak = max(self.peak, total)
            time.sleep(0.2)


class Server:
    """A server subprocess in its own process group; start-up time = spawn to /health 200."""

    def __init__(self, name: str, cmd: list[str], env: dict, port: int, log: Path, timeout_s: float):
        import httpx

        self.name, self.base = name, f"http://127.0.0.1:{port}"
        self.log = log
        self._out = open(log, "wb")
        t0 = time.perf_counter()
        self.proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=self._out, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        self.rss = RssSampler(self.proc.pid)
        self.rss.start()
        deadline = time.time() + timeout_s
        while True:
            try:
                if httpx.get(self.base + "/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None or time.time() > deadline:
                self.stop()
                tail = log.read_text(errors="replace")[-3000:]
                raise RuntimeError(f"{name} did not start (see {log}):\n{tail}")
            time.sleep(0.25)
        self.startup_s = time.perf_counter() - t0
        self.model = httpx.get(self.base + "/v1/models", timeout=10).json()["data"][0]["id"]

    def stop(self) -> None:
        self.rss.stop_flag.set()
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._out.close()


def start_saessak(run: Path, threads: int, max_batch: int, workdir: Path) -> Server:
    port = free_port()
    cmd = [sys.executable, "-m", "saessak", "serve", "--model", str(run), "--port", str(port),
           "--max-batch-size", str(max_batch), "--max-queue", str(4 * max_batch), "--threads", str(threads)]
    env = dict(os.environ, PYTHONPATH=str(REPO), TOKENIZERS_PARALLELISM="false")
    return Server("saessak", cmd, env, port, workdir / "saessak.log", timeout_s=180)


def start_vllm(py: Path, hf_dir: Path, threads: int, max_batch: int, max_len: int, workdir: Path) -> Server:
    port = free_port()
    cmd = [str(py), "-m", "vllm.entrypoints.openai.api_server", "--model", str(hf_dir), "--port", str(port),
           "--host", "127.0.0.1", "--dtype", "float32", "--max-model-len", str(max_len),
           "--max-num-seqs", str(max_batch), "--served-model-name", "bench"]
    env = dict(os.environ, VLLM_CPU_KVCACHE_SPACE=os.environ.get("VLLM_CPU_KVCACHE_SPACE", "2"),
               TOKENIZERS_PARALLELISM="false", HF_HUB_OFFLINE="1", VLLM_NO_USAGE_STATS="1")
    # Same compute threads as saessak: vLLM pins its OpenMP threads to these cores.
    env.setdefault("VLLM_CPU_OMP_THREADS_BIND", "0" if threads == 1 else f"0-{threads - 1}")
    return Server("vllm", cmd, env, port, workdir / "vllm.log", timeout_s=900)


def prefix_cache_counts(server: Server) -> tuple[float, float] | None:
    """vLLM's prefix-cache (hits, queries) counters in tokens, from its Prometheus /metrics; None for a
    server without them (saessak has no prefix cache)."""
    import httpx

    if server.name != "vllm":
        return None
    found = {}
    for line in httpx.get(server.base + "/metrics", timeout=10).text.splitlines():
        for key in ("hits", "queries"):
            if line.startswith(f"vllm:prefix_cache_{key}_total"):
                found[key] = found.get(key, 0.0) + float(line.rsplit(" ", 1)[1])
    return (found["hits"], found["queries"]) if len(found) == 2 else None


# -- the load -----------------------------------------------------------------------------------

async def one_stream(client, server: Server, prompt: str, max_tokens: int) -> dict:
    body = {"model": server.model, "messages": [{"role": "user", "content": prompt}], "max_tokens": max_tokens,
            "temperature": 0, "stream": True, "stream_options": {"include_usage": True}}
    if server.name == "vllm":
        body["ignore_eos"] = True
    stamps, text, usage = [], [], {}
    async for t, obj in sse_chunks(client, server.base + "/v1/chat/completions", body):
        if obj is None:
            return {"ok": False}
        usage = obj.get("usage") or usage
        for ch in obj.get("choices", []):
            piece = ch["delta"].get("content")
            if piece:
                stamps.append(t)
                text.append(piece)
    tokens = usage.get("completion_tokens", 0)
    return {"ok": tokens == max_tokens, "tokens": tokens, "prompt_tokens": usage.get("prompt_tokens"),
            "stamps": stamps, "text": "".join(text)}


async def run_level(server: Server, prompts: list[str], clients: int, max_tokens: int) -> tuple[dict, list[str]]:
    import httpx

    per_client = len(prompts) // clients
    # a fresh connection per request: a kept-alive one that the server closes while idle would fail
    limits = httpx.Limits(max_connections=clients + 4, max_keepalive_connections=0)
    async with httpx.AsyncClient(timeout=1800, limits=limits) as client:
        async def one(prompt: str) -> dict:
            try:
                return await one_stream(client, server, prompt, max_tokens)
            except httpx.HTTPError as e:  # counted as failed; the server's log says why
                return {"ok": False, "error": type(e).__name__}

        async def worker(c: int):
            return [await one(prompts[c * per_client + k]) for k in range(per_client)]

        t0 = time.perf_counter()
        results = [r for rs in await asyncio.gather(*(worker(c) for c in range(clients))) for r in rs]
        wall = time.perf_counter() - t0
    ok = [r for r in results if r["ok"]]
    ttft = [r["stamps"][0] for r in ok if r["stamps"]]
    itl = [b - a for r in ok for a, b in zip(r["stamps"], r["stamps"][1:])]
    tokens = sum(r["tokens"] for r in ok)
    chunks = sum(len(r["stamps"]) for r in ok)

    def ms(xs, q):
        return round(1000 * percentile(xs, q), 1) if xs else None

    errors = sorted({r["error"] for r in results if "error" in r})
    return ({"clients": clients, "requests": len(results), "failed": len(results) - len(ok), "errors": errors,
             "tokens": tokens,
             "prompt_tokens": ok[0]["prompt_tokens"] if ok else None, "wall_s": round(wall, 2),
             "tok_s": round(tokens / wall, 1), "ttft_p50_ms": ms(ttft, 50), "ttft_p99_ms": ms(ttft, 99),
             "itl_p50_ms": ms(itl, 50), "itl_p99_ms": ms(itl, 99),
             "tokens_per_chunk": round(tokens / chunks, 2) if chunks else None},
            [r.get("text", "") for r in results])


def bench_shape(shape: str, args, vllm_py: Path | None, tmp: Path, logs: Path) -> dict:
    """Both servers up at once; each level runs on saessak, then on vLLM (interleaved, so a change in
    the machine's load falls on both sides alike)."""
    from saessak.export.hf import export_hf

    max_len = args.prompt_tokens + args.max_tokens + 8
    run, tok, params = build_run(tmp / shape / "run", shape, max_len)
    hf_dir = export_hf(run, tmp / shape / "hf", stage="sft")
    per_client = 1 if args.quick or args.smoke else args.per_client
    prompts_by_level, warm_prompts = prompt_plan(tok, args.levels, per_client, args.repeats, args.prompt_tokens)
    max_batch = max(args.levels)
    out = {"shape": shape, "params_m": round(params / 1e6, 1), "prompt_tokens": args.prompt_tokens,
           "max_tokens": args.max_tokens, "requests_per_client": per_client}
    (logs / shape).mkdir(parents=True, exist_ok=True)
    servers = {"saessak": start_saessak(run, args.threads, max_batch, logs / shape)}
    try:
        if vllm_py is not None:
            servers["vllm"] = start_vllm(vllm_py, hf_dir, args.threads, max_batch, max_len, logs / shape)
        all_texts = {name: [] for name in servers}  # every timed reply, in the order both sides sent them
        levels = {name: {} for name in servers}
        paired: dict[str, list[float]] = {}
        for server in servers.values():  # warm-up, not timed
            asyncio.run(run_level(server, warm_prompts, 2, 4))
        for clients, prompt_sets in prompts_by_level.items():
            runs = {name: [] for name in servers}
            hits = [0, 0]  # vLLM's prefix-cache hits and queries (tokens) over this level's timed runs
            for i in range(args.repeats):  # alternating sides, so a change in the machine's load falls on both,
                # and which side goes first alternates too (ABBA), so neither always runs on a warmer machine
                for name, server in (list(servers.items()) if i % 2 == 0 else list(servers.items())[::-1]):
                    before = prefix_cache_counts(server)
                    level, replies = asyncio.run(run_level(server, prompt_sets[i], clients, args.max_tokens))
                    after = prefix_cache_counts(server)
                    if before and after:
                        hits = [hits[0] + after[0] - before[0], hits[1] + after[1] - before[1]]
                        level["prefix_cache_hit_rate"] = round((after[0] - before[0]) / max(1, after[1] - before[1]), 3)
                    runs[name].append((level, replies))
                    all_texts[name] += replies
            if len(runs) == 2:
                # saessak's i-th run and vLLM's i-th ran back to back: their ratio is paired, so a change
                # in the machine's load between repeats cancels out of it
                paired[str(clients)] = [round(a[0]["tok_s"] / b[0]["tok_s"], 3)
                                        for a, b in zip(runs["saessak"], runs["vllm"])]
            for name, got in runs.items():
                # the run with the median throughput stands for the level; every run's figure is kept
                got.sort(key=lambda r: r[0]["tok_s"])
                level = got[len(got) // 2][0]
                levels[name][str(clients)] = {**level, "tok_s_runs": [r[0]["tok_s"] for r in got]}
                if name == "vllm" and hits[1]:
                    levels[name][str(clients)]["prefix_cache_hit_rate_all_runs"] = round(hits[0] / hits[1], 3)
    finally:
        for server in servers.values():
            server.stop()
    for name, server in servers.items():
        out[name] = {"status": "ran", "startup_s": round(server.startup_s, 1),
                     "peak_rss_mb": round(server.rss.peak / 2**20), "levels": levels[name]}
    if vllm_py is None:
        out["vllm"] = {"status": "skipped (--smoke)" if args.smoke else "absent: run bash scripts/vllm_env.sh"}
        return out
    same = sum(a == b for a, b in zip(all_texts["saessak"], all_texts["vllm"]))
    out["identical_replies"] = f"{same}/{len(all_texts['saessak'])}"
    out["ratio"] = {c: round(out["saessak"]["levels"][c]["tok_s"] / out["vllm"]["levels"][c]["tok_s"], 2)
                    for c in out["saessak"]["levels"]}
    # per level: each repeat's saessak/vLLM ratio in run order, and their median
    out["paired_ratios"] = paired
    out["paired_ratio_median"] = {c: round(statistics.median(r), 2) for c, r in paired.items()}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shapes", default=None, help="comma-separated recipe shapes (default: cpu-tiny,d12)")
    ap.add_argument("--levels", default=None, help="comma-separated client counts (default: 1,8,32,128)")
    ap.add_argument("--prompt-tokens", type=int, default=None, help="prompt length in tokens (default 64)")
    ap.add_argument("--max-tokens", type=int, default=None, help="tokens generated per request (default 64)")
    ap.add_argument("--per-client", type=int, default=2, help="requests each client sends in a row (default 2)")
    ap.add_argument("--threads", type=int, default=1, help="compute threads for each server (default 1)")
    ap.add_argument("--repeats", type=int, default=3,
                    help="timed runs of each level on each side, alternating; the median run is reported (default 3)")
    ap.add_argument("--vllm-python", default=None, help="python of the vLLM environment (default: scripts/vllm_env.sh's)")
    ap.add_argument("--quick", action="store_true", help="one request per client, 32 tokens")
    ap.add_argument("--smoke", action="store_true", help="micro shape, 1 and 2 clients, 4 tokens, saessak only (tests)")
    add_record_args(ap)
    args = ap.parse_args()

    shapes = (args.shapes or ("micro" if args.smoke else "cpu-tiny,d12")).split(",")
    args.levels = [int(x) for x in (args.levels or ("1,2" if args.smoke else "1,8,32,128")).split(",")]
    if args.smoke or args.quick:
        args.repeats = 1
    args.prompt_tokens = args.prompt_tokens or (16 if args.smoke else 64)
    args.max_tokens = args.max_tokens or (4 if args.smoke else 32 if args.quick else 64)
    vllm_py = None if args.smoke else vllm_python(args.vllm_python)
    if args.vllm_python and not vllm_py.exists():
        raise SystemExit(f"error: --vllm-python {args.vllm_python}: no such file")

    with tempfile.TemporaryDirectory() as tmp:
        # the servers' logs outlive the run (they say why a request failed)
        logs = Path(tempfile.mkdtemp(prefix="serve_vs_vllm-logs-"))
        print(f"[serve_vs_vllm] server logs: {logs}", file=sys.stderr)
        shapes_out = {s: bench_shape(s, args, vllm_py, Path(tmp), logs) for s in shapes}

    for s, r in shapes_out.items():
        print(f"{s} ({r['params_m']} M params): prompt {r['prompt_tokens']}, output {r['max_tokens']} tokens")
        print(f"{'clients':>7} | {'saessak tok/s':>13} {'TTFT p50':>8} {'ITL p50':>7} | {'vLLM tok/s':>10} "
              f"{'TTFT p50':>8} {'ITL p50':>7} | ratio")
        for c, o in r["saessak"]["levels"].items():
            v = r["vllm"].get("levels", {}).get(c)
            vs = f"{v['tok_s']:>10.1f} {v['ttft_p50_ms']:>8} {v['itl_p50_ms']:>7}" if v else f"{'-':>10} {'-':>8} {'-':>7}"
            print(f"{c:>7} | {o['tok_s']:>13.1f} {o['ttft_p50_ms']:>8} {o['itl_p50_ms']:>7} | {vs} | "
                  f"{r.get('ratio', {}).get(c, '-')}")
    summary = {"bench": "serve_vs_vllm", "smoke": args.smoke, "quick": args.quick, "threads": args.threads,
               "levels": args.levels, "shapes": shapes_out,
               "vllm": "ran" if vllm_py else ("skipped (--smoke)" if args.smoke else "absent"),
               "failed_requests": sum(lv["failed"] for r in shapes_out.values()
                                      for side in ("saessak", "vllm") for lv in r[side].get("levels", {}).values())}
    emit("serve_vs_vllm", summary, args)


def prefix_note(vllm_side: dict) -> str:
    """How much of the timed runs' prompts vLLM's prefix cache served, from its own counters."""
    rates = [lv["prefix_cache_hit_rate_all_runs"] for lv in vllm_side.get("levels", {}).values()
             if "prefix_cache_hit_rate_all_runs" in lv]
    if not rates:
        return ""
    return f"; vLLM's prefix cache served at most {100 * max(rates):.1f} % of a level's timed prompt tokens (its /metrics)"


def render(r: dict) -> str:
    """The record as docs/BENCHMARKS.md shows it (scripts/docs_figures.py)."""
    from saessak.io import md_table

    def cell(side: dict, c: str, key: str, fmt: str = "{:,.1f}") -> str:
        v = side.get("levels", {}).get(c, {}).get(key)
        return "-" if v is None else fmt.format(v)

    def tok(side: dict, c: str) -> str:
        runs = side.get("levels", {}).get(c, {}).get("tok_s_runs") or []
        spread = f" ({min(runs):,.0f}-{max(runs):,.0f})" if len(runs) > 1 else ""
        return cell(side, c, "tok_s") + spread

    def ratio(s: dict, c: str) -> str:
        paired = s.get("paired_ratios", {}).get(c) or []
        if len(paired) < 2:
            return str(s.get("ratio", {}).get(c, "-"))
        return (f"{s['ratio'][c]} (paired: median {s['paired_ratio_median'][c]}, "
                f"{sum(x >= 1 for x in paired)} of {len(paired)} pairs >= 1)")

    runs = {len(lv.get("tok_s_runs") or [1]) for s in r["shapes"].values() for lv in s["saessak"]["levels"].values()}
    parts = [f"Compute threads per server: {r['threads']}; vLLM: {r['vllm']}."
             + (f" Each level ran {max(runs)} times per side, alternating; tok/s is the median run's, with the "
                "range of all runs in brackets, and the other columns are that run's. saessak / vLLM is the ratio "
                "of the medians; \"paired\" reads each repeat's two back-to-back runs as a pair (the machine's "
                "load between repeats cancels out of their ratio)." if max(runs) > 1 else "")]
    for shape, s in r["shapes"].items():
        o, v = s["saessak"], s["vllm"]
        rows = []
        for c in o["levels"]:
            rows.append([c, tok(o, c), tok(v, c), ratio(s, c),
                         f"{cell(o, c, 'ttft_p50_ms', '{:,.0f}')} / {cell(o, c, 'ttft_p99_ms', '{:,.0f}')}",
                         f"{cell(v, c, 'ttft_p50_ms', '{:,.0f}')} / {cell(v, c, 'ttft_p99_ms', '{:,.0f}')}",
                         f"{cell(o, c, 'itl_p50_ms')} / {cell(o, c, 'itl_p99_ms')}",
                         f"{cell(v, c, 'itl_p50_ms')} / {cell(v, c, 'itl_p99_ms')}"])
        parts += ["", f"**{shape}** ({s['params_m']} M parameters), prompt {s['prompt_tokens']} tokens, "
                  f"{s['max_tokens']} generated per request, {s['requests_per_client']} request(s) per client; "
                  f"start-up saessak {o['startup_s']} s, vLLM {v.get('startup_s', '-')} s; peak RSS saessak "
                  f"{o['peak_rss_mb']:,} MB, vLLM {v.get('peak_rss_mb', '-')} MB"
                  + (f"; identical replies {s['identical_replies']}" if "identical_replies" in s else "")
                  + prefix_note(v) + ".", "",
                  md_table(["clients", "saessak tok/s", "vLLM tok/s", "saessak / vLLM", "saessak TTFT p50 / p99 (ms)",
                            "vLLM TTFT p50 / p99 (ms)", "saessak ITL p50 / p99 (ms)", "vLLM ITL p50 / p99 (ms)"], rows)]
    parts += ["", f"Failed requests: {r['failed_requests']}."]
    return "\n".join(parts)


if __name__ == "__main__":
    main()
