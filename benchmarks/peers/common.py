"""What every peer workload shares: the two tools' commands, threads, timing, cached rows.

Both tools run as separate processes with the same thread settings (``OMP_NUM_THREADS``
and friends, and each tool's own torch thread count), so neither inherits the other's
state and the wall times are comparable. nnU-Net runs from its own venv
(``setup_nnunet.sh``); autojoint from the interpreter running this benchmark.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autojoint.io.files import read_json, write_json

DRIVER = Path(__file__).with_name("nnunet_driver.py")
SETUP = Path(__file__).with_name("setup_nnunet.sh")
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


@dataclass(frozen=True)
class Tools:
    """The two interpreters: autojoint's (this one) and nnU-Net's own venv (``None`` when a
    run uses autojoint alone, e.g. a convergence check at a longer budget)."""

    nnunet_python: Path | None
    autojoint_python: Path = Path(sys.executable)

    def nnunet_command(self, name: str) -> str:
        """An nnU-Net console script (``nnUNetv2_plan_and_preprocess``) of its venv."""
        return str(self._nnunet(name).parent / name)

    def _nnunet(self, purpose: str) -> Path:
        """nnU-Net's python; refuses clearly in a run started without nnU-Net."""
        if self.nnunet_python is None:
            raise SystemExit(f"{purpose}: this run was started without nnU-Net (--only autojoint)")
        return self.nnunet_python

    def autojoint_command(self, name: str) -> str:
        """An autojoint console script of this interpreter's venv."""
        return str(self.autojoint_python.parent / name)

    def nnunet_plan(
        self, dataset: int, configuration: str, *, threads: int, extra: Sequence[str] = ()
    ) -> list[str]:
        """``nnUNetv2_plan_and_preprocess`` of one configuration with ``threads`` processes
        (run with nnU-Net's folder variables in its environment)."""
        return [
            self.nnunet_command("nnUNetv2_plan_and_preprocess"),
            "-d",
            str(dataset),
            "-c",
            configuration,
            "-np",
            str(threads),
            *extra,
        ]

    def autojoint_plan(
        self,
        raw: Path,
        work: Path,
        *,
        gpu_memory_gb: float,
        threads: int,
        extra: Sequence[str] = (),
    ) -> list[str]:
        """``autojoint_plan`` of ``raw`` into ``work`` for a ``gpu_memory_gb`` budget."""
        return [
            self.autojoint_command("autojoint_plan"),
            "-d",
            str(raw),
            "-w",
            str(work),
            "--gpu-memory-gb",
            f"{gpu_memory_gb:g}",
            "-j",
            str(threads),
            *extra,
        ]

    def nnunet_train(
        self,
        dataset: int,
        configuration: str,
        fold: str,
        *,
        epochs: int,
        iterations: int,
        val_iterations: int,
        threads: int,
        log: Path,
        plans: str = "nnUNetPlans",
        resume: bool = False,
    ) -> list[str]:
        """The command of ``nnunet_driver.py train`` (run with nnU-Net's folder variables
        in its environment); ``resume`` continues from ``checkpoint_latest.pth`` if any."""
        command = [
            str(self._nnunet("nnunet_driver.py")),
            str(DRIVER),
            "train",
            "--dataset",
            str(dataset),
            "--configuration",
            configuration,
            "--fold",
            fold,
            "--plans",
            plans,
            "--epochs",
            str(epochs),
            "--iterations",
            str(iterations),
            "--val-iterations",
            str(val_iterations),
            "--threads",
            str(threads),
            "--log",
            str(log),
        ]
        return [*command, "--resume"] if resume else command

    def nnunet_predict(
        self,
        model: Path,
        images: Path,
        output: Path,
        *,
        threads: int,
        folds: Sequence[str] = ("all",),
        mirroring: bool = True,
        probabilities: bool = False,
    ) -> list[str]:
        """The command of ``nnunet_driver.py predict`` for every image of ``images``."""
        command = [
            str(self._nnunet("nnunet_driver.py")),
            str(DRIVER),
            "predict",
            "--model",
            str(model),
            "--folds",
            *folds,
            "-i",
            str(images),
            "-o",
            str(output),
            "--threads",
            str(threads),
        ]
        if not mirroring:
            command.append("--no-mirroring")
        if probabilities:
            command.append("--save-probabilities")
        return command


