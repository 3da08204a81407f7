"""The one exception type for mistakes a user can fix (bad name, bad fold, missing file).

Command-line entry points catch it and print its message as a single line instead of a
traceback; library code raises it with a message that names the problem and the fix.
"""
import contextlib
import functools
import os
import signal
import sys
import threading


class UserError(Exception):
    """A problem with the user's input, described in one line."""


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP (docker stop, systemd, Slurm preemption, a closed terminal), raised as
    a kind of KeyboardInterrupt so that every Ctrl-C path (stop the child jobs, let them save,
    write the summary) runs for it too."""

    def __init__(self, signum):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


_HANDLING_PID = []  # the process that installed the handler; forked workers inherit it


def _raise_terminated(signum, frame):
    if os.getpid() not in _HANDLING_PID:  # a forked worker (multiprocessing.Pool): end as by default
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
        return
    raise Terminated(signum)


@contextlib.contextmanager
def termination_as_interrupt():
    """Within the block, SIGTERM and SIGHUP raise `Terminated` (signals reach the main thread
    only: elsewhere the block changes nothing)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _HANDLING_PID.append(os.getpid())
    before = {signum: signal.signal(signum, _raise_terminated) for signum in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for signum, handler in before.items():
            signal.signal(signum, handler)
        _HANDLING_PID.pop()


def cli_main(main):
    """Decorate a script's main(): a UserError or an OSError becomes `error: ...` on stderr and
    exit code 2; Ctrl-C exits 130, SIGTERM 143 and SIGHUP 129 (128 + the signal), after the
    same clean-up."""

    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        try:
            with termination_as_interrupt():
                return main(*args, **kwargs)
        except UserError as err:
            print(f"error: {err}", file=sys.stderr)
            sys.exit(2)
        except OSError as err:  # a file system problem the checks up front did not foresee
            where = f"{err.filename}: " if err.filename is not None else ""
            print(f"error: {where}{err.strerror or err}", file=sys.stderr)
            sys.exit(2)
        except Terminated as err:
            print(f"stopped by {err}", file=sys.stderr)
            sys.exit(128 + err.signum)
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            sys.exit(130)

    return wrapper
