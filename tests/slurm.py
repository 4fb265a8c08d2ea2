"""A throwaway one-node Slurm cluster for tests: munged, slurmctld and slurmd on 127.0.0.1.

Everything lives in one temporary directory: a generated munge key and socket, ``slurm.conf``
(CPU-only, no ``gres``, no cgroups: process tracking by parent pid, no task binding, no
accounting), state and spool directories and the daemons' logs. The daemons run in the
foreground as children of the test process and as the user running the tests (``SlurmUser``,
``SlurmdUser``: root in CI; another user works too and can run only its own jobs). Clients find
the cluster through ``SLURM_CONF``, which every job inherits. ``stop`` cancels the jobs, ends
the daemons and any process a job left behind (found by that ``SLURM_CONF`` in its
environment), and removes the directory.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from tests.helpers import free_port

DAEMONS = ("munged", "slurmctld", "slurmd")
SEARCH_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
FINAL_STATES = {"COMPLETED", "CANCELLED", "FAILED", "TIMEOUT", "NODE_FAIL", "PREEMPTED",
                "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE"}
KILL_WAIT = 15
"""Seconds between Slurm's SIGTERM and SIGKILL to a cancelled job (``KillWait``, default 30)."""


def program(name: str) -> str:
    """A Slurm or munge program's path; daemons live in /usr/sbin, often not on a user's PATH."""
    path = shutil.which(name, path=SEARCH_PATH)
    if path is None:
        raise RuntimeError(f"{name} not found (install Debian's 'slurm-wlm' and 'munge')")
    return path


class SlurmCluster:
    """One node named after this host, 2 CPUs at most, one partition ``test``."""

    def __init__(self) -> None:
        for name in (*DAEMONS, "sbatch", "squeue", "scancel", "sinfo"):
            program(name)  # fail at once, not at the first job
        self.user = pwd.getpwuid(os.geteuid()).pw_name
        self.root = Path(tempfile.mkdtemp(prefix="optuna-energy-slurm-"))
        self.root.chmod(0o755)  # munged wants its socket's directory searchable by all
        self.node = socket.gethostname().split(".")[0]
        self.cpus = min(os.cpu_count() or 1, 2)
        self.conf = self.root / "slurm.conf"
        self.env = {**os.environ, "SLURM_CONF": str(self.conf)}
        self.daemons: dict[str, subprocess.Popen] = {}

    def start(self, timeout: float = 30.0) -> None:
        key = self.root / "munge.key"
        with open(os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o400), "wb") as file:
            file.write(os.urandom(1024))
        socket_path = self.root / "munge.socket"
        self._daemon("munged", "-F", f"--key-file={key}", f"--socket={socket_path}",
                     f"--pid-file={self.root / 'munged.pid'}", f"--seed-file={self.root / 'munged.seed'}",
                     f"--log-file={self.root / 'munged.log'}")
        self._wait(socket_path.exists, "munged's socket", timeout)
        for directory in ("state", "spool"):
            (self.root / directory).mkdir()
        self.conf.write_text(self._slurm_conf(socket_path))
        self._daemon("slurmctld", "-D")
        self._daemon("slurmd", "-D", "-N", self.node)
        self._wait(lambda: self.client("sinfo", "-h", "-n", self.node, "-o", "%T").strip() == "idle",
                   "the node to be idle", timeout)

    def _slurm_conf(self, munge_socket: Path) -> str:
        root = self.root
        return f"""\
ClusterName=optuna-energy-test
SlurmctldHost={self.node}(127.0.0.1)
SlurmctldPort={free_port()}
SlurmdPort={free_port()}
AuthType=auth/munge
AuthInfo=socket={munge_socket}
CredType=cred/munge
SlurmUser={self.user}
SlurmdUser={self.user}
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd.log
MailProg=/bin/true
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SwitchType=switch/none
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
KillWait={KILL_WAIT}
NodeName={self.node} NodeAddr=127.0.0.1 CPUs={self.cpus} State=UNKNOWN
PartitionName=test Nodes={self.node} Default=YES MaxTime=INFINITE State=UP
"""

    def _daemon(self, name: str, *args: str) -> None:
        with open(self.root / f"{name}.out", "wb") as out:
            self.daemons[name] = subprocess.Popen([program(name), *args], env=self.env, cwd=self.root,
                                                  stdout=out, stderr=subprocess.STDOUT,
                                                  stdin=subprocess.DEVNULL, start_new_session=True)

    def _wait(self, condition, what: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            dead = [name for name, process in self.daemons.items() if process.poll() is not None]
            if dead:
                raise RuntimeError(f"{', '.join(dead)} exited while waiting for {what}:\n{self.logs()}")
            try:
                if condition():
                    return
            except RuntimeError:
                pass  # a client before the controller answers
            time.sleep(0.2)
        raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}:\n{self.logs()}")

    def logs(self, tail: int = 1500) -> str:
        parts = []
        for path in sorted(self.root.glob("*.log")) + sorted(self.root.glob("*.out")):
            parts.append(f"--- {path.name}\n{path.read_text(errors='replace')[-tail:]}")
        return "\n".join(parts)

    def client(self, name: str, *args: str, env: dict[str, str] | None = None) -> str:
        result = subprocess.run([program(name), *args], env={**self.env, **(env or {})},
                                cwd=self.root, capture_output=True, text=True, timeout=30)
        if result.returncode != 0:
            raise RuntimeError(f"{name} {' '.join(args)} failed ({result.returncode}): {result.stderr}")
        return result.stdout

    def sbatch(self, *args: str, env: dict[str, str] | None = None) -> int:
        """Submit; ``args`` are sbatch's options, the script and its arguments. Returns the job id."""
        return int(self.client("sbatch", "--parsable", *args, env=env).split(";")[0])

    def state(self, job: int) -> str:
        """PENDING, RUNNING, COMPLETING, ... and, once every process of the job is gone, its end."""
        return self.client("squeue", "-h", "-t", "all", "-j", str(job), "-o", "%T").strip()

    def wait(self, job: int, timeout: float) -> str:
        """Wait until the job has ended and its processes are gone; returns its final state."""
        self._wait(lambda: self.state(job) in FINAL_STATES, f"job {job} to end", timeout)
        return self.state(job)

    def stop(self) -> None:
        try:
            if "slurmd" in self.daemons and all(p.poll() is None for p in self.daemons.values()):
                self._cancel_all()
            for name in reversed(DAEMONS):
                process = self.daemons.get(name)
                if process is not None and process.poll() is None:
                    process.terminate()
                    try:
                        process.wait(timeout=15)
                    except subprocess.TimeoutExpired:
                        process.kill()
                        process.wait()
            self._kill_leftovers()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def _cancel_all(self) -> None:
        """Cancel every job and give them KillWait to end, so that slurmd reaps their steps."""
        subprocess.run([program("scancel"), "--user", self.user], env=self.env,
                       capture_output=True, timeout=30)
        deadline = time.monotonic() + KILL_WAIT + 10
        while time.monotonic() < deadline:
            try:
                if not self.client("squeue", "-h", "-o", "%i").strip():
                    return
            except (RuntimeError, subprocess.TimeoutExpired):
                return
            time.sleep(0.5)

    def _kill_leftovers(self) -> None:
        """SIGKILL slurmstepd and job processes still alive: their environment names our conf."""
        marker = f"SLURM_CONF={self.conf}".encode()
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            try:
                if marker in (entry / "environ").read_bytes().split(b"\0"):
                    os.kill(int(entry.name), signal.SIGKILL)
            except (OSError, ValueError):
                continue  # gone already, or not ours to read
