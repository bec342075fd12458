"""Connections that are not gRPC at all, or HTTP/2 that breaks off or lies about itself."""

from __future__ import annotations

import random
import socket
import struct

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
SETTINGS = struct.pack(">I", 0)[1:] + b"\x04\x00" + struct.pack(">I", 0)  # empty SETTINGS


def frame(kind: int, flags: int, stream: int, payload: bytes) -> bytes:
    return (
        struct.pack(">I", len(payload))[1:]
        + bytes((kind, flags))
        + struct.pack(">I", stream)
        + payload
    )


def shapes(rng: random.Random) -> bytes:
    """One of: random bytes; the preface and noise; a HEADERS frame of garbage HPACK; a
    DATA frame on a stream never opened; a frame that announces more than it sends."""
    noise = rng.randbytes(rng.randint(1, 512))
    choice = rng.randrange(5)
    if choice == 0:
        return noise
    if choice == 1:
        return PREFACE + noise
    if choice == 2:
        return PREFACE + SETTINGS + frame(0x1, 0x4, 1, noise)
    if choice == 3:
        return PREFACE + SETTINGS + frame(0x0, 0x1, 3, noise)
    return PREFACE + SETTINGS + struct.pack(">I", 1 << 20)[1:] + b"\x01\x04" + b"\x00\x00\x00\x01"


def send_garbage(port: int, seed: int, connections: int) -> int:
    """Opens `connections` connections to 127.0.0.1:`port`, each sent one garbage shape and
    then closed (half of them abruptly, with a reset). Returns how many were sent."""
    rng = random.Random(seed)
    sent = 0
    for _ in range(connections):
        with socket.create_connection(("127.0.0.1", port), timeout=2) as conn:
            try:
                conn.sendall(shapes(rng))
                if rng.random() < 0.5:
                    # SO_LINGER 0: close with RST, as a killed client's kernel would.
                    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                else:
                    conn.settimeout(0.05)
                    conn.recv(4096)
            except OSError:
                pass  # the server hung up first: fine
            sent += 1
    return sent
