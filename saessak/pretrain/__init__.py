"""The pretraining stage: tokenizer + text splits -> the pretrained model (RUN/pretrain/).

- config.py  PretrainConfig: the settings a recipe fills and the command line overrides
- shards.py  the text splits tokenized once into memmapped token shards, and the seeded sampler
- val.py     val bits per byte and sample continuations
- stage.py   the loop (under the shared stage life-cycle, saessak/training/lifecycle.py)
- cli.py     `saessak pretrain`
"""
