"""One LSP feature per module; each has `register(server)`."""
