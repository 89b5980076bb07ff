"""Tests written for mutmut's survivors in codestral_lsp/context/exclusion.py (docs/DEVELOPMENT.md, "Mutation testing")."""

from __future__ import annotations
