"""What every command shares: settings, the database check, Redis, and one-line failures.

A command that cannot run exits non-zero with one line on stderr saying what
to fix, never a traceback: ``fail()`` for reasons found by the command,
``one_line_errors`` for the exceptions of the layers below (database,
Redis, secret key, sockets).
"""

from __future__ import annotations

import errno
import functools
import ipaddress
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, NoReturn, ParamSpec, TypeVar
from urllib.parse import urlsplit

import typer
from pydantic import ValidationError

from shared.errors import BobbinError
from shared.settings import Settings

if TYPE_CHECKING:  # the database, Redis and crypto layers load only for commands that use them
    from shared.crypto import Cipher
    from shared.db import Database

P = ParamSpec("P")
T = TypeVar("T")

LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost"}


class CommandFailed(Exception):
    """A reason to stop, already phrased for the operator."""


def fail(message: str) -> NoReturn:
    raise CommandFailed(message)


def say_error(message: str) -> None:
    typer.echo(f"error: {_one_line(message)}", err=True)


def _one_line(message: str) -> str:
    return " ".join(message.split())


def one_line_errors(fn: Callable[P, T]) -> Callable[P, T]:
    """Turn the errors a command expects from its dependencies into one line and exit 1."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return fn(*args, **kwargs)
        except (typer.Exit, typer.Abort):
            raise
        except KeyboardInterrupt:
            raise typer.Exit(130) from None
        except Exception as exc:
            reason = describe(exc)
            if reason is None:
                raise
            say_error(reason)
            raise typer.Exit(1) from None

    return wrapper


def describe(exc: BaseException) -> str | None:
    """The one-line reason for an expected failure, or None for a bug (shown in full)."""
    if isinstance(exc, CommandFailed):
        return str(exc)
    if isinstance(exc, BobbinError):
        return exc.message
    import redis
    from sqlalchemy.exc import ArgumentError, InterfaceError, NoSuchModuleError, OperationalError

    if isinstance(exc, NoSuchModuleError | ArgumentError):
        return f"BOBBIN_DATABASE_URL is not a database URL Bobbin can use ({exc})"
    if isinstance(exc, OperationalError | InterfaceError):
        return database_failure(exc, "the database")
    if isinstance(exc, redis.RedisError):
        return f"Redis does not answer: {exc}"
    if isinstance(exc, OSError) and exc.errno == errno.EADDRINUSE:
        return (
            f"the address is already in use ({exc.strerror}): stop the other server or pick --port"
        )
    return None


def load_settings() -> Settings:
    """Settings from the environment as it is now (a command is one process start)."""
    try:
        return Settings()
    except ValidationError as exc:  # named by variable, never echoing a value (a secret?)
        reasons = [
            f"BOBBIN_{'_'.join(map(str, e['loc'])).upper()}: "
            + e["msg"].removeprefix("Value error, ")
            for e in exc.errors()
        ]
        fail("; ".join(reasons))


def safe_url(url: str) -> str:
    """The URL without its password, for messages."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url


def open_db(settings: Settings, *, loopback: bool = True) -> tuple[Database, Cipher]:
    """``shared.resources.open_database`` with one-line reasons when the database is down."""
    from sqlalchemy.exc import InterfaceError, OperationalError

    from shared.resources import open_database

    try:
        return open_database(settings, loopback=loopback)
    except (OperationalError, InterfaceError, OSError) as exc:
        fail(database_failure(exc, f"the database at {safe_url(settings.effective_database_url)}"))


def database_failure(exc: BaseException, which: str) -> str:
    """Why the database could not be used: it did not answer, or it answered no."""
    orig = getattr(exc, "orig", None) or exc
    first = (str(orig).strip().splitlines() or ["no detail"])[0]
    answered = any(mark in first for mark in ("FATAL:", "authentication", "permission denied"))
    return f"{which} {'refused the connection' if answered else 'does not answer'}: {first}"


@contextmanager
def database(settings: Settings, *, loopback: bool = True) -> Iterator[tuple[Database, Cipher]]:
    """``open_db`` for the length of a command."""
    db, cipher = open_db(settings, loopback=loopback)
    try:
        yield db, cipher
    finally:
        db.dispose()


def check_redis(settings: Settings, timeout_s: float = 2.0) -> None:
    if not redis_answers(settings.redis_url, timeout_s):
        port = urlsplit(settings.redis_url).port or 6379
        fail(
            f"Redis does not answer at {safe_url(settings.redis_url)}: start one "
            f"(e.g. `redis-server --port {port}`) or set BOBBIN_REDIS_URL"
        )


def redis_answers(url: str, timeout_s: float = 2.0) -> bool:
    import redis

    client = redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
    try:
        return bool(client.ping())
    except (redis.RedisError, OSError):
        return False
    finally:
        client.close()


def is_loopback(host: str) -> bool:
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def bind_socket(host: str, port: int) -> socket.socket:
    """Bind the server's socket now, so a port in use is a one-line failure before anything runs."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            fail(f"port {port} on {host} is already in use: stop the other server or pick --port")
        fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}")
    sock.set_inheritable(True)
    return sock


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def print_table(headers: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    """Plain aligned columns, never wrapped or cut (ids stay whole for copy and paste)."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows, strict=True)]
    for row in (headers, *rows):
        typer.echo("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
