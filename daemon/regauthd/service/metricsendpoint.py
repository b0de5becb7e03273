"""``[metrics] listen``: the daemon's metrics at ``http://ADDRESS/metrics``, for a Prometheus
that scrapes hosts directly instead of through node_exporter's textfile collector.

A daemon component (:class:`regauthd.service.component.Component`) that ``service/app.py`` hosts
first when ``listen`` is set, so it starts before the others and stops after them; a reload
moves or closes it (opening one where none was set needs a restart, as for probes). The
server is prometheus_client's (``start_http_server``: a WSGI server on a daemon thread, one
thread per request) over the private registry of :class:`~regauthd.alerts.metrics.Metrics`;
every scrape renders a fresh snapshot. A listen address that cannot be bound is logged
(``metrics.listen_failed``) and the daemon goes on with the textfile: metrics must never stop
the repairs.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import threading
from typing import TYPE_CHECKING

import structlog

from regauthd.alerts.metrics import Metrics
from regauthd.settings import Settings

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

log = structlog.get_logger("regauthd")


class MetricsEndpoint:
    """Serves ``metrics`` on ``settings.metrics.listen`` while the daemon runs (loop thread)."""

    name = "metrics"

    def __init__(self, settings: Settings, metrics: Metrics) -> None:
        self._listen = settings.metrics.listen
        self._metrics = metrics
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> tuple[str, int] | None:
        """Where it listens now (the bound port when the setting asked for a free one)."""
        if self._server is None:
            return None
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def start(self) -> None:
        if self._listen is None or self._server is not None:
            return
        from prometheus_client import start_http_server  # noqa: PLC0415 - lazy: only when set

        host, port = self._listen
        try:
            self._server, self._thread = start_http_server(
                port, addr=host, registry=self._metrics.collector_registry()
            )
        except OSError as exc:
            log.error(
                "metrics.listen_failed", address=_shown(host, port), reason=exc.strerror or str(exc)
            )
            return
        bound = self.address or (host, port)
        log.info(
            "metrics.listening",
            url=f"http://{_shown(*bound)}/metrics",
            loopback=ipaddress.ip_address(host).is_loopback,
        )

    def reload(self, settings: Settings) -> None:
        """A new ``listen``: close the old listener, open the new one."""
        if settings.metrics.listen == self._listen:
            return
        self.stop()
        self._listen = settings.metrics.listen
        self.start()

    def stop(self) -> None:
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is None:
            return
        # shutdown() waits for serve_forever to look at its flag, which it does after each
        # request or every 0.5 s: one connection wakes it now, so stop takes milliseconds.
        host, port = str(server.server_address[0]), int(server.server_address[1])
        stopper = threading.Thread(target=server.shutdown, name="regauthd-metrics-stop")
        stopper.start()
        with contextlib.suppress(OSError):
            socket.create_connection((host, port), timeout=0.2).close()
        stopper.join(timeout=1.0)
        server.server_close()
        if thread is not None:
            thread.join(timeout=1.0)

    def status(self) -> str | None:
        return None


def _shown(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


__all__ = ["MetricsEndpoint"]
