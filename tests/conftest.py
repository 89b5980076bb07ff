"""Shared test setup: the repository root is importable without an install, and the fused C++ decode
step is off (the PyTorch step, on every machine alike) except in the tests that build and test it."""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

os.environ.setdefault("CODESTRAL_LSP_FUSED", "off")  # servers started by the tests inherit it
