"""codestral-lsp: inline code completions from a local Codestral-style model, over LSP."""

__version__ = "0.1.0"
