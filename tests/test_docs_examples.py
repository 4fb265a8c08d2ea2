"""Every example of the README and docs/ runs as a reader runs it: each page's ``python`` blocks in
order in one namespace (as pasted into one session), in a folder whose ``studies/digits.toml`` is a
digits study of seconds; each ``optuna-energy`` command of a ``bash`` block parses, and the
config file it names exists. A block that cannot run alone says why in the line above its fence
(``<!-- not run: ... -->``, which a rendered page does not show)."""

from __future__ import annotations

import dataclasses
import os
import re
import shlex
from collections.abc import Iterator
from pathlib import Path

import pytest

from optuna_energy.cli_parser import build_parser
from optuna_energy.study import run_study
from tests.helpers import tiny_config, write_toml

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
FENCE = re.compile(r"^(?:<!-- not run: (?P<reason>.*?) -->\n)?```(?P<language>\w*)\n(?P<code>.*?)^```$",
                   re.S | re.M)
MAX_NOT_RUN = 6
"""Blocks that stand for the reader's own code (their loader, their meter) or reach the network
(OptunaHub's registry, which ``tests/test_hub.py`` replaces with ``hub/``) and so cannot run here."""


@dataclasses.dataclass(frozen=True)
class Block:
    page: Path
    line: int
    language: str
    code: str
    not_run: str | None

    def __str__(self) -> str:
        return f"{self.page.relative_to(REPO)}:{self.line}"


def blocks(page: Path, language: str) -> list[Block]:
    text = page.read_text()
    return [Block(page, text.count("\n", 0, match.start("code")), language, match["code"], match["reason"])
            for match in FENCE.finditer(text) if match["language"] == language]


PYTHON_PAGES = [page for page in PAGES if any(block.not_run is None for block in blocks(page, "python"))]


@pytest.fixture(scope="module")
def reader_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder as a reader's after the README's first command: ``studies/digits.toml`` (the
    tiny study: trials of a second, at most 5 epochs in all, whatever ``n_trials`` a page asks
    for) and its study ``digits`` in ``optuna_energy.db``, run."""
    folder = tmp_path_factory.mktemp("reader")
    config = tiny_config(folder, name="digits", storage="sqlite:///optuna_energy.db", n_trials=3,
                         max_train_epochs=5)
    (folder / "studies").mkdir()
    write_toml(folder / "studies" / "digits.toml", config)
    cwd = Path.cwd()
    os.chdir(folder)
    try:
        run_study("studies/digits.toml", show_progress_bar=False)
    finally:
        os.chdir(cwd)
    return folder


@pytest.mark.parametrize("page", PYTHON_PAGES, ids=lambda page: page.name)
def test_the_python_blocks_of_a_page_run_in_order(page: Path, reader_folder: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(reader_folder)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    namespace: dict[str, object] = {"__name__": "__main__"}
    for block in blocks(page, "python"):
        if block.not_run is None:
            # Compiled with the page as its file name and the code at its lines, so a traceback
            # points at the page.
            exec(compile("\n" * block.line + block.code, str(block.page.relative_to(REPO)), "exec"), namespace)


def test_the_blocks_not_run_are_few_and_say_why() -> None:
    not_run = [block for page in PAGES for block in blocks(page, "python") if block.not_run is not None]
    assert len(not_run) <= MAX_NOT_RUN, [str(block) for block in not_run]
    assert all(len(block.not_run.split()) >= 3 for block in not_run), [block.not_run for block in not_run]


def commands(block: Block) -> Iterator[list[str]]:
    """The ``optuna-energy`` command lines of a shell block, as argument lists: continuation lines
    joined, ``&&`` / ``;`` / ``&`` chains split, ``VAR=value`` prefixes dropped and ``$VAR`` (a
    value the page asks the reader to set, such as a trial number) given as ``1``."""
    for line in block.code.replace("\\\n", " ").splitlines():
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        words: list[str] = []
        for word in [*lexer, ";"]:
            if word not in OPERATORS:
                words.append(word)
                continue
            while words and re.fullmatch(r"\w+=\S*", words[0]):
                words.pop(0)
            if words and words[0] == "optuna-energy":
                yield [re.sub(r"^\$\w+$", "1", word) for word in words[1:]]
            words = []


OPERATORS = {"&&", "||", ";", "&", "|", "(", ")"}


SHELL_COMMANDS = [(block, arguments) for page in PAGES for block in blocks(page, "bash")
                  for arguments in commands(block)]


@pytest.mark.parametrize(("block", "arguments"), SHELL_COMMANDS,
                         ids=[f"{block}:{' '.join(arguments)[:40]}" for block, arguments in SHELL_COMMANDS])
def test_every_command_of_the_docs_parses_and_names_a_config_that_exists(block: Block,
                                                                         arguments: list[str]) -> None:
    try:
        parsed = build_parser().parse_args(arguments)
    except SystemExit as stop:  # --help exits 0; a wrong option exits 2 after its usage line
        assert stop.code == 0, f"{block}: optuna-energy {' '.join(arguments)}"
        return
    config = getattr(parsed, "config", None)
    assert config is None or (REPO / config).is_file(), f"{block}: {config} is not in the repository"


def test_the_commands_are_found() -> None:
    readme = [arguments for block, arguments in SHELL_COMMANDS if block.page.name == "README.md"]
    assert ["run", "studies/digits.toml"] in readme and ["--help"] in readme
    chained = Block(REPO, 0, "bash", "A=1 optuna-energy export x.toml --trial \"$T\" \\\n  -o m.pt2 && ls # c\n", None)
    assert list(commands(chained)) == [["export", "x.toml", "--trial", "1", "-o", "m.pt2"]]
