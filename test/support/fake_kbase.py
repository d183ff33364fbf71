"""Small real HTTP stand-ins for the KBase auth, workspace and catalog services.

Each server listens on 127.0.0.1 on a port the OS picks, serves from a thread,
and is a context manager that shuts down cleanly::

    with FakeAuthServer() as auth:
        auth.add_token("tok", "alice", roles=["EE2_ADMIN"])
        KBaseAuth(auth.login_url, auth.url).authenticate("tok")

Tests change the tables at any time (methods take the lock). ``calls`` counts
requests per endpoint / JSON-RPC method, so tests can assert caching.
``fail_status`` makes every request answer that HTTP status with a non-JSON
body (a proxy error page); ``unreachable_url()`` names a closed port.
"""
from __future__ import annotations

import collections
import http.server
import json
import socket
import threading
import urllib.parse
from typing import Any, Iterable, Mapping, Sequence

ADMIN_LEVEL = "a"
LEVELS = ("n", "r", "w", "a")


def unreachable_url() -> str:
    """A URL on 127.0.0.1 where nothing listens (a port just released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


class _Answer(Exception):
    """Raised by handlers to answer with ``status`` and a JSON ``body``."""

    def __init__(self, status: int, body: Any) -> None:
        super().__init__(status)
        self.status = status
        self.body = body


class _HTTPServer(http.server.ThreadingHTTPServer):
    # Request threads are joined by server_close, so a stopped fake leaves none behind.
    daemon_threads = False
    block_on_close = True
    request_queue_size = 128  # concurrency tests open many connections at once


class FakeServer:
    """Base: a threaded HTTP server whose subclasses implement ``respond``."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.calls: collections.Counter[str] = collections.Counter()
        self.fail_status: int | None = None
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle ---------------------------------------------------------

    def start(self) -> "FakeServer":
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                fake._serve(self, "GET")

            def do_POST(self) -> None:
                fake._serve(self, "POST")

            def log_message(self, format: str, *args: Any) -> None:
                pass  # keep test output quiet

        self._httpd = _HTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._httpd.serve_forever, name=type(self).__name__,
                                        kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def __enter__(self) -> Any:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._httpd is not None, "server not started"
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def total_calls(self) -> int:
        with self.lock:
            return sum(self.calls.values())

    # --- request handling ------------------------------------------------------

    def _serve(self, handler: http.server.BaseHTTPRequestHandler, verb: str) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        token = handler.headers.get("Authorization")
        if self.fail_status is not None:
            self._send(handler, self.fail_status, b"<html>service unavailable</html>", "text/html")
            return
        try:
            status, answer = 200, self.respond(verb, urllib.parse.urlsplit(handler.path).path, token, body)
        except _Answer as reply:
            status, answer = reply.status, reply.body
        self._send(handler, status, json.dumps(answer).encode(), "application/json")

    @staticmethod
    def _send(handler: http.server.BaseHTTPRequestHandler, status: int, data: bytes, kind: str) -> None:
        handler.send_response(status)
        handler.send_header("Content-Type", kind)
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    def respond(self, verb: str, path: str, token: str | None, body: bytes) -> Any:
        raise NotImplementedError


# --- auth ------------------------------------------------------------------------

def _auth_error(status: int, appcode: int, apperror: str) -> _Answer:
    reason = {400: "Bad Request", 401: "Unauthorized"}.get(status, "Error")
    return _Answer(status, {"error": {"httpcode": status, "httpstatus": reason, "appcode": appcode,
                                      "apperror": apperror, "message": f"{appcode} {apperror}",
                                      "callid": "0", "time": 0}})


class FakeAuthServer(FakeServer):
    """KBase auth2: the legacy token check (``login_url``) and ``/api/V2/me``
    (``url`` is the auth2 base). ``calls``: ``login``, ``me``."""

    LOGIN_PATH = "/api/legacy/KBase/Sessions/Login"

    def __init__(self) -> None:
        super().__init__()
        self.tokens: dict[str, str] = {}  # token -> user
        self.roles: dict[str, list[str]] = {}  # user -> custom roles

    @property
    def login_url(self) -> str:
        return self.url + self.LOGIN_PATH

    def add_token(self, token: str, user: str, roles: Iterable[str] | None = None) -> None:
        with self.lock:
            self.tokens[token] = user
            if roles is not None:
                self.roles[user] = list(roles)

    def set_roles(self, user: str, roles: Iterable[str]) -> None:
        with self.lock:
            self.roles[user] = list(roles)

    def revoke(self, token: str) -> None:
        with self.lock:
            self.tokens.pop(token, None)

    def respond(self, verb: str, path: str, token: str | None, body: bytes) -> Any:
        if verb == "POST" and path == self.LOGIN_PATH:
            form = urllib.parse.parse_qs(body.decode())
            with self.lock:
                self.calls["login"] += 1
                user = self._user((form.get("token") or [""])[0])
            return {"user_id": user, "expires": 0, "cachefor": 300000}
        if verb == "GET" and path == "/api/V2/me":
            with self.lock:
                self.calls["me"] += 1
                user = self._user(token or "")
                return {"user": user, "display": user, "customroles": list(self.roles.get(user, [])),
                        "roles": []}
        raise _Answer(404, {"error": {"httpcode": 404, "message": f"no such path {path}"}})

    def _user(self, token: str) -> str:
        if not token:
            raise _auth_error(400, 10010, "No authentication token")
        if token not in self.tokens:
            raise _auth_error(401, 10020, "Invalid token")
        return self.tokens[token]


