"""A small PyTorch runtime for Mistral-architecture checkpoints (Codestral, Mistral) with FIM."""

from .checkpoints.loading import CheckpointError
from .checkpoints.tokenizer import Tokenizer, TokenizerError
from .engine import Completion, Engine

__all__ = ["Engine", "Completion", "CheckpointError", "Tokenizer", "TokenizerError"]
