"""The worked examples in the docstrings of the context modules, the code actions and the LSP test client hold."""

import doctest
import importlib

import pytest

MODULES = [f"codestral_lsp.context.{name}" for name in ("actions", "imports", "languages", "lines", "neighbours", "postprocess",
                                                        "windows")] + ["codestral_lsp.lsp.features.code_actions",
                                                                    "codestral_lsp.tools.lsp_client", "codestral_lsp.tools.stub_counts", "codestral_lsp.lsp.fim_edits"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)  # by full name: the context package re-exports a function "postprocess"
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 0
