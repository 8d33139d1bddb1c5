"""Storage and tracking URLs: defaults, checks without connecting, and password masking.

Kept free of Optuna and MLflow imports, so the command line rejects a bad URL at once.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from core.study.errors import DEFAULT_STORAGE, DEFAULT_TRACKING_URI, StorageError

STORAGE_SCHEMES = ("sqlite", "postgresql", "mysql")
# SQLAlchemy's synchronous drivers for each scheme and the module each imports (to list the
# installed ones when a URL names a missing one).
DRIVERS = {
    "postgresql": {"psycopg2": "psycopg2", "psycopg": "psycopg", "pg8000": "pg8000"},
    "mysql": {"mysqldb": "MySQLdb", "pymysql": "pymysql", "mysqlconnector": "mysql.connector"},
}


def mask_url(url: str) -> str:
    """The URL with any password replaced by ``***`` (safe for logs, tags and reports)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if parts.password is None and "password=" not in parts.query:
        return url  # unchanged (urlunsplit would also drop the '//' of sqlite:///PATH)
    if parts.password is not None:
        parts = parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@", 1))
    if "password=" in parts.query:
        # libpq also reads a password from the query string.
        query = "&".join(
            "password=***" if item.startswith("password=") else item
            for item in parts.query.split("&")
        )
        parts = parts._replace(query=query)
    return urlunsplit(parts)


def _scheme(url: str, flag: str) -> str:
    """The URL's scheme; an unparsable URL (an unclosed IPv6 bracket) is one line."""
    try:
        return urlsplit(url).scheme if "://" in url else ""
    except ValueError as error:
        raise StorageError(f"{flag} {url!r} is not a valid URL ({error})") from None


def check_storage_url(url: str) -> str:
    """Validate a storage URL without connecting or creating anything (the default's
    ``runs/`` is made by ``create_default_directory`` once every check has passed)."""
    scheme = _scheme(url, "--storage")
    base = scheme.split("+", 1)[0]
    if base not in STORAGE_SCHEMES:
        raise StorageError(
            f"--storage must be a sqlite:///PATH, postgresql+psycopg2://USER@HOST/DB or "
            f"mysql+pymysql://... URL; got {mask_url(url)!r}"
        )
    if base == "sqlite":
        path = url.split(":///", 1)[1] if ":///" in url else ""
        if not path or path == ":memory:":
            raise StorageError(
                f"--storage sqlite URL must name a file, as sqlite:///runs/optuna.db; got {url!r}"
            )
        if path.endswith("/") or Path(path).is_dir():
            raise StorageError(
                f"--storage {url!r} names a directory; it must name a database file, "
                "as sqlite:///runs/optuna.db"
            )
        parent = Path(path).parent
        if url != DEFAULT_STORAGE and not parent.is_dir():
            raise StorageError(
                f"--storage {url!r}: directory {str(parent)!r} does not exist; create it first"
            )
    else:
        check_driver(url)
    return url


def create_default_directory(url: str) -> None:
    """Make ``runs/`` for the default storage or tracking URI (after the checks pass)."""
    if url in (DEFAULT_STORAGE, DEFAULT_TRACKING_URI):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)


def check_driver(url: str, flag: str = "--storage") -> None:
    """The URL's database driver is one SQLAlchemy knows and is installed here (SQLAlchemy
    names the default driver of a bare ``postgresql://``: psycopg 3 since 2.1)."""
    from sqlalchemy.engine.url import make_url

    scheme = _scheme(url, flag)
    base = scheme.split("+", 1)[0]
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    allowed = ", ".join(f"{base}+{name}" for name in DRIVERS[base])
    try:
        dialect = make_url(url).get_dialect()
    except NoSuchModuleError:
        driver = scheme.partition("+")[2]
        raise StorageError(
            f"{flag} {mask_url(url)!r}: unknown driver {driver!r}; allowed: {allowed}"
        ) from None
    except (ArgumentError, ValueError) as error:
        raise StorageError(f"{flag} {mask_url(url)!r}: not a database URL ({error})") from None
    try:
        dialect.import_dbapi()
    except ImportError as error:
        named = "" if "+" in scheme else f", the default for {base}://,"
        present = [f"{base}+{name}" for name, module in DRIVERS[base].items() if _has(module)]
        raise StorageError(
            f"{flag} {mask_url(url)!r}: driver {dialect.driver!r}{named} needs the Python "
            f"module {error.name or error}, which is not installed; installed drivers for "
            f"{base}: {', '.join(present) or 'none'} (allowed: {allowed})"
        ) from None


