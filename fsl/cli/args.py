"""Argument types and the parser class shared by the ``fsl`` commands.

``Parser`` reports a bad argument as ``CliError`` (one line, exit status 2);
the ``type=`` functions below raise ``argparse.ArgumentTypeError`` naming the
text they received.
"""

from __future__ import annotations

import argparse
import pathlib


class CliError(Exception):
    """An error to report in one line with exit status 2."""


class Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line: ``fsl: error: ...``."""

    def error(self, message: str):  # noqa: D401 - argparse API
        raise CliError(message)


def _int_at_least(minimum: int, words: str):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < minimum:
            raise argparse.ArgumentTypeError(f"expected {words}, got {text!r}")
        return value

    return parse


#: ``type=`` of an argument that takes an integer >= 1.
positive_int = _int_at_least(1, "a positive integer")
#: ``type=`` of an argument that takes an integer >= 0.
non_negative_int = _int_at_least(0, "an integer >= 0")


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}") from None
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}")
    return value


def names(text: str) -> list:
    """``--identities``: comma-separated folder names, or ``@FILE``: a text
    file of names (one per line or comma-separated; ``#`` starts a comment)."""
    source = text
    if text.startswith("@"):
        path = pathlib.Path(text[1:])
        try:
            source = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise argparse.ArgumentTypeError(
                f"cannot read the names file {str(path)!r}: "
                f"{getattr(error, 'strerror', None) or error}") from None
        source = ",".join(line.split("#", 1)[0] for line in source.splitlines())
    names = [n.strip() for n in source.split(",") if n.strip()]
    if not names:
        where = f"in {text[1:]!r}" if text.startswith("@") else f"got {text!r}"
        raise argparse.ArgumentTypeError(f"expected comma-separated names, {where}")
    return names


def loss_option(text: str) -> dict:
    """``--loss-option``: ``KEY=VALUE``, VALUE a number or true / false."""
    key, sep, value = text.partition("=")
    parsed = {"true": True, "false": False}.get(value.strip().lower())
    if parsed is None:
        try:
            parsed = float(value)
        except ValueError:
            parsed = None
    if not sep or not key.strip().isidentifier() or parsed is None:
        raise argparse.ArgumentTypeError(
            f"expected KEY=VALUE with a number or true/false as VALUE, got {text!r}")
    return {key.strip(): parsed}


class MergeDicts(argparse.Action):
    """Repeated ``KEY=VALUE`` options merged into one dict."""

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, {**(getattr(namespace, self.dest) or {}), **values})


def shrinkage(text: str):
    """``--wccn``: a positive number, or ``none``."""
    if text.lower() == "none":
        return None
    try:
        return positive_float(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"expected a positive number or 'none', got {text!r}") from None


def jit(text: str):
    return {"auto": "auto", "on": True, "off": False}[text]
