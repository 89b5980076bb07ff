"""The VS Code extension's own suite (editors/vscode: unit tests against a fake `vscode` module,
and an integration test against the real server over stdio), run through `npm test`.

Needs Node.js and `npm ci` in editors/vscode; skipped otherwise. The integration test uses this
interpreter (CODESTRAL_PYTHON) to run the server, so it tests the same install as the Python suite.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

EXTENSION = Path(__file__).resolve().parents[2] / "editors" / "vscode"


def test_vscode_extension_suite():
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        pytest.skip("Node.js is not installed (the VS Code extension's tests need node and npm)")
    if not (EXTENSION / "node_modules").is_dir():
        pytest.skip("editors/vscode/node_modules is missing: run `npm ci` in editors/vscode")
    env = dict(os.environ, CODESTRAL_PYTHON=sys.executable)
    result = subprocess.run([npm, "test"], cwd=EXTENSION, env=env, capture_output=True, text=True, timeout=1800)
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"npm test failed ({result.returncode}):\n{output[-20000:]}"
