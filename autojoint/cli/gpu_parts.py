"""``autojoint_predict --num-gpus G``: one part process per GPU of this machine.

The parent starts G copies of the same command as parts 0..G-1 of G (``--num-parts G
--part-id g``, appended so they override), each seeing only its own GPU through
``CUDA_VISIBLE_DEVICES``, and waits for them. The parts share nothing but the output folder,
exactly as when a user starts them by hand (docs/prediction.md), so there is one code path
to get right. With ``--device cpu`` the parts are G CPU processes, which is how this is
tested on machines without a GPU.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence

from autojoint.cli.common import EXIT_SOME_FAILED

logger = logging.getLogger(__name__)

# The child runs autojoint_predict's main in a fresh interpreter (the console script may
# not be on PATH when the venv is not activated).
_CHILD = "import sys; from autojoint.cli.predict import main; sys.exit(main(sys.argv[1:]))"


def part_gpus(num_gpus: int, device: str, env: Mapping[str, str]) -> list[str | None]:
    """The ``CUDA_VISIBLE_DEVICES`` value of each part (None: leave it, for ``cpu``).

    A parent restricted to some GPUs (``CUDA_VISIBLE_DEVICES=2,3``) hands out those.

    Raises:
        ValueError: a device that names one GPU or is not CUDA.
        RuntimeError: fewer CUDA devices than ``num_gpus``.
    """
    if device == "cpu":
        return [None] * num_gpus
    if device not in ("auto", "cuda"):
        raise ValueError(
            f"--num-gpus gives each part its own GPU; use --device auto or cuda (not {device}), "
            "or --device cpu for CPU processes."
        )
    import torch  # only here: parsing the command line needs no torch

    found = torch.cuda.device_count()
    if found < num_gpus:
        raise RuntimeError(
            f"--num-gpus {num_gpus}: torch sees {found} CUDA device(s); use --num-gpus "
            f"{max(found, 1)}, or --device cpu to run {num_gpus} CPU processes."
        )
    visible = [v.strip() for v in env.get("CUDA_VISIBLE_DEVICES", "").split(",") if v.strip()]
    ids = visible if len(visible) >= num_gpus else [str(i) for i in range(num_gpus)]
    return list(ids[:num_gpus])


def merge_exit_codes(codes: Sequence[int]) -> int:
    """One exit code for the parts: 0 if all succeeded, 6 if the only trouble was failed
    cases, else the first other code (a killed part's signal as 128 + signal)."""
    bad = [c if c >= 0 else 128 - c for c in codes if c != 0]
    if not bad:
        return 0
    return next((c for c in bad if c != EXIT_SOME_FAILED), EXIT_SOME_FAILED)


def run_gpu_parts(argv: Sequence[str], num_gpus: int, device: str) -> int:
    """Run ``autojoint_predict argv`` as parts 0..num_gpus-1, one per GPU, and wait for all.

    Only part 0 draws a progress bar. The parts run in their own process group, so a
    Ctrl-C reaches them once, from here: each stops with its finished files complete
    (rerun with ``--continue``).

    Returns:
        The merged exit code (:func:`merge_exit_codes`).
    """
    gpus = part_gpus(num_gpus, device, os.environ)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for part_id, gpu in enumerate(gpus):
            env = dict(os.environ)
            if gpu is not None:
                env["CUDA_VISIBLE_DEVICES"] = gpu
            if part_id > 0:
                env["TQDM_DISABLE"] = "1"  # one progress bar, not G interleaved ones
            extra = ["--num-gpus", "1", "--num-parts", str(num_gpus), "--part-id", str(part_id)]
            command = [sys.executable, "-c", _CHILD, *argv, *extra]
            procs.append(subprocess.Popen(command, env=env, process_group=0))
            where = f"GPU {gpu}" if gpu is not None else "the CPU"
            logger.info("part %d of %d on %s: process %d", part_id, num_gpus, where, procs[-1].pid)
        codes = [p.wait() for p in procs]
    except BaseException:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
        for p in procs:
            p.wait()
        raise
    for part_id, code in enumerate(codes):
        if code != 0:
            logger.error("part %d of %d exited with code %d", part_id, num_gpus, code)
    return merge_exit_codes(codes)
