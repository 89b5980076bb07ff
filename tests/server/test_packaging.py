"""What a fresh install brings: nothing the first command warns about."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


def test_numpy_is_a_base_dependency():
    """torch prints a warning on import when numpy is missing, on a new user's first command."""
    dependencies = tomllib.loads(PYPROJECT.read_text())["project"]["dependencies"]
    assert "numpy" in {re.split(r"[<>=!~ \[;]", d, maxsplit=1)[0].lower() for d in dependencies}
