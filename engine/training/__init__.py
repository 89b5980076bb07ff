"""The FIM training recipe for the embedded model (`codestral-lsp train`)."""
