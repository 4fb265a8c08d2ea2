"""Bad inputs and hostile operations against the command, counted as issue 11 counted them.

Each probe runs ``optuna-energy`` (or a line of Python) in a fresh process in a scratch folder
and is classified: ``clear`` (exit 2, or 130 for Ctrl-C, and one line naming the problem; from the Python API,
an exception of a documented type whose one-line message names the problem),
``traceback`` (a Python traceback was printed), ``silent`` (exit 0 for something that must
fail), ``secret`` (a password was printed) or ``loss`` (the study's database was damaged).

    python bench/failure_probes.py            # prints one row per probe and the counts
"""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

SECRET = "S3C/RE@T:P%W"
TINY = ('[study]\nname = "tiny"\nn_trials = 1\ndevice = "cpu"\n[training]\nepochs = 1\n'
        '[space]\nfeature_slots = 2\nclassifier_slots = 1\n'
        '[measure]\nmin_window_seconds = 0.01\nidle_seconds = 0.0\nmeter = "estimate"\n')


def command(*argv: str) -> list[str]:
    return [sys.executable, "-m", "optuna_energy", *argv]


def python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def probes(folder: Path, db: str) -> list[tuple[str, list[str]]]:
    """(name, argv) of every probe; files they need are written into ``folder``."""
    (folder / "huge_seed.toml").write_text("[study]\nseed = 99999999999999999999\n")
    (folder / "latin1.toml").write_bytes(b'[study]\nname = "caf\xe9"\n')
    (folder / "steep.toml").write_text("[training]\nlearning_rate = [1e-3, 1e3]\n")
    (folder / "digits_root.toml").write_text('[dataset]\nname = "digits"\nroot = "data"\n')
    (folder / "digits_download.toml").write_text('[dataset]\nname = "digits"\ndownload = true\n')
    (folder / "one_class" / "cats").mkdir(parents=True)
    (folder / "one_class.toml").write_text(
        f'[dataset]\nname = "imagefolder"\nroot = "{folder / "one_class"}"\nimage_size = 8\n')
    (folder / "existing.md").write_text("keep")
    (folder / "a_folder").mkdir()
    (folder / "notes.log").write_text("not a journal\n")
    (folder / "text.db").write_text("not a database\n")
    for name, table in (("app.db", "studies (id INTEGER, title TEXT)"), ("shop.db", "invoices (id INTEGER)")):
        with sqlite3.connect(folder / name) as connection:
            connection.execute(f"CREATE TABLE {table}")
    stored = ["--storage", db]
    named = [*stored, "--study-name", "tiny"]
    export = ["export", *named, "--trial", "0", "--format", "torchscript"]
    return [
        ("seed -1", command("run", "--seed", "-1", *stored)),
        ("seed 99999999999999999999", command("run", str(folder / "huge_seed.toml"), *stored)),
        ("config not UTF-8", command("run", str(folder / "latin1.toml"))),
        ("learning_rate [1e-3, 1e3]", command("run", str(folder / "steep.toml"))),
        ("root for digits", command("run", str(folder / "digits_root.toml"))),
        ("download for digits", command("run", str(folder / "digits_download.toml"))),
        ("imagefolder, one class", command("run", str(folder / "one_class.toml"), "--storage",
                                           f"sqlite:///{folder / 'one.db'}")),
        ("--objectives ''", command("run", "--objectives", "")),
        ("--storage ''", command("run", "--storage", "")),
        ("--device cuda:1", command("run", "--device", "cuda:1", *stored)),
        ("--device tpu", command("run", "--device", "tpu", *stored)),
        ("export --device tpu", command(*export, "-o", str(folder / "m.pt"), "--device", "tpu")),
        ("export -o onto the database", command(*export, "-o", db.split(":///", 1)[1])),
        ("export -o an existing folder", command(*export, "-o", str(folder / "a_folder"))),
        ("export -o /proc/x.pt", command(*export, "-o", "/proc/x.pt")),
        ("report --out an existing file", command("report", *named, "--out", str(folder / "existing.md"))),
        ("report --out /proc/x", command("report", *named, "--out", "/proc/x")),
        ("report on a mistyped sqlite path", command("report", "--storage", "sqlite:///typo_dir/x.db", "--out", "r")),
        ("dashboard on a mistyped sqlite path", command("dashboard", "--storage", "sqlite:///nope.db")),
        ("export on a mistyped sqlite path", command("export", "--storage", "sqlite:///nope.db", "--trial", "0",
                                                     "--format", "torchscript", "-o", "m.pt")),
        ("journal:// onto a text file", command("run", "--storage", f"journal:///{folder / 'notes.log'}")),
        ("sqlite:// onto a text file", command("run", "--storage", f"sqlite:///{folder / 'text.db'}")),
        ("foreign SQLite with 'studies'", command("run", "--storage", f"sqlite:///{folder / 'app.db'}")),
        ("foreign SQLite, other tables", command("run", "--storage", f"sqlite:///{folder / 'shop.db'}")),
        ("read-only SQLite database", command("run", "--storage",
                                              f"sqlite:///file:{db.split(':///', 1)[1]}?mode=ro&uri=true")),
        ("dashboard --port 70000", command("dashboard", *stored, "--port", "70000")),
        ("dashboard on a busy port", command("dashboard", *stored, "--port", "{busy}")),
        ("password with / @ : % in the URL", command("run", "--storage",
                                                     f"postgresql://u:{SECRET}@127.0.0.1:1/db")),
        ("password as a query parameter", command("report", "--out", "r", "--storage",
                                                  f"postgresql://127.0.0.1:1/db?user=u&password={SECRET}")),
        ("run_study(123)", python("import optuna_energy as o; o.run_study(123)")),
        ("run_study(objectives='accuracy,energy')",
         python("import optuna_energy as o; o.run_study(objectives='accuracy,energy')")),
        ("build_model('conv', ...)", python("import optuna_energy as o; o.build_model('conv', (1, 8, 8), 10)")),
        ("spec with an unknown layer kind",
         python("import optuna_energy as o; o.build_model([{'slot': 0, 'kind': 'lstm'}], (1, 8, 8), 10)")),
        ("Ctrl-C in the first second", command("run", *stored, "--n-trials", "50")),
    ]


