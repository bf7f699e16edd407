"""Guards of the ``lite-moderation`` command: outputs checked before any work, signals turned into exceptions.

Kept apart from the commands: every command that writes gets ``@check_outputs`` and the group runs each
command inside ``signals_as_exceptions()``; neither needs to know the command's body.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import stat
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from .output import KNOWN_SUFFIX_FORMATS, OutputError, check_output_file, output_format, same_path
from .persistence import check_model_target, resolve_model_path

__all__ = ["Terminated", "check_outputs", "signals_as_exceptions", "silence_stdout"]


def check_outputs(command: Callable) -> Callable:
    """Refuse, before any work, every output path that would replace an input or something not ours, and an
    output of one format under a name that says another (``--json m.csv``)."""

    @functools.wraps(command)
    def wrapper(**kwargs: Any) -> Any:
        _refuse_shared_outputs(kwargs)
        _refuse_bytes_on_terminal(kwargs)
        inputs = _input_paths(kwargs)
        if kwargs.get("output_dir") is not None:
            target = check_model_target(kwargs["output_dir"], kwargs.get("overwrite", False))
            _refuse_inputs_inside(target, inputs)
        if kwargs.get("output_path") is not None and kwargs.get("engine") != "dask":
            check_output_file(kwargs["output_path"], inputs, "--output")
        for option, fmt in _ONE_FORMAT.items():
            if kwargs.get(f"{option}_path") is not None:
                check_output_file(kwargs[f"{option}_path"], inputs, f"--{option}")
                output_format(kwargs[f"{option}_path"], fmt, fmt, KNOWN_SUFFIX_FORMATS, only=f"--{option}")
        if _writes_to_stdout(kwargs):
            _refuse_stdout_as_input(inputs)
        return command(**kwargs)

    return wrapper


def _writes_to_stdout(kwargs: dict) -> bool:
    """Whether an output goes to stdout: --output by default (a model directory never), or any output given as
    "-" (``compare -o t.txt --plot - >> data.jsonl`` appended the PNG to its input)."""
    if "output_dir" not in kwargs and str(kwargs.get("output_path") or "-") == "-":
        return True
    return any(str(kwargs.get(f"{name}_path")) == "-" for name in _FILE_OUTPUTS)


#: The outputs of one format (``<name>_path``: evaluate's and cv's metrics and predictions, compare's curves):
#: a name whose suffix says another format is refused, by score's rule (``output.output_format``).
_ONE_FORMAT = {"json": "json", "predictions": "jsonl", "plot": "png"}
#: The options naming an output file (``<name>_path``); "-" is stdout.
_FILE_OUTPUTS = ("output", "json", "predictions", "plot")


def _refuse_shared_outputs(kwargs: dict) -> None:
    """Two outputs of one command on one file, or both on stdout, would leave only the one written last or mix
    them in one stream (``evaluate --json x --predictions x`` kept the metrics alone, silently)."""
    given = [(f"--{name}", kwargs[f"{name}_path"]) for name in _FILE_OUTPUTS if kwargs.get(f"{name}_path") is not None
             and not (name == "output" and kwargs.get("engine") == "dask")]  # dask's --output is a directory
    files = [(option, Path(path)) for option, path in given if str(path) != "-"]
    for i, (option, path) in enumerate(files):
        for other, other_path in files[:i]:
            if same_path(path, other_path):
                raise OutputError(f"{option} {path}: is also given as {other}; give each output a file of its own")
    on_stdout = [f"{option} -" for option, path in given if str(path) == "-"]
    if "json_path" in kwargs and str(kwargs["json_path"]) != "-":
        on_stdout.append("the metrics table")  # evaluate and cv print the metrics unless --json - does
    if "plot_path" in kwargs and kwargs.get("output_path") is None:
        on_stdout.append("the comparison tables")  # compare prints them unless --output names a file
    if len(on_stdout) > 1:
        raise OutputError(f"{' and '.join(on_stdout)} would {'both' if len(on_stdout) == 2 else 'all'} write to "
                          "stdout, one after the other in one stream; give each output but one a file of its own")
    if on_stdout:
        _refuse_stdout_as(files, on_stdout[0])


def _refuse_bytes_on_terminal(kwargs: dict) -> None:
    """``compare --plot -`` on a terminal would print a PNG's bytes on the screen: garbage, and control bytes
    the terminal obeys. Binary output belongs in a file or a pipe."""
    if str(kwargs.get("plot_path")) == "-" and _stdout_is_terminal():
        raise OutputError("--plot -: stdout is a terminal, and the PNG is binary; redirect stdout to a file or a "
                          "pipe (> curves.png), or give --plot a file name")


def _stdout_is_terminal() -> bool:
    try:
        return sys.stdout.isatty()
    except (AttributeError, ValueError):  # no stdout, or a closed one
        return False


def _refuse_stdout_as(files: list[tuple[str, Path]], what: str) -> None:
    """``evaluate --json m.json > m.json``: the table printed to stdout would go to the file --json replaces."""
    try:
        out = os.fstat(sys.stdout.fileno())
    except (OSError, ValueError):  # no real stdout (captured, closed)
        return
    for option, path in files:
        if path.exists() and os.path.samestat(out, os.stat(path)):
            raise OutputError(f"stdout is the file given as {option} {path}, so {what} written there would be lost "
                              f"when {option} replaces it; redirect stdout elsewhere")


def _input_paths(kwargs: dict) -> dict[str, list]:
    """The files a command reads, by option: data, input and the model's own files."""
    inputs: dict[str, list] = {
        "--input": [kwargs.get("input_path")],
        "--data": [kwargs.get("data_path"), *(spec.path for spec in kwargs.get("sources") or ())],
        "--system": [path for _, path in kwargs.get("systems") or ()],
    }
    for option, paths in list(inputs.items()):  # "-" reads stdin, which may be redirected from a file
        inputs[option] = [path for path in paths if str(path) != "-"]
        if any(str(path) == "-" for path in paths) and Path(_STDIN).exists():
            inputs[f"{option} - (stdin)"] = [_STDIN]
    if "model_path" in kwargs:
        model = resolve_model_path(kwargs["model_path"])
        inputs["--model"] = [model / name for name in ("model.json", "vocabulary.json", "arrays.npz")]
    return inputs


