"""Special tokens reserved in every saessak tokenizer, and the chat format built on them.

They are added at tokenizer training time with fixed ids, so later stages (SFT, RL, serving,
export) never need to re-train the tokenizer.

Chat format (also exported as the Jinja `chat_template`, see docs/ARCHITECTURE.md):

    <s><|system|>{system}<|end|><|user|>{user}<|end|><|assistant|>{reply}<|end|>...

A generation prompt ends with `<|assistant|>`; the model ends its turn with `<|end|>`
(the end-of-turn token, which is the eos for generation). Only the assistant's reply and its
`<|end|>` are trained on in SFT.
"""

UNK = "<unk>"
BOS = "<s>"
EOS = "</s>"
PAD = "<pad>"
SYSTEM = "<|system|>"
USER = "<|user|>"
ASSISTANT = "<|assistant|>"
END_OF_TURN = "<|end|>"

# Order defines ids 0..7.
SPECIAL_TOKENS = [UNK, BOS, EOS, PAD, SYSTEM, USER, ASSISTANT, END_OF_TURN]
ROLE_TOKENS = {"system": SYSTEM, "user": USER, "assistant": ASSISTANT}
