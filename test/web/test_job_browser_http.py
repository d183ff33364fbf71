"""How the service serves the job browser's files over HTTP (no browser needed)."""
from __future__ import annotations

import re

import requests

from execution_engine2.server.app import WEB_DIR


def test_jobs_redirects_to_the_page_relative_to_the_service(service):
    response = requests.get(service.url + "jobs", allow_redirects=False, timeout=10)
    assert response.status_code == 302
    assert response.headers["Location"] == "jobs/"  # relative: works behind a path prefix


def test_the_page_and_every_file_it_names_are_served(service):
    page = requests.get(service.url + "jobs/", timeout=10)
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    assert "<h1>Job browser</h1>" in page.text
    names = set(re.findall(r'(?:src|href)="([\w.]+\.(?:js|css))"', page.text))
    for source in WEB_DIR.glob("*.js"):  # modules imported by other modules
        names |= set(re.findall(r'from "\./([\w.]+\.js)"', source.read_text()))
    assert {"jobs.js", "jobs.css", "api.js", "dom.js", "detail.js", "retry.js"} <= names
    for name in names:
        response = requests.get(service.url + "jobs/" + name, timeout=10)
        assert response.status_code == 200, name
        assert response.content == (WEB_DIR / name).read_bytes()
        kind = "text/css" if name.endswith(".css") else "text/javascript"
        assert response.headers["Content-Type"].startswith(kind), name  # modules need a JS type


def test_rpc_calls_to_the_page_path_still_reach_the_service(service):
    body = {"version": "1.1", "id": "7", "method": "execution_engine2.ver", "params": []}
    for path in ("jobs", "jobs/", "jobs/jobs.js"):
        response = requests.post(service.url + path, json=body, timeout=10)
        assert response.status_code == 200 and response.json()["id"] == "7", path


def test_missing_files_get_a_json_error_not_a_page(service):
    for path in ("jobs/nothing.js", "jobs/..%2Fconfig.py", "jobs/../server/app.py"):
        response = requests.get(service.url + path, timeout=10)
        assert response.status_code == 500, path
        assert response.headers["Content-Type"] == "application/json"
        assert response.json()["error"]["code"] in (-32600, -32700)  # not found / a GET to the RPC URL
        assert "import" not in response.text
