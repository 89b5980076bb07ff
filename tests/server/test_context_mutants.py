"""Tests written for mutmut's survivors in the other modules of codestral_lsp/context/ (docs/DEVELOPMENT.md, "Mutation testing")."""

from __future__ import annotations
