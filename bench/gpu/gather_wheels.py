"""Download, here, the wheels the GPU machine lacks: it has no package registry.

    python bench/gpu/gather_wheels.py            # into .whl/ at the repository root (git-ignored)

The GPU machine's image (Python 3.12, x86-64) already holds torch, torchvision, nvidia-ml-py,
numpy, scikit-learn, matplotlib, onnx, onnxscript, onnxruntime, tqdm, PyYAML, pytest and more
(``GPU_IMAGE_HAS``). What this package needs beyond that (Optuna, SQLAlchemy, Alembic, colorlog,
optuna-dashboard and their own needs) is fetched as Python 3.12 manylinux or pure-Python
wheels, each at the version installed here, so the GPU runs the code the tests ran. Needs are
followed through every wheel's ``Requires-Dist`` until nothing is missing. ``bench/gpu/run.sh``
installs them there with ``pip install --no-index --no-deps --target``.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import re
import subprocess
import sys
import zipfile
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[2]

GPU_IMAGE_HAS = frozenset(canonicalize_name(name) for name in ["torch", "torchvision", "nvidia-ml-py", "numpy", "scikit-learn", "scipy", "matplotlib", "onnx", "onnxscript", "onnx-ir", "onnxruntime", "tqdm", "pyyaml", "packaging", "typing-extensions", "markupsafe", "jinja2", "pillow", "pytest", "hypothesis", "protobuf", "ml-dtypes", "flatbuffers", "sympy", "filelock", "fsspec", "networkx", "joblib", "threadpoolctl", "contourpy", "cycler", "fonttools", "kiwisolver", "pyparsing", "python-dateutil", "six"])
"""What the 'cuda' image of the lent GPU machines holds (.library/device/KINDS.md, 2026-11-17)."""

NOT_NEEDED_THERE = frozenset({canonicalize_name("psycopg")})
"""PostgreSQL's driver: the GPU run stores its studies in SQLite."""

PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64",
             "manylinux2014_x86_64", "manylinux1_x86_64")

TARGET_ENVIRONMENT = {
    "python_version": "3.12", "python_full_version": "3.12.3", "implementation_name": "cpython",
    "platform_python_implementation": "CPython", "sys_platform": "linux", "platform_system": "Linux",
    "platform_machine": "x86_64", "os_name": "posix", "extra": "",
}
"""Where the markers of ``Requires-Dist`` are evaluated: the GPU machine's Python, not this one's."""


def pinned(name: str) -> str:
    """``name==version`` as installed here, or the bare name where it is not installed here."""
    try:
        return f"{name}=={importlib.metadata.version(name)}"
    except importlib.metadata.PackageNotFoundError:
        return name


def needs(requirements: list[str]) -> set[str]:
    """The canonical names among ``requirements`` that the GPU machine needs and lacks."""
    wanted = set()
    for line in requirements:
        requirement = Requirement(line)
        if requirement.marker is not None and not requirement.marker.evaluate(TARGET_ENVIRONMENT):
            continue  # an extra, or another Python or platform
        name = canonicalize_name(requirement.name)
        if name not in GPU_IMAGE_HAS and name not in NOT_NEEDED_THERE:
            wanted.add(name)
    return wanted


def wheel_name(path: Path) -> str:
    """The canonical project name of a wheel file (the part before the first dash)."""
    return canonicalize_name(path.name.split("-", 1)[0])


def wheel_requirements(path: Path) -> list[str]:
    with zipfile.ZipFile(path) as wheel:
        metadata = next(name for name in wheel.namelist() if re.fullmatch(r"[^/]+\.dist-info/METADATA", name))
        text = wheel.read(metadata).decode()
    return [line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("Requires-Dist:")]


def download(names: list[str], folder: Path) -> None:
    """The recipe of .library/device/README.md: binary wheels for CPython 3.12 on x86-64 Linux."""
    platforms = [argument for platform in PLATFORMS for argument in ("--platform", platform)]
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
                    "--python-version", "3.12", "--implementation", "cp", *platforms, "-d", str(folder),
                    *(pinned(name) for name in names)], check=True)


def gather(folder: Path) -> list[Path]:
    """Fill ``folder`` with exactly the wheels the GPU machine lacks, one version of each."""
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("*.whl"):  # two versions of one package stop the whole install there
        stale.unlink()
    wanted = needs(importlib.metadata.requires("optuna-energy") or [])
    fetched: set[str] = set()
    while wanted - fetched:
        batch = sorted(wanted - fetched)
        download(batch, folder)
        fetched |= set(batch)
        for wheel in folder.glob("*.whl"):
            wanted |= needs(wheel_requirements(wheel))
    wheels = sorted(folder.glob("*.whl"))
    missing = fetched - {wheel_name(wheel) for wheel in wheels}
    if missing:
        raise SystemExit(f"pip fetched no wheel for {', '.join(sorted(missing))}")
    return wheels


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dest", type=Path, default=REPO / ".whl", help="default: .whl/ in the repository")
    args = parser.parse_args(argv)
    wheels = gather(args.dest)
    size = sum(wheel.stat().st_size for wheel in wheels)
    print(f"{len(wheels)} wheels, {size / 2**20:.1f} MiB, in {args.dest}:")
    for wheel in wheels:
        print(f"  {wheel.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
