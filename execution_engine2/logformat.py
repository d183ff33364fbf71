"""Log line formats: ``log-format = text`` (the default) or ``json``.

With ``json`` every log line is one JSON object: ``time`` (ISO 8601, UTC), ``level``,
``logger``, ``pid``, ``message``, ``exception`` (a traceback, when there is one), and
for each answered request (logger ``execution_engine2.request``) ``request_id``,
``user``, ``method``, ``duration`` (seconds) and ``outcome``. gunicorn's own lines
(its access and error logs) use the same format (``logging_config``).
"""
from __future__ import annotations

import datetime
import json
import logging
from typing import Any

TEXT_FORMAT = "%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s"
# Fields a log call may add with ``extra=`` that a JSON line carries.
REQUEST_FIELDS = ("request_id", "user", "method", "duration", "outcome")


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.timezone.utc)
            .isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "pid": record.process,
            "message": record.getMessage(),
        }
        for field in REQUEST_FIELDS:
            if field in record.__dict__:
                line[field] = record.__dict__[field]
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exception"] = record.exc_text
        return json.dumps(line, default=str)


def formatter(log_format: str) -> logging.Formatter:
    return JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)


def logging_config(log_format: str, debug: bool) -> dict[str, Any]:
    """A ``logging.config.dictConfig`` (gunicorn's ``logconfig_dict``) that writes the
    root logger and gunicorn's error and access logs in ``log_format``."""
    chosen: dict[str, Any] = ({"()": f"{__name__}.JsonFormatter"} if log_format == "json"
                              else {"format": TEXT_FORMAT})
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"ee2": chosen},
        "handlers": {
            "stderr": {"class": "logging.StreamHandler", "formatter": "ee2",
                       "stream": "ext://sys.stderr"},
            "stdout": {"class": "logging.StreamHandler", "formatter": "ee2",
                       "stream": "ext://sys.stdout"},
        },
        "root": {"level": "DEBUG" if debug else "INFO", "handlers": ["stderr"]},
        "loggers": {
            "gunicorn.error": {"level": "DEBUG" if debug else "INFO", "handlers": ["stderr"],
                               "propagate": False},
            "gunicorn.access": {"level": "INFO", "handlers": ["stdout"], "propagate": False},
        },
    }


def startup_line(log_format: str, logger_name: str, message: str) -> str:
    """``message`` as printed before logging is set up: as is, or as a JSON line."""
    if log_format != "json":
        return message
    record = logging.LogRecord(logger_name, logging.INFO, __file__, 0, message, None, None)
    return JsonFormatter().format(record)
