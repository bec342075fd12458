"""The published retry service config (deploy/grpc/service_config.json) as channel options."""

from __future__ import annotations

from importlib import resources

# grpc's reconnect backoff grows to 120 s by default: after a server restart the channel
# would sit out the backoff while the server is back. 1 s keeps a resumed call prompt.
RECONNECT_BACKOFF_MS = 1000


def service_config_json() -> str:
    """The JSON text, shipped as package data (a test checks it equals deploy/grpc's)."""
    return resources.files(__package__).joinpath("service_config.json").read_text("utf-8")


def channel_options() -> list[tuple[str, str | int]]:
    return [
        ("grpc.service_config", service_config_json()),
        ("grpc.enable_retries", 1),
        ("grpc.initial_reconnect_backoff_ms", 100),
        ("grpc.min_reconnect_backoff_ms", 100),
        ("grpc.max_reconnect_backoff_ms", RECONNECT_BACKOFF_MS),
    ]
