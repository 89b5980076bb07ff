"""Reading and writing checkpoints: folder formats, tokenizers, GGUF."""
