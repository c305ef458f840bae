"""Data-parallel work over several processes (GPUs, or CPU processes with gloo) with Hugging Face
Accelerate.

A run is distributed when it was started by a launcher that sets ``WORLD_SIZE`` (``accelerate
launch``, ``torchrun``, or ``emoreg evaluate --processes N``, which calls ``accelerate launch``).
Every process then runs the same evaluation: the LLM trainer splits each global batch over the
processes (same global batch, same order, so the result equals one process up to floating-point
noise), test prompts are scored in shards and gathered, and only the main process writes the run
folder. Nothing here imports accelerate or torch unless the run is distributed.
"""

from __future__ import annotations

import os
from functools import lru_cache
from typing import Any


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def is_main() -> bool:
    return rank() == 0


@lru_cache(maxsize=1)
def state():
    """Accelerate's process state (starts the process group: nccl on GPUs, gloo on CPUs)."""
    import torch
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available())


def barrier() -> None:
    if world_size() > 1:
        state().wait_for_everyone()


def shutdown(wait: bool = True) -> None:
    """End the process group at the end of a command. A process that exits with its gloo threads
    still running can abort ("terminate called without an active exception") and fail a run whose
    work was already written. ``wait``: meet the other processes first (not after an error, when
    they may never arrive)."""
    if world_size() == 1:
        return
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        if wait:
            dist.barrier()
        dist.destroy_process_group()


def gather(obj: Any) -> list[Any]:
    """``obj`` of every process, in rank order (``[obj]`` when not distributed)."""
    if world_size() == 1:
        return [obj]
    from accelerate.utils import gather_object

    state()
    return gather_object([obj])


def launch_command(processes: int, argv: list[str]) -> list[str]:
    """``accelerate launch`` of ``emoreg ARGV`` over ``processes`` processes on this machine: one per
    GPU where CUDA is present, CPU processes with gloo otherwise (Accelerate's multi-process
    launcher; its plain CPU launcher starts only one)."""
    import sys

    return [sys.executable, "-m", "accelerate.commands.accelerate_cli", "launch", "--multi_gpu",
            "--num_processes", str(processes), "--num_machines", "1",
            "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(_free_port()),
            "-m", "emoreg", *argv]


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