def classify(name: str, argv: list[str], folder: Path, db: str) -> tuple[str, str]:
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    argv = [arg.replace("{busy}", str(busy.getsockname()[1])) for arg in argv]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("OPTUNA_ENERGY_STORAGE", None)
    process = subprocess.Popen(argv, cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, start_new_session=True)
    if name.startswith("Ctrl-C"):
        time.sleep(0.7)
        os.killpg(process.pid, signal.SIGINT)
    try:
        out, err = process.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        out, err = process.communicate()
        return "silent", "hung for 120 s"
    finally:
        busy.close()
    text = out + err
    last = (err.strip().splitlines() or [""])[-1]
    if any(piece in text for piece in (SECRET, "S3C", "RE@T", "P%W")):
        return "secret", last
    try:
        with sqlite3.connect(f"file:{db.split(':///', 1)[1]}?mode=ro", uri=True) as connection:
            connection.execute("SELECT count(*) FROM trials").fetchone()
    except sqlite3.DatabaseError:
        return "loss", last
    if argv[1] == "-c":  # the Python API: a clear exception of a documented type is the answer
        clear = last.startswith(("optuna_energy.config.ConfigError: ", "ValueError: ", "TypeError: "))
        return ("clear" if clear and len(last) > 40 else "traceback"), last
    if "Traceback" in text:
        return "traceback", last
    if process.returncode == 0:
        return "silent", (out.strip().splitlines() or [""])[-1]
    if process.returncode in (2, 130) and "error" in last or "interrupted" in last:
        return "clear", last
    return "traceback", f"exit {process.returncode}: {last}"


def main() -> int:
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        (folder / "tiny.toml").write_text(TINY)
        db = f"sqlite:///{folder / 'study.db'}"
        subprocess.run(command("run", str(folder / "tiny.toml"), "--storage", db), cwd=folder,
                       capture_output=True, check=True)
        counts: Counter[str] = Counter()
        for name, argv in probes(folder, db):
            kind, line = classify(name, argv, folder, db)
            counts[kind] += 1
            print(f"{kind:9}  {name:40}  {line[:150]}", flush=True)
    print(f"\n{sum(counts.values())} probes: " + ", ".join(
        f"{counts[kind]} {kind}" for kind in ("clear", "traceback", "silent", "secret", "loss")))
    return 0 if counts["clear"] == sum(counts.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
