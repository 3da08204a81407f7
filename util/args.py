"""argparse types for numbers that must be in range, so that `--lr inf` or `--frames 0`
fails at the command line (exit 2, one `error:` line) instead of running with a bad value."""
import argparse
import dataclasses
import math
import typing
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


# ----------------------------------------------------------------------------------------
# Flags made from the fields of a dataclass: a field declares its help and argparse type
# once (`flag_field`), and `add_dataclass_flags` turns every field into a flag.

def add_flag(container, dest, **kwargs):
    """Add the flag of `dest` to a parser or argument group, spelt with hyphens (--batch-size);
    where `dest` has an underscore, the spelling of the original FoldedCNNs command lines
    (--batch_size) is accepted too, as an alias left out of --help."""
    action = container.add_argument("--" + dest.replace("_", "-"), dest=dest, **kwargs)
    if "_" in dest:
        hidden = {**kwargs, "help": argparse.SUPPRESS, "default": argparse.SUPPRESS}
        hidden.pop("required", None)
        container.add_argument(f"--{dest}", dest=dest, **hidden)
    return action


def flag_field(default=None, help="", **argparse_kwargs):
    """A dataclass field with a flag: `help` and argparse keywords (type, choices, metavar)."""
    return dataclasses.field(default=default, metadata={"help": help, **argparse_kwargs})


def add_dataclass_flags(parser, cls):
    """One flag per field of the dataclass `cls`, default None (so that callers can tell a
    given flag from one left out and layer profiles under it); a bool field is --x/--no-x."""
    for field in dataclasses.fields(cls):
        kwargs = dict(field.metadata)
        if field.type is bool or bool in typing.get_args(field.type):
            kwargs["action"] = argparse.BooleanOptionalAction
        add_flag(parser, field.name, default=None, **kwargs)


def given_fields(args, cls):
    """{field: value} of the flags of `cls` given on the command line."""
    return {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if getattr(args, f.name, None) is not None}
DEVICE_SPELLINGS = "cpu, cuda or cuda:N"


def device_string(text):
    """A device this project runs on: cpu, cuda or cuda:N (torch's other device types, mps, xpu,
    meta, ..., are not supported by the backends and the trainer)."""
    if not re.fullmatch(r"cpu|cuda(:[0-9]+)?", text):
        raise argparse.ArgumentTypeError(f"unknown device {text!r}; use {DEVICE_SPELLINGS}")
    return text
