"""`codestral-lsp serve-http`: the OpenAI/Mistral-compatible HTTP API over the same completion pipeline."""
