"""Private chat serving: an OpenAI-compatible HTTP API with continuous batching, a Korean web chat
page and a terminal chat, all on the one generation engine (saessak/model/engine.py).

- loading.py    --model PATH (run folder or checkpoint folder) -> the served model and its name
- protocol.py   request parsing/validation and OpenAI-shaped errors (hostile input -> 4xx)
- openapi.py    the OpenAPI document at /openapi.json (request bodies, replies, errors)
- engine_process.py  the Engine in a child process of its own (`saessak serve`'s default)
- batching.py   the thread that owns the Engine and steps it for every open request (--engine-in-process)
- metrics.py    Prometheus text metrics
- privacy_log.py request logging without conversation content (unless asked)
- app.py        the FastAPI application
- terminal_chat.py  `saessak chat`
- cli.py        `saessak serve` and `saessak chat`
- static/       the web chat page (no build step)
"""
