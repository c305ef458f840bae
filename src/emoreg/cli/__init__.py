"""The ``emoreg`` command line: parse, call the library, map user errors to exit status 2."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from contextlib import contextmanager
from pathlib import Path

from .. import distributed
from ..errors import EmoregError
from .data import cmd_check, cmd_data, cmd_import, cmd_prompts
from .models import cmd_play, cmd_predict, cmd_serve, cmd_train
from .parser import build_parser
from .runs import cmd_ablate, cmd_collect, cmd_evaluate, cmd_report


def relaunch(argv: list[str], processes: int) -> int:
    """Run this command again under `accelerate launch` over ``processes`` processes (each sees
    WORLD_SIZE and runs its share instead of launching again)."""
    import subprocess

    from ..distributed import launch_command

    return subprocess.call(launch_command(processes, argv))


COMMANDS = {"check": cmd_check, "prompts": cmd_prompts, "evaluate": cmd_evaluate, "collect": cmd_collect, "train": cmd_train,
            "predict": cmd_predict, "ablate": cmd_ablate, "report": cmd_report,
            "import": cmd_import, "serve": cmd_serve, "play": cmd_play,
            "data": cmd_data}


FOLDER_OUT = {"check", "evaluate", "train", "ablate", "report"}  # their --out is a folder; predict and import write a file


class Terminated(KeyboardInterrupt):
    """SIGTERM (a batch scheduler's time limit or preemption, ``timeout``, ``docker stop``, a session
    ending) raised as an interruption, so that the work in flight is saved as Ctrl-C saves it (the
    states pass's last shard, the training's checkpoint) before the process ends."""


@contextmanager
def sigterm_interrupts():
    """SIGTERM raises ``Terminated`` in the main thread while the command runs; the handler before
    is put back after (``emoreg serve``'s server installs its own for its graceful shutdown)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum, frame):
        raise Terminated

    before = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, before)


def _check_out(args: argparse.Namespace) -> None:
    """An --out of the wrong kind is refused before any work: a file where a folder goes, a folder
    where a file goes, or a place inside a file."""
    out = getattr(args, "out", None)
    if out is None:
        return
    out = Path(out)
    if args.command in FOLDER_OUT and out.exists() and not out.is_dir():
        raise EmoregError(f"--out {out} is a file; `emoreg {args.command}` writes a folder there: give a new path")
    if args.command not in FOLDER_OUT and out.is_dir():
        raise EmoregError(f"--out {out} is a folder; `emoreg {args.command}` writes a file: give a file path")
    for parent in out.parents:
        if parent.exists():
            if not parent.is_dir():
                raise EmoregError(f"--out {out}: {parent} is a file, so nothing can be written under it")
            break


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    processes = getattr(args, "processes", 1)
    if processes < 1:
        parser.error(f"--processes must be at least 1, got {processes}")
    if processes > 1 and getattr(args, "executor", "local") != "local":
        parser.error("--processes runs here; with --executor ray or slurm give each unit its GPUs instead "
                     "(--unit-gpus, --slurm-option=--gres=gpu:N)")
    if processes > 1 and os.environ.get("WORLD_SIZE") is None:
        return relaunch(argv, processes)
    finished = False
    try:
        _check_out(args)
        with sigterm_interrupts():
            code = COMMANDS[args.command](args)
        finished = True
        return code
    except EmoregError as exc:
        if args.debug:
            raise
        print(f"emoreg: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # the reader of our output went away (`emoreg check | head`): not an error of ours
        sys.stderr.close()
        return 141
    except OSError as exc:  # a path the command could not read or write: permissions, a full disk, ...
        if args.debug:
            raise
        where = f" {exc.filename}" if exc.filename else ""
        print(f"emoreg: error: cannot use{where}: {exc.strerror or exc}; check the path, its permissions and the "
              "free space (work finished so far is kept; rerun the same command to go on)", file=sys.stderr)
        return 2
    except Terminated:
        print("emoreg: stopped by SIGTERM; rerun the same command to go on from what it saved", file=sys.stderr)
        return 128 + signal.SIGTERM
    except KeyboardInterrupt:
        print("emoreg: interrupted", file=sys.stderr)
        return 130
    finally:
        distributed.shutdown(wait=finished)


if __name__ == "__main__":
    sys.exit(main())
