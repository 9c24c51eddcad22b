"""The model, written for one device, and what runs it.

- llama.py       ModelConfig and the decoder with Hugging Face `LlamaForCausalLM`'s maths and names
- checkpoint.py  checkpoint folders (config.json + model.safetensors), `unwrap`
- loading.py     a finished model and its tokenizer from a run folder or a checkpoint folder
- engine.py      the one generation engine (batched KV cache, sampling, stops)
- sampler.py     the engine as RL rollouts and evaluation use it

Distribution (DDP, FSDP) is applied from outside, in saessak/training/.
"""

from saessak.model.llama import Llama, ModelConfig, model_config

__all__ = ["Llama", "ModelConfig", "model_config"]
