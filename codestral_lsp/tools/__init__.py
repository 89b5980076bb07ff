"""Measuring tools: `bench` (typing replay, engine), `peers` (other engines), `eval` (FIM benchmarks), a test LSP client."""