def _has(module: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(module) is not None
    except ImportError:  # the parent package of a dotted name is missing
        return False


def probe_database(url: str, flag: str = "--storage", *, tables: bool = False) -> set[str]:
    """Connect once to a database server (not a SQLite file) and fail in one line; with
    ``tables``, return the names of its tables."""
    if url.startswith("sqlite"):
        return set()
    import sqlalchemy

    # A server that does not answer fails in seconds, not at the system's TCP timeout.
    try:
        driver = sqlalchemy.engine.make_url(url).get_dialect().driver
        wait = {"connect_timeout": 10} if driver in ("psycopg2", "psycopg") else {}
        engine = sqlalchemy.create_engine(
            url, poolclass=sqlalchemy.pool.NullPool, connect_args=wait
        )
        try:
            with engine.connect() as connection:
                return set(sqlalchemy.inspect(connection).get_table_names()) if tables else set()
        finally:
            engine.dispose()
    except Exception as error:  # the driver's many kinds of refusal
        raise StorageError(database_message(url, error, flag)) from None


MLFLOW_TABLES = {"alembic_version", "experiments", "runs", "metrics", "params", "tags"}


def ui_database_problem(uri: str, tables: set[str]) -> str | None:
    """Why a database with ``tables`` cannot back the MLflow UI, or None."""
    if tables >= MLFLOW_TABLES:
        return None
    what = "holds no MLflow store" if not tables else "holds tables, but not MLflow's"
    return f"--tracking-uri {mask_url(uri)!r}: the database {what}; run a study against it first"


def sqlite_tables(path: Path) -> set[str] | None:
    """The tables of SQLite file ``path`` (read-only), or None when it is no SQLite
    database; an empty file has none."""
    import sqlite3

    if path.stat().st_size == 0:
        return set()
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            return {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
    except sqlite3.DatabaseError:
        return None


def database_message(url: str, error: Exception, flag: str = "--storage") -> str:
    text = (str(error).strip().splitlines() or [""])[0]
    password = urlsplit(url).password
    if password:
        text = text.replace(password, "***")
    return f"{flag} {mask_url(url)!r} cannot be opened: {type(error).__name__}: {text[:300]}"


def check_tracking_uri(uri: str) -> str:
    """Validate an MLflow tracking URI, a local SQLite file or an http(s) server, without
    creating anything (see ``create_default_directory``)."""
    scheme = _scheme(uri, "--tracking-uri")
    if scheme in ("http", "https"):
        if not urlsplit(uri).hostname:
            raise StorageError(
                f"--tracking-uri must name a host, as http://HOST:PORT; got {uri!r}"
            )
        return uri
    if scheme == "sqlite" and uri.startswith("sqlite:///") and len(uri) > len("sqlite:///"):
        path = Path(uri.removeprefix("sqlite:///"))
        parent = path.parent
        if uri.endswith("/") or path.is_dir():
            raise StorageError(
                f"--tracking-uri {uri!r} names a directory; it must name a database file, "
                "as sqlite:///runs/mlflow.db"
            )
        kind = _store_kind(path) if path.is_file() else "mlflow"
        if kind == "other":
            raise StorageError(
                f"--tracking-uri {uri!r}: {str(path)!r} is not a SQLite database; use another file"
            )
        if kind == "database":
            raise StorageError(
                f"--tracking-uri {uri!r}: {str(path)!r} is a database but not an MLflow store "
                "(is it the Optuna storage?); use another file"
            )
        if uri != DEFAULT_TRACKING_URI and not parent.is_dir():
            raise StorageError(
                f"--tracking-uri {uri!r}: directory {str(parent)!r} does not exist; "
                "create it first"
            )
        return uri
    raise StorageError(
        f"--tracking-uri must be sqlite:///PATH.db or http(s)://HOST:PORT; got {mask_url(uri)!r}"
    )


def _store_kind(path: Path) -> str:
    """ "mlflow" for an empty file, a SQLite database without tables (another worker has
    just created it) or one holding MLflow's tables; "database" for another SQLite
    database; "other" for a file that is no SQLite database."""
    tables = sqlite_tables(path)
    if tables is None:
        return "other"
    return "mlflow" if not tables or {"experiments", "runs"} <= tables else "database"


def check_distinct(storage_url: str, tracking_uri: str | None) -> None:
    """Optuna and MLflow must not share one SQLite file (their schemas collide)."""
    if tracking_uri is None or not storage_url.startswith("sqlite:///"):
        return
    if not tracking_uri.startswith("sqlite:///"):
        return
    storage = Path(storage_url.removeprefix("sqlite:///")).resolve()
    tracking = Path(tracking_uri.removeprefix("sqlite:///")).resolve()
    if storage == tracking:
        raise StorageError(
            f"--storage and --tracking-uri name the same file {str(storage)!r}; Optuna and "
            "MLflow each need their own database"
        )


def probe_tracking_server(uri: str, timeout: float = 10.0) -> None:
    """Fail fast, in one line, when an http(s) tracking server does not answer.

    Credentials in the URI (http://USER:PASSWORD@HOST:PORT), as MLflow's own client accepts
    them, or in MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD (or
    MLFLOW_TRACKING_TOKEN) go with the request as MLflow would send them."""
    parts = urlsplit(uri)
    if parts.scheme not in ("http", "https"):
        return
    import urllib.error
    import urllib.request

    host = f"[{parts.hostname}]" if ":" in (parts.hostname or "") else parts.hostname
    netloc = f"{host}:{parts.port}" if parts.port else str(host)
    url = urlunsplit(parts._replace(netloc=netloc)).rstrip("/") + "/health"
    request = urllib.request.Request(url, headers=_auth_headers(parts))
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=timeout) as response:
            response.read()
    except urllib.error.HTTPError as error:
        raise StorageError(
            f"--tracking-uri {mask_url(uri)!r}: the server answered {error.code} "
            f"{error.reason} to /health; check the URI and its credentials"
        ) from None
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise StorageError(
            f"--tracking-uri {mask_url(uri)!r}: the MLflow server does not answer ({reason}); "
            "start it first"
        ) from None


def _auth_headers(parts) -> dict[str, str]:
    import base64
    import os
    from urllib.parse import unquote

    if parts.username is not None:
        user, password = unquote(parts.username), unquote(parts.password or "")
    elif os.environ.get("MLFLOW_TRACKING_USERNAME"):
        user = os.environ["MLFLOW_TRACKING_USERNAME"]
        password = os.environ.get("MLFLOW_TRACKING_PASSWORD", "")
    elif os.environ.get("MLFLOW_TRACKING_TOKEN"):
        return {"Authorization": f"Bearer {os.environ['MLFLOW_TRACKING_TOKEN']}"}
    else:
        return {}
    token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
    return {"Authorization": f"Basic {token}"}
