"""Tests written for mutmut's survivors in the request checks of codestral_lsp/http/api.py (docs/DEVELOPMENT.md, "Mutation testing")."""

from __future__ import annotations

import pytest

pytest.importorskip("starlette")
