"""The language server: the pygls server, its features (one module each), documents and the inference worker."""
