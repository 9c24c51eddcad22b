"""Export a run's model to the formats the ecosystem serves.

- `hf.export_hf`: a Hugging Face folder that transformers and vLLM load with no custom code.
- `gguf_export.export_gguf`: one GGUF file (llama architecture) for llama.cpp and Ollama.
- `imported`: an imported model's run exported as its own family's folder, or its LoRA adapter alone.
- `gguf_imported`: GGUF of an imported model (llama for Llama/Mistral, qwen2, qwen3).
- `gguf_parts`: what both GGUF writers share (llama.cpp's q/k row order, the SentencePiece vocabulary).
- `model_card.render_model_card`: the README.md that travels with the weights, from the run folder.
- `cli`: `saessak export hf|gguf`.

See docs/EXPORT.md.
"""
