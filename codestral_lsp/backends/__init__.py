"""Where completions come from: the local engine or a remote server (Mistral's API, OpenAI-compatible)."""
