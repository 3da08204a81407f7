"""argparse types for numbers that must be in range, so that `--lr inf` or `--frames 0`
fails at the command line (exit 2, one `error:` line) instead of running with a bad value."""
import argparse
import math
import re


def _number(kind, text):
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {'a whole number' if kind is int else 'a number'}, "
                                         f"got {text!r}") from None
    if kind is float and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def finite_float(text):
    return _number(float, text)


def positive_int(text):
    value = _number(int, text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def nonnegative_int(text):
    value = _number(int, text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def positive_float(text):
    value = _number(float, text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def fraction(text):
    """0 < x <= 1."""
    value = _number(float, text)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"must be a fraction with 0 < x <= 1, got {text}")
    return value


DEVICE_SPELLINGS = "cpu, cuda or cuda:N"


def device_string(text):
    """A device this project runs on: cpu, cuda or cuda:N (torch's other device types, mps, xpu,
    meta, ..., are not supported by the backends and the trainer)."""
    if not re.fullmatch(r"cpu|cuda(:[0-9]+)?", text):
        raise argparse.ArgumentTypeError(f"unknown device {text!r}; use {DEVICE_SPELLINGS}")
    return text