_STDIN = "/dev/stdin"


def _named(option: str, path: object) -> str:
    """An input as a message names it: ``--input data.jsonl``, or ``--input - (stdin)`` (not /dev/stdin)."""
    return option if str(path) == _STDIN else f"{option} {path}"


def _refuse_stdout_as_input(inputs: dict[str, list]) -> None:
    """``score -i data.jsonl >> data.jsonl`` would grow the input while reading it. Only a file grows: a terminal
    that is both stdin and stdout (``explain -`` typed at a prompt) is read and written, as with no ``-``."""
    try:
        out = os.fstat(sys.stdout.fileno())
    except (OSError, ValueError):  # no real stdout (captured, closed)
        return
    if not stat.S_ISREG(out.st_mode):
        return
    for option, paths in inputs.items():
        for path in paths:
            if path is not None and str(path) != "-" and Path(path).exists() \
                    and os.path.samestat(out, os.stat(path)):
                raise OutputError(f"stdout is the file given as {_named(option, path)}; redirect the output elsewhere")


def _refuse_inputs_inside(target: Path, inputs: dict[str, list]) -> None:
    """A model directory to be replaced must not hold any input of the command."""
    if not target.exists():
        return
    for option, paths in inputs.items():
        for path in paths:
            if path is not None and str(path) != "-" and _inside(Path(path), target):
                raise OutputError(f"--output {target}: holds {_named(option, path)}; replacing it would delete that "
                                  "input")


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
