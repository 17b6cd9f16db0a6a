"""The ``har`` command line: a thin shell over the library.

Each command lives in its own module (``har.cli.predict``, ``har.cli.models``, ...)
with a ``register(subparsers)`` function; this module only assembles the parser,
runs the command and turns errors into exit codes. Nothing heavy (torch, PyAV) is
imported until a command runs, so ``har --help`` answers at once.

Tests call :func:`main` in-process with an argument list.
"""

from __future__ import annotations

import argparse
import enum
import importlib
import sys
from typing import Sequence

# UsageError lives in har.errors so the library can raise it without importing the
# CLI; it is re-exported here for the command modules.
from ..errors import HarError, InputError, ModelError, OutputError, UsageError


class ExitCode(enum.IntEnum):
    """One code per error class; the table in README.md ("Exit codes") says the same."""

    OK = 0  # every input fully processed
    OUTPUT = 1  # an output could not be written, or the run failed otherwise
    USAGE = 2  # bad command line (argparse's own code)
    INPUT = 3  # an input failed or gave results only in part; the others keep theirs
    MODEL = 4  # the model, its weights or its runtime could not be loaded
    INTERRUPTED = 130  # SIGINT/SIGTERM: outputs hold what finished
    # Older names of INPUT, still used by some command modules: an input that failed
    # and one read only in part are both the input class now.
    INPUT_FAILED = 3
    PARTIAL = 3


# Error class -> exit code, most specific first: the one place that maps errors to
# codes (main() below, and worst() for commands that return a code themselves).
EXIT_CODES = ((UsageError, ExitCode.USAGE), (InputError, ExitCode.INPUT),
              (ModelError, ExitCode.MODEL), (OutputError, ExitCode.OUTPUT),
              (HarError, ExitCode.OUTPUT))
# When a run has several outcomes, the code of the first in this order is returned:
# a lost output or model outranks a failed input (whose failure is in the outputs).
_PRECEDENCE = (ExitCode.INTERRUPTED, ExitCode.USAGE, ExitCode.MODEL, ExitCode.OUTPUT,
               ExitCode.INPUT, ExitCode.OK)


def exit_code_for(exc: BaseException) -> ExitCode:
    """The exit code of an error, by its class (:data:`EXIT_CODES`)."""
    if isinstance(exc, KeyboardInterrupt):
        return ExitCode.INTERRUPTED
    for cls, code in EXIT_CODES:
        if isinstance(exc, cls):
            return code
    raise TypeError(f"{type(exc).__name__} has no exit code")


def worst(*codes: int) -> ExitCode:
    """The code a run with these outcomes exits with (:data:`_PRECEDENCE`)."""
    got = {ExitCode(c) for c in codes}
    return next((c for c in _PRECEDENCE if c in got), ExitCode.OK)


# Modules under har.cli that register commands, in the order `har --help` lists them.
COMMAND_MODULES = ["predict", "live", "models", "index", "serve", "train", "evaluate"]

EPILOG = """\
examples:
  har predict video.mp4                      top-5 actions and a timeline per clip
  har predict videos/ --json out.json        every video in a folder, results as JSON
  har predict 'clips/**/*.mp4' --jsonl -     one JSON event per clip as it is scored
  har models                                 the model zoo
  har train clips/ --out runs/a --val val/   fine-tune on your own classes
  har eval val/ --weights runs/a/model.pth   accuracy and confusion matrix

exit codes:  (the table in README.md)
  0 every input fully processed      1 output: an output could not be written
  2 usage: bad command line          3 input: an input failed or was read only in part
                                       (the other inputs keep their results)
  4 model: the model or its weights could not be loaded      130 interrupted
"""


class HarParser(argparse.ArgumentParser):
    """argparse with whole option names only, and errors in the subcommand's own usage."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("allow_abbrev", False)
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(*args, **kwargs)

    def parse_known_args(self, args=None, namespace=None):
        ns, extras = super().parse_known_args(args, namespace)
        # A subcommand's parser complains itself, so the usage shown is its own
        # (argparse would pass the extras up and print the top-level usage).
        if extras and getattr(self, "_is_subcommand", False):
            self.error(f"unrecognized arguments: {' '.join(extras)}")
        return ns, extras


def add_command(sub, name: str, **kwargs) -> argparse.ArgumentParser:
    """Add a subcommand parser (used by each command module's ``register``)."""
    p = sub.add_parser(name, **kwargs)
    p._is_subcommand = True
    return p


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = HarParser(prog="har", description="Recognize human actions (Kinetics-400) "
                       "in videos, files, folders, URLs and live streams.", epilog=EPILOG)
    parser.add_argument("--version", action="version", version=f"har {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(f"{__name__}.{name}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except UsageError as exc:
        print(f"har {args.command}: error: {exc}", file=sys.stderr)
        return int(ExitCode.USAGE)
    except KeyboardInterrupt:
        print("har: interrupted", file=sys.stderr)
        return int(ExitCode.INTERRUPTED)
    except HarError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return int(exit_code_for(exc))
    except BrokenPipeError:  # e.g. `har predict ... | head`: the reader has what it wanted
        _silence_stdout()
        return int(ExitCode.OK)


def _silence_stdout() -> None:
    """After a broken pipe, point stdout at /dev/null so the interpreter's final flush
    does not print a second error."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
