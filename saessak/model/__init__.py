"""The model, written for one device, and what runs it.

- llama.py       ModelConfig and the decoder with the maths and names of Hugging Face `LlamaForCausalLM`,
                 `MistralForCausalLM`, `Qwen2ForCausalLM`, `Qwen3ForCausalLM` (switches, not copies)
- hf_config.py   a Hugging Face config.json <-> ModelConfig, refusing keys that would change the maths
- hf_import.py   `saessak import hf PATH --run RUN`: an open checkpoint as a run's base model
- cli.py         the `import` command
- lora.py        LoRA through peft: attach, adapters off (GRPO's reference), merge, save the adapter
- checkpoint.py  checkpoint folders (config.json + model.safetensors or shards), `unwrap`
- loading.py     a finished model and its tokenizer from a run folder or a checkpoint folder
- engine.py      the one generation engine (batched KV cache, sampling, stops)
- sampler.py     the engine as RL rollouts and evaluation use it

Distribution (DDP, FSDP) is applied from outside, in saessak/training/.
"""

from saessak.model.llama import Llama, ModelConfig, model_config

__all__ = ["Llama", "ModelConfig", "model_config"]
