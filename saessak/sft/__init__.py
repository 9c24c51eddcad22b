"""The SFT stage: the pretrained model -> a chat model (RUN/sft/).

- config.py  SFTConfig: the settings a recipe fills and the command line overrides
- data.py    the conversations: task worked solutions, identity chats, the user's chat data
- pack.py    whole conversations packed into rows with a block-diagonal mask
- stage.py   the loop (under the shared stage life-cycle, saessak/training/lifecycle.py)
- cli.py     `saessak sft`
"""
