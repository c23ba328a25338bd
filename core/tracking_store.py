"""The MLflow store: which one, checked at start-up, and its experiment opened under a file lock.

:func:`resolve_tracking_uri` picks the store (configured URI, else ``$MLFLOW_TRACKING_URI``, else a local sqlite
``mlflow.db``); :func:`check_tracking` checks it before any work is spent (an ``http(s)://`` server must answer
within ``CONNECT_TIMEOUT_S``, later requests are bounded by ``HTTP_LIMITS`` unless set in the environment, a local
sqlite file must open); :func:`open_experiment` creates or finds the experiment, holding a file lock beside a local
sqlite store so that runs started together do not race in MLflow's schema creation. Every failure is one
:class:`~core.errors.RunError` naming the store.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Iterator

from core import distributed
from core.config import TrackingConfig
from core.errors import RunError

CONNECT_TIMEOUT_S = 5.0
HTTP_LIMITS = {"MLFLOW_HTTP_REQUEST_TIMEOUT": "30", "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2"}  # seconds, retries
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}


def resolve_tracking_uri(configured: str = "") -> str:
    """The tracking URI to use: the configured one, else ``$MLFLOW_TRACKING_URI``, else ``sqlite:///<cwd>/mlflow.db``."""
    if configured:
        return configured
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    return f"sqlite:///{Path.cwd().resolve() / 'mlflow.db'}"


def _artifact_location(uri: str) -> str | None:
    """Artifact folder beside a local sqlite store (``mlartifacts/``); None lets a server choose."""
    if uri.startswith("sqlite:///"):
        return (Path(uri[len("sqlite:///"):]).resolve().parent / "mlartifacts").as_uri()
    return None


def _sqlite_path(uri: str) -> Path | None:
    return Path(uri[len("sqlite:///"):]) if uri.startswith("sqlite:///") else None


@contextlib.contextmanager
def _store_lock(uri: str) -> Iterator[None]:
    """Serialise the creation of a local sqlite store and its experiments across processes (a no-op for servers)."""
    db = _sqlite_path(uri)
    if db is None:
        yield
        return
    db.parent.mkdir(parents=True, exist_ok=True)
    with open(db.with_name(db.name + ".lock"), "a+") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        yield


def check_tracking(cfg: TrackingConfig) -> str:
    """Check at start-up that the tracking store can be used; returns its URI.

    An ``http(s)://`` server must accept a connection within ``CONNECT_TIMEOUT_S`` seconds; a local store is opened
    (and created, under the store lock) and its experiment looked up. Disabled tracking is not checked.

    Raises:
        RunError: naming the store and what failed.
    """
    uri = resolve_tracking_uri(cfg.tracking_uri)
    if not cfg.enabled or not distributed.is_main_process():
        return uri
    if uri.startswith(("http://", "https://")):
        for key, value in HTTP_LIMITS.items():  # later requests: bounded too, unless the user set them
            os.environ.setdefault(key, value)
        try:
            urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=CONNECT_TIMEOUT_S).close()
        except urllib.error.HTTPError:
            pass  # it answered
        except (OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            raise RunError(f"the MLflow tracking server {uri} did not answer within {CONNECT_TIMEOUT_S:g} s ({reason}); "
                           "start it, pass another --tracking-uri, or set tracking.enabled=false") from None
    open_experiment(uri, cfg.experiment_name)
    return uri


def open_experiment(uri: str, name: str) -> tuple[Any, str]:
    """``(MlflowClient, experiment id)`` of experiment ``name`` in store ``uri``, created (with the
    model-training tag) if missing.

    Raises:
        RunError: if the store cannot be opened (a corrupt ``mlflow.db``, a server error), naming it.
    """
    from mlflow.tracking import MlflowClient

    for logger in ("mlflow.store.db.utils", "alembic.runtime.migration"):  # schema set-up chatter on a new store
        logging.getLogger(logger).setLevel(logging.WARNING)
    try:
        with _store_lock(uri):
            client = MlflowClient(tracking_uri=uri)
            experiment = client.get_experiment_by_name(name)
            if experiment is None:
                experiment_id = client.create_experiment(name, artifact_location=_artifact_location(uri),
                                                         tags=EXPERIMENT_KIND)
            else:
                experiment_id = experiment.experiment_id
                if experiment.tags.get("mlflow.experimentKind") is None:
                    for key, value in EXPERIMENT_KIND.items():
                        client.set_experiment_tag(experiment_id, key, value)
    except RunError:
        raise
    except Exception as exc:  # sqlalchemy, REST and file errors all mean: this store cannot be used
        first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
        raise RunError(f"cannot use the MLflow store {uri}: {type(exc).__name__}: {first} (repair or move the "
                       "store, pass another --tracking-uri, or set tracking.enabled=false)") from None
    return client, experiment_id
