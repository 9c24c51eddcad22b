"""Export a run's model to the formats the ecosystem serves.

- `hf.export_hf`: a Hugging Face folder that transformers and vLLM load with no custom code.
- `gguf_export.export_gguf`: one GGUF file (llama architecture) for llama.cpp and Ollama.
- `model_card.render_model_card`: the README.md that travels with the weights, from the run folder.
- `cli`: `saessak export hf|gguf`.

See docs/EXPORT.md.
"""
