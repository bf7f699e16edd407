"""Guards of the ``lite-moderation`` command: outputs checked before any work, signals turned into exceptions.

Kept apart from the commands: every command that writes gets ``@check_outputs`` and the group runs each
command inside ``signals_as_exceptions()``; neither needs to know the command's body.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from .output import OutputError, check_output_file
from .persistence import check_model_target, resolve_model_path

__all__ = ["Terminated", "check_outputs", "signals_as_exceptions", "silence_stdout"]


def check_outputs(command: Callable) -> Callable:
    """Refuse, before any work, every output path that would replace an input or something not ours."""

    @functools.wraps(command)
    def wrapper(**kwargs: Any) -> Any:
        inputs = _input_paths(kwargs)
        if kwargs.get("output_dir") is not None:
            target = check_model_target(kwargs["output_dir"], kwargs.get("overwrite", False))
            _refuse_inputs_inside(target, inputs)
        if kwargs.get("output_path") is not None and kwargs.get("engine") != "dask":
            check_output_file(kwargs["output_path"], inputs, "--output")
        for option in ("json", "predictions", "plot"):
            if kwargs.get(f"{option}_path") is not None:
                check_output_file(kwargs[f"{option}_path"], inputs, f"--{option}")
        if "output_dir" not in kwargs and str(kwargs.get("output_path") or "-") == "-":
            _refuse_stdout_as_input(inputs)
        return command(**kwargs)

    return wrapper


def _input_paths(kwargs: dict) -> dict[str, list]:
    """The files a command reads, by option: data, input and the model's own files."""
    inputs: dict[str, list] = {
        "--input": [kwargs.get("input_path")],
        "--data": [kwargs.get("data_path"), *(spec.path for spec in kwargs.get("sources") or ())],
        "--system": [path for _, path in kwargs.get("systems") or ()],
    }
    for option, paths in inputs.items():  # "-" reads stdin, which may be redirected from a file
        inputs[option] = [_STDIN if str(path) == "-" and Path(_STDIN).exists() else path for path in paths]
    if "model_path" in kwargs:
        model = resolve_model_path(kwargs["model_path"])
        inputs["--model"] = [model / name for name in ("model.json", "vocabulary.json", "arrays.npz")]
    return inputs


_STDIN = "/dev/stdin"


def _refuse_stdout_as_input(inputs: dict[str, list]) -> None:
    """``score -i data.jsonl >> data.jsonl`` would grow the input while reading it."""
    try:
        out = os.fstat(sys.stdout.fileno())
    except (OSError, ValueError):  # no real stdout (captured, closed)
        return
    for option, paths in inputs.items():
        for path in paths:
            if path is not None and str(path) != "-" and Path(path).exists() \
                    and os.path.samestat(out, os.stat(path)):
                raise OutputError(f"stdout is the file given as {option} {path}; redirect the output elsewhere")


def _refuse_inputs_inside(target: Path, inputs: dict[str, list]) -> None:
    """A model directory to be replaced must not hold any input of the command."""
    if not target.exists():
        return
    for option, paths in inputs.items():
        for path in paths:
            if path is not None and str(path) != "-" and _inside(Path(path), target):
                raise OutputError(f"--output {target}: holds {option} {path}; replacing it would delete that input")


def _inside(path: Path, directory: Path) -> bool:
    return path.exists() and directory.resolve() in path.resolve().parents


class Terminated(BaseException):
    """SIGTERM, raised in the main thread so that temp files are removed on the way out."""


@contextlib.contextmanager
def signals_as_exceptions() -> Iterator[None]:
    def terminate(signum: int, frame: Any) -> None:
        raise Terminated

    try:
        previous = signal.signal(signal.SIGTERM, terminate)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def silence_stdout() -> None:
    """Point stdout at /dev/null, so the flush at exit does not fail again on a closed pipe."""
    with contextlib.suppress(OSError, ValueError):
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