# --- JSON-RPC services -----------------------------------------------------------

class RpcFailure(Exception):
    """Raised by a fake JSON-RPC method: answered as a KBase error envelope (HTTP 500)."""


class FakeJsonRpcServer(FakeServer):
    """A KBase JSON-RPC 1.1 service; subclasses name methods in ``methods()``.
    ``fail_with`` (a message) makes every call answer that error."""

    def __init__(self) -> None:
        super().__init__()
        self.fail_with: str | None = None

    def methods(self) -> Mapping[str, Any]:
        raise NotImplementedError

    def respond(self, verb: str, path: str, token: str | None, body: bytes) -> Any:
        request = json.loads(body or b"{}")
        name, call_id = request.get("method"), request.get("id")
        params = request.get("params") or [None]
        with self.lock:
            self.calls[name] += 1
            try:
                if self.fail_with is not None:
                    raise RpcFailure(self.fail_with)
                method = self.methods().get(name)
                if method is None:
                    raise _Answer(500, _envelope(call_id, -32601, "Method not found", name))
                result = method(params[0], token)
            except RpcFailure as err:
                raise _Answer(500, _envelope(call_id, -32500, "JSONRPCError", str(err)))
        return {"version": "1.1", "id": call_id, "result": [result]}


def _envelope(call_id: Any, code: int, name: str, message: str) -> dict[str, Any]:
    return {"version": "1.1", "id": call_id,
            "error": {"name": name, "code": code, "message": message, "error": "Traceback: fake"}}


class FakeWorkspaceServer(FakeJsonRpcServer):
    """The workspace's ``get_permissions_mass`` and ``get_object_info3``.

    Tables: ``tokens`` (token -> user), ``permissions`` ((wsid, user) -> n/r/w/a),
    ``public`` (wsids readable by anybody), ``objects`` (readable refs ``W/O/V``).
    A workspace exists once anything names it. As the real service does, a caller
    sees every user's right on a workspace it administers, else only its own and
    the public ``*`` one.
    """

    def __init__(self) -> None:
        super().__init__()
        self.tokens: dict[str, str] = {}
        self.permissions: dict[tuple[int, str], str] = {}
        self.public: set[int] = set()
        self.workspaces: set[int] = set()
        self.objects: set[str] = set()

    def add_token(self, token: str, user: str) -> None:
        with self.lock:
            self.tokens[token] = user

    def set_permission(self, wsid: int, user: str, level: str) -> None:
        assert level in LEVELS, level
        with self.lock:
            self.workspaces.add(wsid)
            self.permissions[(wsid, user)] = level

    def set_public(self, wsid: int, public: bool = True) -> None:
        with self.lock:
            self.workspaces.add(wsid)
            (self.public.add if public else self.public.discard)(wsid)

    def add_object(self, ref: str) -> None:
        with self.lock:
            self.workspaces.add(int(ref.split("/")[0]))
            self.objects.add(ref)

    def methods(self) -> Mapping[str, Any]:
        return {"Workspace.get_permissions_mass": self._permissions_mass,
                "Workspace.get_object_info3": self._object_info}

    def _caller(self, token: str | None) -> str | None:
        if token is None:
            return None
        if token not in self.tokens:
            raise RpcFailure("Token validation failed: Invalid token")
        return self.tokens[token]

    def _level(self, wsid: int, user: str | None) -> str:
        return self.permissions.get((wsid, user), "n") if user else "n"

    def _permissions_mass(self, params: Mapping[str, Any], token: str | None) -> Any:
        user = self._caller(token)
        perms = []
        for entry in params["workspaces"]:
            wsid = entry["id"]
            if wsid not in self.workspaces:
                raise RpcFailure(f"No workspace with id {wsid} exists")
            if self._level(wsid, user) == ADMIN_LEVEL:
                shown = {name: level for (ws, name), level in self.permissions.items()
                         if ws == wsid and level != "n"}
            else:
                shown = {user: self._level(wsid, user)} if self._level(wsid, user) != "n" else {}
            if wsid in self.public:
                shown["*"] = "r"
            perms.append(shown)
        return {"perms": perms}

    def _object_info(self, params: Mapping[str, Any], token: str | None) -> Any:
        user = self._caller(token)
        infos: list[Any] = []
        paths: list[Any] = []
        for entry in params["objects"]:
            ref = entry["ref"]
            wsid = int(ref.split("/")[0])
            readable = wsid in self.public or self._level(wsid, user) != "n"
            if not (readable and ref in self.objects):
                if not params.get("ignoreErrors"):
                    raise RpcFailure(f"Object {ref} cannot be accessed: User {user} may not read "
                                     f"workspace {wsid}")
                infos.append(None)
                paths.append(None)
                continue
            ws, obj, ver = (int(part) for part in ref.split("/"))
            infos.append([obj, f"object{obj}", "Fake.Type-1.0", "2024-01-01T00:00:00+0000", ver,
                          "owner", ws, f"ws{ws}", "0" * 32, 10, {}])
            paths.append([ref])
        return {"infos": infos, "paths": paths}


