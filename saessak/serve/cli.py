"""`saessak serve` (OpenAI-compatible HTTP server + web chat) and `saessak chat` (terminal chat)."""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    s = subparsers.add_parser(
        "serve", help="serve a model over an OpenAI-compatible HTTP API with a Korean web chat page",
        description="Serve a model over an OpenAI-compatible API (/v1/chat/completions, /v1/completions, "
                    "/v1/models), with /health, /metrics and a web chat page at /. Binds to 127.0.0.1 "
                    "unless --host says otherwise; keeps no conversation content in its logs unless "
                    "--log-content is given.")
    s.add_argument("--model", required=True, help="run folder (serves rl > sft > pretrain) or checkpoint folder")
    s.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    s.add_argument("--port", type=int, default=8000)
    s.add_argument("--api-key", default=None, help="require 'Authorization: Bearer KEY' on /v1/* requests")
    s.add_argument("--served-model-name", default=None, help="model id clients send (default: from the path)")
    s.add_argument("--max-batch-size", type=int, default=32, help="sequences decoded together (default 32)")
    s.add_argument("--max-queue", type=int, default=64,
                   help="requests that may wait for a slot before new ones get 429 (default 64)")
    s.add_argument("--max-n", type=int, default=8, help="largest 'n' (choices per request) accepted (default 8)")
    s.add_argument("--max-seq-len", type=int, default=None, help="context limit (default: the model's)")
    s.add_argument("--dtype", choices=["float32", "bfloat16"], default=None,
                   help="run weights in this dtype (default: as stored)")
    s.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    s.add_argument("--log-content", action="store_true",
                   help="also log request and reply content (off by default: privacy)")
    s.add_argument("--log-file", default=None, help="also write the request log to this file")
    s.set_defaults(func=run_serve)

    c = subparsers.add_parser("chat", help="chat with a model in the terminal (streaming)",
                              description="Streaming terminal chat. Commands: /reset, /system TEXT, /temp X, "
                                          "/help, /exit. Ctrl-C stops a reply; Ctrl-D or Ctrl-C at the prompt exits.")
    c.add_argument("--model", required=True, help="run folder (rl > sft > pretrain) or checkpoint folder")
    c.add_argument("--system", default="", help="system prompt")
    c.add_argument("--temperature", type=float, default=0.7)
    c.add_argument("--top-p", type=float, default=0.95)
    c.add_argument("--max-tokens", type=int, default=256)
    c.add_argument("--seed", type=int, default=None)
    c.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    c.set_defaults(func=run_chat)


def _check_port(port: int) -> None:
    from saessak.errors import UserError

    if not 0 < port < 65536:
        raise UserError(f"--port {port}: must be between 1 and 65535")


def run_serve(args: argparse.Namespace) -> int:
    import logging

    from saessak.errors import UserError
    from saessak.serve import privacy_log
    from saessak.model.loading import find
    from saessak.serve.loading import load_served_model

    _check_port(args.port)
    for name in ("max_batch_size", "max_queue", "max_n"):
        if getattr(args, name) < (0 if name == "max_queue" else 1):
            raise UserError(f"--{name.replace('_', '-')} {getattr(args, name)}: too small")
    find(args.model, needed_by="serve")  # user mistakes in the path fail now, before the server starts
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)

    import uvicorn

    from saessak.serve.app import ServeSettings, create_app

    logger = privacy_log.configure(args.log_file)
    settings = ServeSettings(api_key=args.api_key, max_batch_size=args.max_batch_size, max_queue=args.max_queue,
                             max_n=args.max_n, max_seq_len=args.max_seq_len, log_content=args.log_content,
                             dtype=args.dtype)
    app = create_app(settings, lambda: load_served_model(args.model, name=args.served_model_name))
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        logger.warning("binding to %s: the server is reachable from other machines", args.host)
    if args.log_content:
        logger.warning("--log-content: conversation content will be written to the logs")
    logger.info("serving %s on http://%s:%d (web chat at /)", args.model, args.host, args.port)
    # access_log=False: uvicorn's access lines carry client addresses; our request log replaces them
    uvicorn.run(app, host=args.host, port=args.port, access_log=False, log_level=logging.WARNING,
                timeout_graceful_shutdown=5)
    return 0


def run_chat(args: argparse.Namespace) -> int:
    from saessak.serve.terminal_chat import chat_repl

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)

    return chat_repl(args)
