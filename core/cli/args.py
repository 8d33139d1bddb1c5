"""The argument parser and argument types shared by the commands."""

from __future__ import annotations

import argparse


def _int_at_least(low: int):
    """An argparse type: an integer >= ``low``, with a message that names the value."""

    def convert(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < low:
            raise argparse.ArgumentTypeError(f"must be an integer >= {low}; got {text!r}")
        return value

    return convert


positive_int = _int_at_least(1)  # counts: trials, workers, threads, ports
non_negative_int = _int_at_least(0)  # seeds


class Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line (exit code 2): what was wrong and
    where to look, without the usage block above it. Subcommands inherit the class."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} -h)\n")
