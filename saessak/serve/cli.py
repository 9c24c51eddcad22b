"""`saessak serve` (OpenAI-compatible HTTP server + web chat) and `saessak chat` (terminal chat)."""

from __future__ import annotations

import argparse
import os

API_KEY_ENV = "SAESSAK_API_KEY"


def register(subparsers) -> None:
    from saessak.serve.protocol import DEFAULT_MAX_REQUEST_BYTES

    s = subparsers.add_parser(
        "serve", help="serve a model over an OpenAI-compatible HTTP API with a Korean web chat page",
        description="Serve a model over an OpenAI-compatible API (/v1/chat/completions, /v1/completions, "
                    "/v1/models), with /health, /metrics, /openapi.json and a web chat page at /. Binds to "
                    "127.0.0.1 unless --host says otherwise, and then refuses to start without an API key "
                    "unless --no-auth is given; keeps no conversation content in its logs unless "
                    "--log-content is given.")
    s.add_argument("--model", required=True, help="run folder (serves rl > sft > pretrain) or checkpoint folder")
    s.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    s.add_argument("--port", type=int, default=8000)
    s.add_argument("--api-key", default=None, metavar="KEY",
                   help="require 'Authorization: Bearer KEY' on /v1/* requests (other users can see it in "
                        f"`ps`: prefer --api-key-file or the {API_KEY_ENV} environment variable)")
    s.add_argument("--api-key-file", default=None, metavar="PATH",
                   help="read the API key from this file (the key alone, on one line)")
    s.add_argument("--no-auth", action="store_true",
                   help="serve without an API key on a non-loopback --host (refused otherwise)")
    s.add_argument("--max-request-bytes", type=int, default=DEFAULT_MAX_REQUEST_BYTES, metavar="N",
                   help=f"larger request bodies get 413 (default {DEFAULT_MAX_REQUEST_BYTES} = 1 MiB)")
    s.add_argument("--served-model-name", default=None, help="model id clients send (default: from the path)")
    s.add_argument("--max-batch-size", type=int, default=32, help="sequences decoded together (default 32)")
    s.add_argument("--max-queue", type=int, default=64,
                   help="requests that may wait for a slot before new ones get 429 (default 64)")
    s.add_argument("--max-n", type=int, default=8, help="largest 'n' (choices per request) accepted (default 8)")
    s.add_argument("--max-seq-len", type=int, default=None, help="context limit (default: the model's)")
    s.add_argument("--dtype", choices=["float32", "bfloat16"], default=None,
                   help="run weights in this dtype (default: as stored)")
    s.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    s.add_argument("--engine-in-process", action="store_true",
                   help="run the engine in a thread of the HTTP process instead of its own process (the "
                        "default gives the engine a core of its own: faster under load; see docs/API.md)")
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


def is_loopback(host: str) -> bool:
    import ipaddress

    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name (or "" = every interface): reachable from elsewhere
        return False


def _checked_key(key: str, source: str) -> str:
    from saessak.errors import UserError

    key = key.strip()
    if not key:
        raise UserError(f"{source}: the API key is empty")
    if "\n" in key:
        raise UserError(f"{source}: the API key spans several lines; put it alone on one line")
    if not all("!" <= c <= "~" for c in key):  # it travels in an HTTP header
        raise UserError(f"{source}: the API key must be printable ASCII without spaces")
    return key


def _read_key_file(path: str) -> str:
    from saessak.errors import UserError

    where = f"--api-key-file {path}"
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except FileNotFoundError:
        raise UserError(f"{where}: no such file") from None
    except IsADirectoryError:
        raise UserError(f"{where}: is a folder, not a file") from None
    except UnicodeDecodeError:
        raise UserError(f"{where}: is not UTF-8 text") from None
    except OSError as e:  # permission denied, ...
        raise UserError(f"{where}: cannot be read ({e.strerror or type(e).__name__})") from None


def resolve_api_key(args: argparse.Namespace, environ=os.environ) -> str | None:
    """The key the server requires (None: none), from --api-key, --api-key-file or $SAESSAK_API_KEY;
    a non-loopback --host without one is refused unless --no-auth says so."""
    from saessak.errors import UserError

    sources = []
    if args.api_key is not None:
        sources.append(("--api-key", args.api_key))
    if args.api_key_file is not None:
        sources.append((f"--api-key-file {args.api_key_file}", _read_key_file(args.api_key_file)))
    if not sources and environ.get(API_KEY_ENV) is not None:
        sources.append((f"the {API_KEY_ENV} environment variable", environ[API_KEY_ENV]))
    if len(sources) > 1:
        raise UserError("--api-key and --api-key-file: give the key one way, not both")
    if args.no_auth and sources:
        raise UserError(f"--no-auth contradicts {sources[0][0]}: drop one of them")
    key = _checked_key(sources[0][1], sources[0][0]) if sources else None
    if key is None and not args.no_auth and not is_loopback(args.host):
        raise UserError(
            f"--host {args.host!r} makes the server reachable from other machines, and no API key is set. "
            f"Require a key with --api-key-file PATH (or the {API_KEY_ENV} environment variable, or "
            "--api-key KEY, which other users can see in `ps`), or pass --no-auth to serve without one.")
    return key


def _check_port(port: int) -> None:
    from saessak.errors import UserError

    if not 0 < port < 65536:
        raise UserError(f"--port {port}: must be between 1 and 65535")


def run_serve(args: argparse.Namespace) -> int:
    import logging

    from saessak.errors import UserError
    from saessak.model.loading import find
    from saessak.serve import privacy_log
    from saessak.serve.loading import load_served_model, load_served_tokenizer

    _check_port(args.port)
    api_key = resolve_api_key(args)
    if args.max_request_bytes < 1:
        raise UserError(f"--max-request-bytes {args.max_request_bytes}: must be at least 1")
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
    settings = ServeSettings(api_key=api_key, max_batch_size=args.max_batch_size, max_queue=args.max_queue,
                             max_n=args.max_n, max_seq_len=args.max_seq_len, log_content=args.log_content,
                             dtype=args.dtype, max_request_bytes=args.max_request_bytes,
                             engine_process=not args.engine_in_process, threads=args.threads)
    load = load_served_model if args.engine_in_process else load_served_tokenizer
    app = create_app(settings, lambda: load(args.model, name=args.served_model_name))
    if not is_loopback(args.host):
        logger.warning("binding to %s: the server is reachable from other machines%s", args.host,
                       "" if api_key else ", and --no-auth lets anyone who reaches it use it")
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