def find_nnunet_python(given: Path | None) -> Path:
    """``given``, else the venv ``setup_nnunet.sh`` creates (run it when missing).

    Raises:
        SystemExit: the script failed; its output says why.
    """
    if given is not None:
        if not given.is_file():
            raise SystemExit(f"--nnunet-python {given} does not exist; run {SETUP} first")
        return given
    done = subprocess.run(["bash", str(SETUP)], capture_output=True, text=True, check=False)
    sys.stderr.write(done.stderr)
    if done.returncode != 0:
        raise SystemExit(f"{SETUP} failed (exit {done.returncode}); see the lines above")
    return Path(done.stdout.strip().splitlines()[-1])


def tool_env(threads: int, extra: dict[str, str] | None = None) -> dict[str, str]:
    """This environment with every BLAS/OpenMP thread count set to ``threads``, plus
    ``extra``; nnU-Net's data augmentation in the main process (as ours: workers 0)."""
    env = dict(os.environ)
    for name in THREAD_VARIABLES:
        env[name] = str(threads)
    env["nnUNet_n_proc_DA"] = "0"
    env.update(extra or {})
    return env


def run_logged(
    command: Sequence[str], log: Path, env: dict[str, str], *, check: bool = True
) -> float:
    """Run ``command`` with stdout and stderr appended to ``log``; return its wall seconds.

    Raises:
        SystemExit: the command failed (with ``check``), naming its log.
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with open(log, "a", encoding="utf-8") as fh:
        fh.write(f"\n$ {' '.join(command)}\n")
        fh.flush()
        code = subprocess.run(
            list(command), check=False, stdout=fh, stderr=subprocess.STDOUT, env=env
        ).returncode
    seconds = time.perf_counter() - start
    if check and code != 0:
        raise SystemExit(f"{command[0]} failed with exit code {code}; see {log}")
    return seconds


def start_logged(command: Sequence[str], log: Path, env: dict[str, str]) -> subprocess.Popen:
    """Start ``command`` in the background, output appended to ``log``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    fh = open(log, "a", encoding="utf-8")  # noqa: SIM115 - closed with the process
    fh.write(f"\n$ {' '.join(command)}\n")
    fh.flush()
    return subprocess.Popen(list(command), stdout=fh, stderr=subprocess.STDOUT, env=env)


def wait_all(procs: dict[str, subprocess.Popen], logs: dict[str, Path]) -> None:
    """Wait for every process; a failure names the tool and its log.

    Raises:
        SystemExit: a process exited non-zero.
    """
    failed = [name for name, p in procs.items() if p.wait() != 0]
    if failed:
        raise SystemExit("; ".join(f"{n} failed, see {logs[n]}" for n in failed))


def wait_all_timed(
    procs: dict[str, subprocess.Popen], logs: dict[str, Path], started: float
) -> dict[str, float]:
    """:func:`wait_all`, returning each process's own wall seconds since ``started``
    (``time.perf_counter()`` when they were launched), polled once a second.

    Raises:
        SystemExit: a process exited non-zero.
    """
    seconds: dict[str, float] = {}
    while len(seconds) < len(procs):
        for name, p in procs.items():
            if name not in seconds and p.poll() is not None:
                seconds[name] = time.perf_counter() - started
        time.sleep(0.0 if len(seconds) == len(procs) else 1.0)
    wait_all(procs, logs)
    return seconds


def cached_row(
    path: Path, setup: dict[str, Any], *, legacy: dict[str, Any] | None = None
) -> dict[str, Any] | None:
    """A cached result whose ``setup`` equals ``setup``; None when absent.

    ``legacy`` fills keys that older records lack with what they were made with (a
    setting the harness began recording later), so that they still match their own
    table and never a newer one.

    Raises:
        SystemExit: the file holds a run made with another setup (never mixed in).
    """
    if not path.is_file():
        return None
    record = read_json(path)
    stored = record.get("setup")
    if isinstance(stored, dict) and legacy:
        stored = {**legacy, **stored}
    if stored != setup:
        filled = f" (keys it lacks counted as {legacy})" if legacy else ""
        raise SystemExit(
            f"{path} holds a run with {record.get('setup')}{filled}, not {setup}: "
            "use another --out or delete that file"
        )
    return record


def store_row(path: Path, setup: dict[str, Any], row: dict[str, Any]) -> dict[str, Any]:
    """Cache ``row`` with its ``setup`` (atomic write) and return the record."""
    record = {"setup": setup, **row}
    write_json(record, path)
    return record
