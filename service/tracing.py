"""Tracing's switch: off unless the OpenTelemetry environment turns it on (API.md), and
then the SDK is imported (service/spans.py); off, no OpenTelemetry module is loaded."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, Protocol

import grpc


class CallSpan(Protocol):
    def end(self, code: grpc.StatusCode) -> tuple[str, str]:
        """Ends the span with the call's code; its (trace id, span id) for the log line."""


class CallTracer(Protocol):
    def start(self, service: str, method: str, metadata: Any) -> CallSpan:
        """A server span for one call, the child of the caller's (W3C traceparent in
        `metadata`), current until it ends: the call's statements are its children."""

    def shutdown(self) -> None:
        """Sends what is buffered; a stopped server's last spans are not lost."""


class TracingConfigError(Exception):
    """The OTEL_* environment asks for what cannot be had; one line for the operator."""


def wanted(environ: Mapping[str, str]) -> bool:
    """API.md: on when OTEL_TRACES_EXPORTER or an OTLP endpoint is set, as the SDK's own
    `opentelemetry-instrument` would export; OTEL_SDK_DISABLED=true or an exporter of
    `none` keeps it off."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporters = environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporters == "none":
        return False
    return bool(
        exporters
        or environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        or environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    )


def start_tracing(environ: Mapping[str, str] | None = None) -> CallTracer | None:
    """The process's tracer when the environment wants one, else None (and no import)."""
    environ = os.environ if environ is None else environ
    if not wanted(environ):
        return None
    from service import spans  # noqa: PLC0415 - the SDK is loaded only when tracing is on

    return spans.configure(environ)
