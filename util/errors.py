"""The one exception type for mistakes a user can fix (bad name, bad fold, missing file).

Command-line entry points catch it and print its message as a single line instead of a
traceback; library code raises it with a message that names the problem and the fix.
"""
import functools
import sys


class UserError(Exception):
    """A problem with the user's input, described in one line."""


def cli_main(main):
    """Decorate a script's main(): a UserError, or an OSError about a file, becomes `error: ...`
    on stderr and exit code 2."""

    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except UserError as err:
            print(f"error: {err}", file=sys.stderr)
            sys.exit(2)
        except OSError as err:  # a file system problem the checks up front did not foresee
            if err.filename is None:
                raise
            print(f"error: {err.filename}: {err.strerror}", file=sys.stderr)
            sys.exit(2)
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            sys.exit(130)

    return wrapper
