"""The command line's argument types: every value is checked as it is parsed, before any model
is built, so a mistake costs nothing and says what is allowed; `Parser` prints it as one
`error:` line with exit status 2."""

from __future__ import annotations

import argparse
import math
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn


def csv_list(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


# Every count and size a user can type is bounded where it is parsed; --help states each bound.
SEED_MAX = 2**32 - 1  # numpy's and torch's seeds are 32-bit on some paths
THREADS_MAX = 256  # OpenMP aborts the process when asked for far more threads than it can start
EPOCHS_MAX = 1000
BATCH_MAX = 256  # images in one forward; 256 at 224 px is 150 MB of input before any activation
IMAGES_MAX = 1_000_000  # images of a split, a limit, a generated dataset
ERF_IMAGES_MAX = 100_000
CRF_SCALE_MAX = 64
LR_MAX = 10.0
LOSS_WEIGHT_MAX = 1e6


class Parser(argparse.ArgumentParser):
    def add_argument(self, *args, **kwargs):
        """An argument whose type has bounds says them in its help: "[1 to 1,000]"."""
        bounds = getattr(kwargs.get("type"), "bounds", None)
        if bounds and kwargs.get("help") != argparse.SUPPRESS:
            kwargs["help"] = f"{kwargs.get('help') or ''} [{bounds}]".strip()
        return super().add_argument(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        """One `error:` line and status 2 (argparse would print the usage before it)."""
        print(f"error: {message} (see {self.prog} --help)", file=sys.stderr)
        raise SystemExit(2)


def whole(low: int, high: int | None = None) -> Callable[[str], int]:
    """A whole number in [low, high]; the parser carries its bounds for --help."""
    def parse(text: str) -> int:
        if not re.fullmatch(r"\s*[+-]?\d{1,40}\s*", text):
            raise argparse.ArgumentTypeError(f"'{text[:40]}' is not a whole number")
        value = int(text)
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, not {value}")
        if high is not None and value > high:
            raise argparse.ArgumentTypeError(f"must be at most {high:,}, not {value:,}")
        return value
    parse.bounds = f"{low:,} to {high:,}" if high is not None else f"at least {low:,}"  # type: ignore[attr-defined]
    return parse


def number(low: float | None = None, high: float | None = None, *, above: bool = False) -> Callable[[str], float]:
    """A finite float in [low, high] (with `above`, strictly above low)."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except (ValueError, OverflowError):
            raise argparse.ArgumentTypeError(f"'{text[:40]}' is not a number") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be a finite number, not {text}")
        if low is not None and (value <= low if above else value < low):
            raise argparse.ArgumentTypeError(f"must be {'above' if above else 'at least'} {low:g}, not {value:g}")
        if high is not None and value > high:
            raise argparse.ArgumentTypeError(f"must be at most {high:g}, not {value:g}")
        return value
    if low is not None or high is not None:
        parse.bounds = (f"{'above' if above else 'from'} {low:g}" if low is not None else "")  # type: ignore[attr-defined]
        parse.bounds += (" to " if low is not None else "at most ") + f"{high:g}" if high is not None else ""  # type: ignore[attr-defined]
    return parse


def numbers(text: str) -> list[float]:
    """A non-empty comma-separated list of finite numbers."""
    one = number()
    values = [one(part) for part in csv_list(text)]
    if not values:
        raise argparse.ArgumentTypeError("give at least one number (comma-separated)")
    return values


def whole_numbers(text: str) -> list[int]:
    """A non-empty comma-separated list of distinct whole numbers at least 0 (e.g. training seeds)."""
    one = whole(0, SEED_MAX)
    values = [one(part) for part in csv_list(text)]
    if not values:
        raise argparse.ArgumentTypeError("give at least one whole number (comma-separated)")
    if len(set(values)) != len(values):
        raise argparse.ArgumentTypeError(f"each number once, not {text}")
    return values


def names(text: str) -> list[str]:
    """A non-empty comma-separated list."""
    values = csv_list(text)
    if not values:
        raise argparse.ArgumentTypeError("give at least one name (comma-separated)")
    return values


def device(text: str) -> str:
    """cpu, cuda or cuda:<n>, and only a CUDA device this machine has."""
    if text != "cpu" and not re.fullmatch(r"cuda(:\d+)?", text):
        raise argparse.ArgumentTypeError(f"'{text}' is not a device; use cpu, cuda or cuda:<n>")
    if text.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise argparse.ArgumentTypeError(f"{text} was asked for, but this machine has no CUDA device; use cpu")
        index = int(text.partition(":")[2] or 0)
        if index >= torch.cuda.device_count():
            raise argparse.ArgumentTypeError(f"{text}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return text


def _writable_folder(folder: Path, what: str) -> None:
    if not folder.exists():
        raise argparse.ArgumentTypeError(f"the folder {folder} for {what} does not exist; create it first")
    if not folder.is_dir():
        raise argparse.ArgumentTypeError(f"{folder} (for {what}) is a file, not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise argparse.ArgumentTypeError(f"the folder {folder} for {what} is not writable")


def output_file(*suffixes: str) -> Callable[[str], Path]:
    """A file to write: one of `suffixes`, not a folder, in an existing writable folder."""
    def parse(text: str) -> Path:
        path = Path(text)
        if path.is_dir():
            raise argparse.ArgumentTypeError(f"{path} is a folder; give a file name ending with {suffixes[0]}")
        if path.suffix.lower() not in suffixes:
            raise argparse.ArgumentTypeError(f"{path} should end with {' or '.join(suffixes)}")
        _writable_folder(path.parent if str(path.parent) else Path("."), str(path.name))
        return path
    return parse


def output_folder(text: str) -> Path:
    """A folder to write into: an existing folder, or a new one in an existing writable folder."""
    path = Path(text)
    if path.exists():
        if not path.is_dir():
            raise argparse.ArgumentTypeError(f"{path} is a file; give a folder")
        _writable_folder(path, "the output")
    else:
        _writable_folder(path.parent if str(path.parent) else Path("."), path.name)
    return path
