"""The gunicorn entry point builds its app lazily, once per process."""
from __future__ import annotations

import json

import requests

from execution_engine2.config import Config
from execution_engine2.server import wsgi
from execution_engine2.server.app import close_app
from support.live_server import LiveServer
from support.rpc_methods import rpc


def test_importing_builds_nothing():
    assert wsgi.forget_app() is None


def test_the_app_is_built_on_first_use_and_served(tmp_path):
    config = Config.standalone(**{"data-dir": str(tmp_path), "maintenance-interval": 0})
    try:
        app = wsgi.get_app(config)
        assert wsgi.get_app() is app
        with LiveServer(wsgi.app) as live:
            response = requests.post(live.url, data=json.dumps(rpc("ver")), timeout=10)
        assert response.json()["result"] == ["0.0.15"]
    finally:
        built = wsgi.forget_app()
        if built is not None:
            close_app(built)
    assert wsgi.forget_app() is None
