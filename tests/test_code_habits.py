"""The habits that keep the code as docs/architecture.md describes it, checked with every run.

ruff (style, imports, likely bugs), mypy (types) and import-linter (the layers: each module
imports only those below it, so no import cycle can come back; the sampler and the model/data/
measuring code import nothing of the study machinery or presentation), all configured in
pyproject.toml; the OptunaHub packages in hub/ are checked and formatted with the registry's
ruff settings (hub/ruff.toml).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def _tool(name: str) -> str:
    found = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed; pip install -e '.[test]' installs it", pytrace=False)
    return found


@pytest.mark.parametrize("command", [
    ["ruff", "check", "optuna_energy", "tests", "bench", "examples", "hub"],
    # The OptunaHub packages are also formatted as the registry checks them (hub/ruff.toml).
    ["ruff", "format", "--check", "hub"],
    ["mypy"],
    ["lint-imports"],
], ids=["ruff", "ruff-format-hub", "mypy", "import-linter"])
def test_the_code_passes(command: list[str]) -> None:
    command = [_tool(command[0]), *command[1:]]
    command = [part for part in command if part != "examples" or (REPO / "examples").is_dir()]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
