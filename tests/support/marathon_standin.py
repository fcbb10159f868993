"""A stand-in for Marathon's HTTP API: Marathon (JVM, Mesos, ZooKeeper) cannot run here.

Written from Marathon's documented shapes, serving real HTTP on 127.0.0.1:

* ``GET /v2/apps?embed=apps.tasks``: ``{"apps": [{id, labels, portDefinitions, healthChecks, tasks: [{id,
  appId, host, ports, state, startedAt, healthCheckResults: [{alive}]}]}]}``;
* ``GET /v2/events`` (``Accept: text/event-stream``, repeated ``event_type=``): Server-Sent Events,
  chunked, ``event: <eventType>`` and ``data: <JSON>``, starting with ``event_stream_attached``;
* ``POST /v2/eventSubscriptions?callbackUrl=``: events are then POSTed there too (Marathon before 1.5);
* ``PUT``/``PATCH /v2/apps/<id>[?force=true]``: ``{deploymentId, version}``; 409 while a deployment
  holds the app; 422 for an invalid body.

The test drives it: :meth:`MarathonStandIn.set_task` changes a task and emits its
``status_update_event``; :attr:`silent` keeps streams open but sends nothing; :meth:`drop_streams`
closes them.
"""

from __future__ import annotations

import http.server
import json
import queue
import socket
import threading
import uuid
from datetime import datetime, timezone
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class MarathonStandIn:
    """Marathon's apps, tasks, event bus and app updates, in memory."""

    def __init__(self, bind: str = "127.0.0.1") -> None:
        self.apps: dict[str, dict[str, Any]] = {}
        self.locked: set[str] = set()
        self.received: list[tuple[str, str, dict[str, str], Any]] = []
        self.callbacks: list[str] = []
        self.silent = False
        self.streams_opened = 0
        self.app_reads = 0
        self._streams: list[queue.Queue[str | None]] = []
        self._lock = threading.Lock()
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()  # headers and body go out as separate writes: no Nagle delay between them
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                owner._get(self)

            def do_POST(self) -> None:  # noqa: N802
                owner._post(self)

            def do_PUT(self) -> None:  # noqa: N802
                owner._update(self, patch=False)

            def do_PATCH(self) -> None:  # noqa: N802
                owner._update(self, patch=True)

            def log_message(self, *_: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer((bind, 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> "MarathonStandIn":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.drop_streams()
        self.server.shutdown()
        self.server.server_close()

    # -- what the test changes -----------------------------------------------------------------

    def put_app(self, app_id: str, **definition: Any) -> dict[str, Any]:
        with self._lock:
            app = self.apps.setdefault(app_id, {"id": app_id, "instances": 0, "labels": {}, "portDefinitions": [], "tasks": []})
            app.update(definition)
        self.emit("api_post_event", {"uri": f"/v2/apps{app_id}", "appDefinition": self.public(app)})
        return app

    def set_task(self, app_id: str, task_id: str, host: str, ports: list[Any], state: str = "TASK_RUNNING",
                 alive: bool | None = None) -> None:
        """Add or change a task, then emit its ``status_update_event`` (as Marathon does)."""
        task = {"id": task_id, "appId": app_id, "host": host, "ports": ports, "state": state, "startedAt": now(),
                "version": now(), "healthCheckResults": [] if alive is None else [{"alive": alive, "taskId": task_id}]}
        with self._lock:
            tasks = [t for t in self.apps[app_id]["tasks"] if t["id"] != task_id]
            if state not in ("TASK_KILLED", "TASK_FINISHED", "TASK_FAILED", "TASK_LOST"):
                tasks.append(task)
            self.apps[app_id]["tasks"] = tasks
        self.emit("status_update_event", {"appId": app_id, "taskId": task_id, "taskStatus": state, "host": host,
                                          "ports": ports, "ipAddresses": [], "version": task["version"]})

    def set_health(self, app_id: str, task_id: str, alive: bool) -> None:
        with self._lock:
            for task in self.apps[app_id]["tasks"]:
                if task["id"] == task_id:
                    task["healthCheckResults"] = [{"alive": alive, "taskId": task_id}]
        self.emit("health_status_changed_event", {"appId": app_id, "instanceId": task_id, "alive": alive})

    def emit(self, event_type: str, data: dict[str, Any]) -> None:
        """Send an event to every open stream (unless silent) and every callback URL."""
        body = {"eventType": event_type, "timestamp": now(), **data}
        if not self.silent:
            with self._lock:
                for stream in self._streams:
                    stream.put(f"event: {event_type}\ndata: {json.dumps(body)}\n\n")
        for callback in list(self.callbacks):
            threading.Thread(target=self._post_callback, args=(callback, body), daemon=True).start()

    def drop_streams(self) -> None:
        with self._lock:
            for stream in self._streams:
                stream.put(None)

    @staticmethod
    def _post_callback(url: str, body: dict[str, Any]) -> None:
        try:
            requests.post(url, json=body, timeout=5)
        except requests.RequestException:
            pass

    def public(self, app: dict[str, Any], tasks: bool = False) -> dict[str, Any]:
        return {k: v for k, v in app.items() if k != "tasks" or tasks}

    # -- the HTTP API ----------------------------------------------------------------------------

    def _answer(self, handler: http.server.BaseHTTPRequestHandler, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    def _get(self, handler: http.server.BaseHTTPRequestHandler) -> None:
        url = urlsplit(handler.path)
        query = parse_qs(url.query)
        if url.path == "/v2/apps":
            with self._lock:
                self.app_reads += 1
                embed = "apps.tasks" in query.get("embed", [])
                apps = [self.public(app, tasks=embed) for app in self.apps.values()]
                self._answer(handler, 200, json.loads(json.dumps({"apps": apps})))
        elif url.path == "/v2/events" and "text/event-stream" in handler.headers.get("Accept", ""):
            self._stream(handler, set(query.get("event_type", [])))
        else:
            self._answer(handler, 404, {"message": f"URI not found: {url.path}"})

    def _stream(self, handler: http.server.BaseHTTPRequestHandler, types: set[str]) -> None:
        stream: queue.Queue[str | None] = queue.Queue()
        with self._lock:
            self._streams.append(stream)
            self.streams_opened += 1
        handler.send_response(200)
        handler.send_header("Content-Type", "text/event-stream")
        handler.send_header("Transfer-Encoding", "chunked")
        handler.end_headers()
        stream.put(f"event: event_stream_attached\ndata: {json.dumps({'eventType': 'event_stream_attached'})}\n\n")
        try:
            while (item := stream.get()) is not None:
                event_type = item.split("\n", 1)[0].removeprefix("event: ")
                if types and event_type not in types and event_type != "event_stream_attached":
                    continue
                data = item.encode()
                handler.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                handler.wfile.flush()
        except OSError:
            pass
        finally:
            with self._lock:
                self._streams.remove(stream)
            handler.close_connection = True

    def _post(self, handler: http.server.BaseHTTPRequestHandler) -> None:
        url = urlsplit(handler.path)
        callback = parse_qs(url.query).get("callbackUrl", [""])[0]
        if url.path != "/v2/eventSubscriptions" or not callback:
            self._answer(handler, 404 if url.path != "/v2/eventSubscriptions" else 400, {"message": "callbackUrl is required"})
            return
        if callback not in self.callbacks:
            self.callbacks.append(callback)
        self._answer(handler, 200, {"callbackUrl": callback, "clientIp": handler.client_address[0], "eventType": "subscribe_event"})

    def _update(self, handler: http.server.BaseHTTPRequestHandler, patch: bool) -> None:
        url = urlsplit(handler.path)
        app_id = url.path.removeprefix("/v2/apps")
        length = int(handler.headers.get("Content-Length") or 0)
        try:
            body = json.loads(handler.rfile.read(length) or b"null")
        except ValueError:
            self._answer(handler, 400, {"message": "Invalid JSON"})
            return
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        self.received.append(("PATCH" if patch else "PUT", app_id, query, body))
        if not isinstance(body, dict) or not isinstance(body.get("instances", 0), int) or body.get("instances", 0) < 0:
            self._answer(handler, 422, {"message": "Object is not valid", "details": [{"path": "/instances", "errors": ["must be >= 0"]}]})
            return
        if app_id in self.locked and query.get("force") != "true":
            self._answer(handler, 409, {
                "message": "App is locked by one or more deployments. Override with the option '?force=true'. "
                           "View details at '/v2/deployments/<DEPLOYMENT_ID>'.",
                "deployments": [{"id": "5ed4c0c5-9ff8-4a6f-a0cd-f57f59a34b43"}],
            })
            return
        if patch and app_id not in self.apps:
            self._answer(handler, 404, {"message": f"App '{app_id}' does not exist"})
            return
        created = app_id not in self.apps
        self.put_app(app_id, **{k: v for k, v in body.items() if k != "id"})
        self._answer(handler, 201 if created else 200, {"deploymentId": str(uuid.uuid4()), "version": now()})
