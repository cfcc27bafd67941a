"""The run folder that every process of a torchrun job or a SLURM step works in.

torchrun and srun start every process of a DDP run themselves, and each one composes its own config,
so a folder name that holds the start time could differ between them. They share the job's identity
instead, which the launcher puts in their environment: torchrun's run id (`TORCHELASTIC_RUN_ID`:
`--rdzv-id`, or a fresh uuid with `--standalone` or on one machine) and SLURM's job and step ids.
The name stays the same when torchrun restarts the job, or SLURM requeues it, so a restart finds the
folder (and its checkpoints) of the attempt before it. With torchrun's static rendezvous and no
`--rdzv-id` the run id is the literal "none": nothing tells one such job from the next, and the run
is refused unless the folder is named.

On one machine Lightning starts the other processes itself, with the first one's folder
(`hydra.run.dir`), and none of this applies.
"""

from __future__ import annotations

import os
import re

from digits_zoo.errors import ConfigError


def _processes(variable: str) -> int:
    try:
        return int(os.environ.get(variable, "1"))
    except ValueError:
        return 1


def launcher() -> str | None:
    """The launcher of this process's job of more than one process, "torchrun" or "SLURM" (as Lightning
    detects them: SLURM only where the job is not interactive), else None."""
    env = os.environ
    if "TORCHELASTIC_RUN_ID" in env:
        return "torchrun" if _processes("WORLD_SIZE") > 1 else None
    if env.get("SLURM_JOB_NAME") in ("bash", "interactive"):  # (Lightning's own launcher, in an allocation)
        return None
    # srun's tasks (a batch script's own commands have no step id: each of its runs gets a folder of its own)
    return "SLURM" if "SLURM_STEP_ID" in env and _processes("SLURM_NTASKS") > 1 else None


def shared_run_name() -> str | None:
    """The run folder name that every process of this torchrun job or SLURM step derives alike
    (`torchrun-<run id>`, `slurm-<job id>.<step id>`), or None where `launcher()` is None. Raises
    ConfigError for a torchrun job without a run id."""
    env = os.environ
    which = launcher()
    if which == "torchrun":
        run_id = env["TORCHELASTIC_RUN_ID"]
        if run_id == "none":
            raise ConfigError(
                "torchrun's processes share no run id (its static rendezvous without --rdzv-id), so they cannot "
                "agree on a run folder; give torchrun --rdzv-id=ID (e.g. the scheduler's job id), or name the "
                "folder with hydra.run.dir=DIR"
            )
        return f"torchrun-{_safe(run_id)}"
    if which == "SLURM":
        return f"slurm-{_safe(env.get('SLURM_JOB_ID', 'job'))}.{_safe(env['SLURM_STEP_ID'])}"
    return None


def job_run(default: str) -> str:
    """configs/train.yaml's `${job_run:NAME}`: the shared name of this torchrun job or SLURM step,
    else NAME (a job that has none is refused by `RunFolderGuard` unless its folder is named)."""
    try:
        return shared_run_name() or default
    except ConfigError:
        return default


def _safe(text: str) -> str:
    """`text` as one folder name (an id a user gave could hold a slash)."""
    return re.sub(r"[^\w.-]", "_", text).lstrip(".") or "_"
