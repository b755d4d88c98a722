"""How a `peam` command ends: a user's problem is one line on stderr and exit code 2, Ctrl-C is
exit code 130 (128 + SIGINT, as shells report it); tracebacks are left for bugs.

A database that fails while a command runs (a file damaged past its header, a server that
went away) is the user's to mend too, so it gets the same one line as an error at open.
"""

from __future__ import annotations

import sys

from envs.errors import PeamError

INTERRUPTED = 130


def fail(message: str, code: int = 2) -> None:
    print(f"peam: error: {message}", file=sys.stderr)
    sys.exit(code)


def run_cli(app) -> None:
    """Run the Typer `app` as a command line and turn what it raises into an exit code."""
    import typer

    try:
        code = app(standalone_mode=False)
    except typer.Abort:  # end of input at a prompt
        sys.exit(1)
    except typer.TyperException as exc:  # the parser's errors (typer's vendored click)
        ctx = getattr(exc, "ctx", None)
        if exc.exit_code != 2 or type(exc).__name__ == "NoArgsIsHelpError":
            exc.show()  # `peam` alone: the help is the answer
            sys.exit(exc.exit_code)
        where = f"`{ctx.command_path} --help`" if ctx is not None else "`peam --help`"
        fail(f"{exc.format_message()} (see {where})")
    except PeamError as exc:
        fail(str(exc), exc.exit_code)
    except KeyboardInterrupt:  # typer maps a Ctrl-C inside a command to exit 130 itself
        code = INTERRUPTED
    except Exception as exc:
        message = _database_failure(exc)
        if message is None:
            raise
        fail(message)
    if code == INTERRUPTED:
        print("peam: interrupted", file=sys.stderr)
    sys.exit(code if isinstance(code, int) else 0)


def _database_failure(exc: Exception) -> str | None:
    if "sqlalchemy" not in sys.modules:  # nothing to look for: keep --help light
        return None
    from sqlalchemy.exc import DBAPIError

    from memory.db import db_failure

    return db_failure(exc) if isinstance(exc, DBAPIError) else None
