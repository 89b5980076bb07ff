"""The worked examples in the context modules' docstrings hold."""

import doctest
import importlib

import pytest

MODULES = ["imports", "languages", "lines", "neighbours", "postprocess", "windows"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(f"codestral_lsp.context.{name}")  # the package re-exports a function "postprocess"
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 0
