"""`saessak chat`: a streaming terminal chat on the generation engine (no server needed).

Commands: /reset (forget the conversation), /system TEXT (set the system prompt; empty clears it),
/temp X (sampling temperature), /help, /exit. Ctrl-C while a reply streams stops that reply;
Ctrl-C or Ctrl-D at the prompt ends the chat. Line editing and history come from `readline`
when the platform has it.
"""

from __future__ import annotations

import sys

HELP = """명령어:
  /reset         대화를 처음부터 다시 시작합니다
  /system 내용   시스템 프롬프트를 바꿉니다 (내용이 없으면 지웁니다)
  /temp 값       온도(temperature)를 바꿉니다 (0 = 항상 같은 답)
  /help          이 도움말
  /exit          끝내기 (Ctrl-D 도 됩니다)
Ctrl-C: 답변 중이면 답변을 멈추고, 입력 중이면 끝냅니다."""


def _fit_history(tok, system: str, history: list[dict], user: str, limit: int) -> list[int] | None:
    """Prompt ids for the conversation, dropping the oldest turns until it fits the context."""
    from saessak.tokenizer.chat_format import prompt_ids

    turns = list(history)
    while True:
        msgs = ([{"role": "system", "content": system}] if system else []) + turns + [{"role": "user", "content": user}]
        ids = prompt_ids(tok, msgs)
        if len(ids) < limit:
            return ids
        if not turns:
            return None
        turns = turns[2:]  # drop the oldest user/assistant pair


def chat_repl(args, out=None) -> int:
    from saessak.model.engine import Engine, SamplingParams
    from saessak.serve.loading import load_served_model

    out = out or sys.stdout
    served = load_served_model(args.model)
    def new_engine():
        return Engine(served.model, served.tokenizer, max_batch_size=1)

    engine = new_engine()
    try:
        import readline  # noqa: F401  (line editing and history for input())
    except ImportError:
        pass
    system, temperature, history = args.system, args.temperature, []
    print(f"새싹 채팅 — 모델 {served.name}. /help 로 명령어를 볼 수 있습니다. 끝내려면 Ctrl-D.", file=out)
    while True:
        try:
            line = input("나> ")
        except (EOFError, KeyboardInterrupt):
            print(file=out)
            return 0
        text = line.strip()
        if not text:
            continue
        if text.startswith("/"):
            cmd, _, rest = text.partition(" ")
            if cmd == "/exit":
                return 0
            if cmd == "/help":
                print(HELP, file=out)
            elif cmd == "/reset":
                history = []
                print("(대화를 지웠습니다)", file=out)
            elif cmd == "/system":
                system = rest.strip()
                print(f"(시스템 프롬프트: {system or '없음'})", file=out)
            elif cmd == "/temp":
                try:
                    value = float(rest)
                    if not 0 <= value <= 2:
                        raise ValueError
                except ValueError:
                    print("(온도는 0 과 2 사이의 숫자여야 합니다: /temp 0.7)", file=out)
                    continue
                temperature = value
                print(f"(온도: {temperature:g})", file=out)
            else:
                print(f"(알 수 없는 명령어 {cmd}: /help 를 보세요)", file=out)
            continue
        ids = _fit_history(served.tokenizer, system, history, line, engine.max_seq_len)
        if ids is None:
            print(f"(메시지가 너무 깁니다: 모델의 문맥 한도는 {engine.max_seq_len} 토큰입니다)", file=out)
            continue
        params = SamplingParams(max_tokens=args.max_tokens, temperature=temperature, top_p=args.top_p,
                                seed=args.seed)
        rid = engine.add_request(ids, params)
        print("새싹> ", end="", file=out, flush=True)
        reply = ""
        try:
            while engine.has_unfinished():
                for o in engine.step():
                    reply += o.delta_text
                    print(o.delta_text, end="", file=out, flush=True)
            print(file=out)
        except KeyboardInterrupt:
            try:
                engine.abort(rid)
                while engine.has_unfinished():
                    engine.step()
            except Exception:  # Ctrl-C landed inside a step and left it half done: start clean
                engine = new_engine()
            print(" (멈춤)", file=out)
        history += [{"role": "user", "content": line}, {"role": "assistant", "content": reply}]
