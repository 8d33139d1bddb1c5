"""Storage and tracking URLs: defaults, checks without connecting, and password masking.

Kept free of Optuna and MLflow imports, so the command line rejects a bad URL at once.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from core.study.errors import DEFAULT_STORAGE, DEFAULT_TRACKING_URI, StorageError

STORAGE_SCHEMES = ("sqlite", "postgresql", "mysql")


def mask_url(url: str) -> str:
    """The URL with any password replaced by ``***`` (safe for logs, tags and reports)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def check_storage_url(url: str) -> str:
    """Validate a storage URL without connecting; create ``runs/`` for the default."""
    scheme = urlsplit(url).scheme if "://" in url else ""
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
        parent = Path(path).parent
        if url == DEFAULT_STORAGE:
            parent.mkdir(parents=True, exist_ok=True)
        elif not parent.is_dir():
            raise StorageError(
                f"--storage {url!r}: directory {str(parent)!r} does not exist; create it first"
            )
    return url


def check_tracking_uri(uri: str) -> str:
    """Validate an MLflow tracking URI: a local SQLite file or an http(s) server."""
    scheme = urlsplit(uri).scheme
    if scheme in ("http", "https"):
        if not urlsplit(uri).hostname:
            raise StorageError(
                f"--tracking-uri must name a host, as http://HOST:PORT; got {uri!r}"
            )
        return uri
    if scheme == "sqlite" and uri.startswith("sqlite:///") and len(uri) > len("sqlite:///"):
        parent = Path(uri.removeprefix("sqlite:///")).parent
        if uri == DEFAULT_TRACKING_URI:
            parent.mkdir(parents=True, exist_ok=True)
        elif not parent.is_dir():
            raise StorageError(
                f"--tracking-uri {uri!r}: directory {str(parent)!r} does not exist; "
                "create it first"
            )
        return uri
    raise StorageError(
        f"--tracking-uri must be sqlite:///PATH.db or http(s)://HOST:PORT; got {mask_url(uri)!r}"
    )
