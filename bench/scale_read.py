"""Reading a big study: `optuna-energy report`, the dashboard note, export's trial lookup and the
Pareto front on synthetic SQLite studies of real samples of the digits space
(bench/synthetic_study.py), each in a fresh child process: CPU seconds (user + system) and peak
resident memory (``ru_maxrss``), since wall seconds mean little on a loaded machine.

    python bench/synthetic_study.py --trials 100000 --storage sqlite:///big.db
    python bench/scale_read.py --storage sqlite:///big.db
"""

from __future__ import annotations

import argparse
import subprocess
import sys

STAGES = {
    "import": "pass",
    "report": "cli.main(['report', '--storage', URL, '--out', tempfile.mkdtemp()])",
    "note": "note_markdown(study)",
    "note update": ("read = StudyTrials(study); note_markdown(read); "
                    "start = time.process_time(); read.refresh(); note_markdown(read); "
                    "said = f'one update after the first: {time.process_time() - start:.2f} CPU s'"),
    "pareto_front": "pareto_front(study)",
    # Trial 1999 is in every study of 2,000 trials or more; if it did not complete, the lookup
    # costs the same and export says so.
    "export lookup": "lookup(1999)",
}
"""What each child runs after loading the study; ``import`` is the baseline of every other."""

PRELUDE = """
import contextlib, io, resource, tempfile, time, optuna
optuna.logging.set_verbosity(optuna.logging.WARNING)
from optuna_energy import cli, export
from optuna_energy.reading.analysis import pareto_front
from optuna_energy.reading.dashboard import note_markdown
from optuna_energy.reading.study_trials import StudyTrials
URL = {url!r}
study = optuna.load_study(study_name="digits", storage=URL)
def lookup(number):
    with contextlib.suppress(export.ExportError):
        export._trial(study, number)
said = ""
with contextlib.redirect_stdout(io.StringIO()):
    {stage}
used = resource.getrusage(resource.RUSAGE_SELF)
print(used.ru_utime + used.ru_stime, used.ru_maxrss / 1024, said, sep="\\t")
"""


def measure(url: str, stage: str) -> tuple[float, float, str]:
    """CPU seconds and peak MB of one child that runs ``stage`` (imports and loading included),
    and what it has to say."""
    done = subprocess.run([sys.executable, "-c", PRELUDE.format(url=url, stage=STAGES[stage])],
                          capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"stage {stage!r} failed:\n{done.stderr}")
    cpu, peak, said = done.stdout.rstrip("\n").splitlines()[-1].split("\t")
    return float(cpu), float(peak), said


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--storage", required=True, help="a study made by bench/synthetic_study.py")
    parser.add_argument("--stages", nargs="+", default=list(STAGES), choices=list(STAGES))
    args = parser.parse_args()
    print("| stage | CPU s | peak MB | note |")
    print("|---|---:|---:|---|")
    for stage in args.stages:
        cpu, peak, said = measure(args.storage, stage)
        print(f"| {stage} | {cpu:.1f} | {peak:.0f} | {said} |", flush=True)


if __name__ == "__main__":
    main()
