"""A small PyTorch runtime for Mistral-architecture checkpoints (Codestral, Mistral) with FIM."""

from .engine import Completion, Engine
from .loading import CheckpointError
from .tokenizer import Tokenizer, TokenizerError

__all__ = ["Engine", "Completion", "CheckpointError", "Tokenizer", "TokenizerError"]
