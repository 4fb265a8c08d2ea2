"""Every repository path the README and docs/ name exists: backticked paths (from the repository
root) and relative links (from the page's folder)."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
ROOTS = ("bench/", "docs/", "studies/", "examples/", "hub/", "tests/", "optuna_energy/", "scripts/", ".ci/")
ROOT_FILES = ("README.md", "pyproject.toml")
BACKTICKED = re.compile(r"`([^`\s]+)`")
LINK = re.compile(r"\]\(([^)\s]+)\)")


def _repository_path(text: str) -> str | None:
    """The path a backticked word names, without a ``::test``, ``:line`` or trailing punctuation;
    None when it names no repository file (a module, a URL, a command, a file a run writes in the
    current folder such as ``./optuna_energy.db``). A path into a hidden folder or above the
    repository (``../notes.md``) is named, so the check refuses it."""
    path = re.sub(r"(::\S*|:\d+.*)$", "", text).rstrip(".,;:)")
    outside = re.match(r"\.\.?[\w-]*/", path) is not None and not path.startswith("./")
    return path if path.startswith(ROOTS) or path in ROOT_FILES or outside else None


def _named_paths(page: Path) -> list[tuple[str, Path]]:
    text = page.read_text()
    named = [(word, REPO / path) for word in BACKTICKED.findall(text)
             if (path := _repository_path(word)) is not None]
    named += [(target, page.parent / target.split("#")[0]) for target in LINK.findall(text)
              if not re.match(r"[a-z]+:|#", target)]
    return named


def _exists(path: Path) -> bool:
    """Whether ``path`` is in the repository; a pattern (``*``, or ``<name>`` as in
    ``bench/results/scale/<storage>-<trials>.json``) must match a file there."""
    if REPO.resolve() not in path.resolve().parents:
        return False
    pattern = re.sub(r"<[^>]+>", "*", path.name)
    return any(path.parent.glob(pattern)) if "*" in pattern else path.exists()


def test_every_named_path_exists() -> None:
    missing = [f"{page.relative_to(REPO)}: {word}" for page in PAGES for word, path in _named_paths(page)
               if not _exists(path)]
    assert not missing, "\n".join(missing)


def test_the_check_sees_the_paths_the_pages_name() -> None:
    readme = {word for word, _ in _named_paths(REPO / "README.md")}
    assert {"studies/digits.toml", "docs/analysis.md"} <= readme
    assert _repository_path("tests/test_slurm.py::test_x") == "tests/test_slurm.py"
    assert _repository_path("optuna_energy.host.meters") is None
    assert _repository_path("../notes/DESIGN.md") == "../notes/DESIGN.md"
    assert not _exists(REPO / "../notes/DESIGN.md")
    assert _exists(REPO / "bench/results/scale/<storage>-<trials>.json")
    assert not _exists(REPO / "bench" / "no_such_*.json")
