"""Distillation: reasoning traces from a bigger teacher model, graded and PII-masked, for `saessak sft --data`.

DeepSeek-R1's second recipe: the small models were fine-tuned on the big model's verified answers.
The teacher is any OpenAI-compatible Chat Completions endpoint (vLLM, llama.cpp, Ollama, a hosted
API, `saessak serve`). Output: RUN/distill/ (docs/DISTILL.md).

- config.py   DistillConfig: sampling, prompts, retries (each field a command-line option)
- teacher.py  the HTTP client: retries with back-off, 429 + Retry-After, clear errors, token usage
- prompts.py  what is asked: task-suite train items (graded) and the user's prompts (ungraded)
- stage.py    the loop: mask, ask, grade, write each prompt atomically, resume, dataset, ledger
- card.py     the data card of the distilled dataset (JSON + Markdown)
- cli.py      `saessak distill`
"""
