"""Every client example in the README runs as written, and so does every program in
examples/, against a live cluster (the shared one, named by COORD_ENDPOINTS).

From the README's client sections, each ```python block runs as a script, and each line
of a ```sh block that starts with ``coordctl`` or ``python examples/`` runs in a shell,
with .venv/bin first on PATH (as after ``source .venv/bin/activate``). Lines that set up
(``make cluster``, ``source``) or need other tools (npm, node, grpcurl; covered by
test_other_languages.py) are skipped. Each must exit 0.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.client.conftest import ROOT, VENV_BIN

pytestmark = pytest.mark.timeout(120)

README = ROOT / "README.md"
CLIENT_SECTIONS = ("Using coord: coordctl and Python", "The Python client", "coordctl", "From other languages")
RUNNABLE = ("coordctl ", "python examples/")


def sections(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in re.split(r"^## ", text, flags=re.MULTILINE)[1:]:
        heading, _, body = part.partition("\n")
        out[heading.strip()] = body
    return out


def blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", text, flags=re.MULTILINE | re.DOTALL)


def client_docs() -> str:
    found = sections(README.read_text())
    missing = [s for s in CLIENT_SECTIONS if s not in found]
    assert not missing, f"README lacks the client sections {missing}"
    return "\n".join(found[s] for s in CLIENT_SECTIONS)


def python_blocks() -> list[str]:
    return blocks(client_docs(), "python")


def shell_lines() -> list[str]:
    return [line.strip() for block in blocks(client_docs(), "sh") for line in block.splitlines()
            if line.strip().startswith(RUNNABLE)]


def test_the_readme_has_the_promised_quick_start() -> None:
    quick = sections(README.read_text())[CLIENT_SECTIONS[0]]
    first_sh = blocks(quick, "sh")[0]
    assert "make cluster" in first_sh
    assert sum(line.startswith("coordctl ") for line in first_sh.splitlines()) == 5
    first_python = blocks(quick, "python")[0]
    assert len(first_python.strip().splitlines()) <= 11  # ten lines and the import's blank
    assert len(python_blocks()) >= 3 and len([l for l in shell_lines() if l.startswith("python ")]) == 3


@pytest.mark.parametrize("index", range(len(python_blocks())))
def test_readme_python_block_runs(index: int, cli_env: dict[str, str], tmp_path: Path) -> None:
    script = tmp_path / f"readme_{index}.py"
    script.write_text(python_blocks()[index])
    proc = subprocess.run([str(VENV_BIN / "python"), str(script)], cwd=ROOT, env=cli_env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, f"README python block {index} failed:\n{script.read_text()}\n{proc.stderr}"


@pytest.mark.parametrize("line", shell_lines())
def test_readme_shell_line_runs(line: str, cli_env: dict[str, str]) -> None:
    proc = subprocess.run(line, shell=True, cwd=ROOT, env=cli_env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, f"`{line}` exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
