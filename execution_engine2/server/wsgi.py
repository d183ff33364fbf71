"""The gunicorn entry point: ``execution_engine2.server.wsgi:app``.

    KB_DEPLOYMENT_CONFIG=deploy.cfg gunicorn -c python:execution_engine2.server.gunicorn_conf \
        execution_engine2.server.wsgi:app

Importing this module builds nothing. The real app (store connections,
clients) is built on first use in the process that serves, i.e. in each
gunicorn worker after the fork (``gunicorn_conf.post_worker_init`` builds it
and starts its background threads), so no connection crosses a fork even with
``--preload``.
"""
from __future__ import annotations

import logging
import threading
from typing import Any, Callable, Iterable

import flask

from execution_engine2.config import Config, load
from execution_engine2.logformat import formatter

_lock = threading.Lock()
_app: flask.Flask | None = None
_OURS = "_ee2_handler"  # marks the handlers configure_logging made


def configure_logging(debug: bool = False, log_format: str = "text") -> None:
    """Log to stderr (``log-format``: text or JSON lines) unless the process already
    has handlers (entry points only; under gunicorn with JSON, gunicorn_conf set them)."""
    handler = logging.StreamHandler()
    handler.setFormatter(formatter(log_format))
    setattr(handler, _OURS, True)
    logging.basicConfig(level=logging.DEBUG if debug else logging.INFO, handlers=[handler])
    # Third-party chatter stays at INFO even with debug on.
    for noisy in ("urllib3", "pymongo"):
        logging.getLogger(noisy).setLevel(logging.INFO)


def use_log_format(log_format: str) -> None:
    """Switch the handlers ``configure_logging`` made to ``log_format`` (once the
    configuration, read after logging started, names one)."""
    for handler in logging.getLogger().handlers:
        if getattr(handler, _OURS, False):
            handler.setFormatter(formatter(log_format))


def get_app(config: Config | None = None) -> flask.Flask:
    """The process's app, built once (from ``load()`` unless ``config`` is given)."""
    global _app
    with _lock:
        if _app is None:
            from execution_engine2.server.app import create_app
            from execution_engine2.wiring import build_services

            config = config or load()
            configure_logging(config.debug, config.log_format)
            services = build_services(config)
            try:
                _app = create_app(config, services)
            except BaseException:
                services.store.close()
                raise
        return _app


def forget_app() -> flask.Flask | None:
    """Drop the process's app (after closing it) and return it."""
    global _app
    with _lock:
        app, _app = _app, None
        return app


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """WSGI callable that builds the real app on first use."""
    return get_app()(environ, start_response)