class FakeCatalogServer(FakeJsonRpcServer):
    """The catalog's ``get_module_version``, ``list_client_group_configs`` and
    ``log_exec_stats``.

    ``versions``: module -> list of {git_commit_hash, version, release_tags};
    ``client_group_configs``: (module, function) -> list of configs (more than
    one is a catalog inconsistency tests can create); ``exec_stats``: every
    ``log_exec_stats`` call's params; ``admin_token``: when set, only that token
    may log stats.
    """

    def __init__(self) -> None:
        super().__init__()
        self.versions: dict[str, list[dict[str, Any]]] = {}
        self.client_group_configs: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self.exec_stats: list[dict[str, Any]] = []
        self.admin_token: str | None = None

    def add_version(self, module: str, git_commit_hash: str, version: str,
                    tags: Sequence[str] = ()) -> None:
        with self.lock:
            for entry in self.versions.get(module, []):
                entry["release_tags"] = [tag for tag in entry["release_tags"] if tag not in tags]
            self.versions.setdefault(module, []).append(
                {"git_commit_hash": git_commit_hash, "version": version, "release_tags": list(tags)})

    def move_tag(self, module: str, tag: str, git_commit_hash: str) -> None:
        with self.lock:
            for entry in self.versions[module]:
                tags = [t for t in entry["release_tags"] if t != tag]
                if entry["git_commit_hash"] == git_commit_hash:
                    tags.append(tag)
                entry["release_tags"] = tags

    def set_client_groups(self, module: str, function: str, client_groups: list[str] | None) -> None:
        """One configuration for the method (None: none at all)."""
        with self.lock:
            if client_groups is None:
                self.client_group_configs.pop((module, function), None)
            else:
                self.client_group_configs[(module, function)] = [
                    {"module_name": module, "function_name": function, "client_groups": client_groups}]

    def methods(self) -> Mapping[str, Any]:
        return {"Catalog.get_module_version": self._module_version,
                "Catalog.list_client_group_configs": self._client_groups,
                "Catalog.log_exec_stats": self._log_exec_stats}

    def _module_version(self, params: Mapping[str, Any], token: str | None) -> Any:
        module, version = params["module_name"], params.get("version") or "release"
        if module not in self.versions:
            raise RpcFailure("Module cannot be found based on module_name or git_url parameters.")
        for entry in self.versions[module]:
            if version in entry["release_tags"] or version in (entry["version"], entry["git_commit_hash"]):
                return {"module_name": module, "version": entry["version"],
                        "git_commit_hash": entry["git_commit_hash"],
                        "docker_img_name": f"dockerhub-ci.kbase.us/kbase:{module.lower()}."
                                           f"{entry['git_commit_hash']}",
                        "release_tags": list(entry["release_tags"]), "dynamic_service": 0}
        raise RpcFailure(f"No module version found that matches version {version}")

    def _client_groups(self, params: Mapping[str, Any], token: str | None) -> Any:
        return [dict(config) for config in
                self.client_group_configs.get((params["module_name"], params["function_name"]), [])]

    def _log_exec_stats(self, params: Mapping[str, Any], token: str | None) -> Any:
        if self.admin_token is not None and token != self.admin_token:
            raise RpcFailure("Only Admins can log execution statistics")
        self.exec_stats.append(dict(params))
        return None
