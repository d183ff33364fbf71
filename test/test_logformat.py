"""Log line formats: a request's line in text and JSON, tracebacks kept on one JSON line,
and gunicorn's loggers configured like the service's."""
from __future__ import annotations

import json
import logging
import logging.config
import sys

import requests

from execution_engine2.logformat import JsonFormatter, logging_config, startup_line
from support.live_server import standalone_server


def test_each_answered_request_is_logged_with_id_user_method_duration_outcome(tmp_path, caplog):
    with standalone_server(tmp_path) as server:
        token = server.token("alice")
        caplog.set_level(logging.INFO, logger="execution_engine2.request")
        answer = requests.post(server.url, headers={"Authorization": token}, timeout=30, json={
            "version": "1.1", "id": "1", "method": "execution_engine2.check_job",
            "params": [{"job_id": "000000000000000000000000"}]})
    [record] = [r for r in caplog.records if r.name == "execution_engine2.request"]
    assert record.request_id == answer.headers["X-Request-Id"]
    assert (record.user, record.method, record.outcome) == ("alice", "check_job", "not_found")
    assert 0 <= record.duration < 30
    line = json.loads(JsonFormatter().format(record))
    assert {key: line[key] for key in ("request_id", "user", "method", "outcome")} == {
        "request_id": answer.headers["X-Request-Id"], "user": "alice", "method": "check_job",
        "outcome": "not_found"}
    assert line["logger"] == "execution_engine2.request" and line["level"] == "INFO"
    text = logging.Formatter("%(message)s").format(record)
    assert text.startswith(f"request {record.request_id}: check_job by alice in ") and text.endswith("not_found")
    assert token not in caplog.text


def test_a_traceback_stays_on_the_one_json_line():
    try:
        raise ValueError("broken\nacross lines")
    except ValueError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed %s", ("here",),
                                   exc_info=sys.exc_info())
    text = JsonFormatter().format(record)
    assert "\n" not in text
    line = json.loads(text)
    assert line["message"] == "failed here" and "ValueError: broken" in line["exception"]


def test_gunicorn_loggers_write_json_with_the_json_configuration(capsys):
    before = {name: (logging.getLogger(name).handlers[:], logging.getLogger(name).propagate)
              for name in ("gunicorn.error", "gunicorn.access")}
    root_handlers, root_level = logging.getLogger().handlers[:], logging.getLogger().level
    try:
        logging.config.dictConfig(logging_config("json", debug=False))
        logging.getLogger("gunicorn.error").info("Booting worker with pid: %s", 7)
        logging.getLogger("gunicorn.access").info("GET /metrics 200")
    finally:
        for name, (handlers, propagate) in before.items():
            logger = logging.getLogger(name)
            logger.handlers[:] = handlers
            logger.propagate = propagate
        logging.getLogger().handlers[:] = root_handlers
        logging.getLogger().setLevel(root_level)
    out, err = capsys.readouterr()
    assert json.loads(err.strip())["message"] == "Booting worker with pid: 7"
    assert json.loads(out.strip())["logger"] == "gunicorn.access"


def test_the_startup_line_follows_the_format():
    assert startup_line("text", "x", "starting") == "starting"
    assert json.loads(startup_line("json", "x", "starting"))["message"] == "starting"
