"""Is a Ray cluster answering at `--address`? Asked in 3 seconds, before Ray itself is asked:
`ray.init` retries an address where nothing answers for minutes, logging as it goes (issue
19, item 12).

A Ray head's GCS (`HOST:PORT`) and its client server (`ray://HOST:PORT`) both speak gRPC,
that is HTTP/2: a server answers the client's connection preface with a SETTINGS frame
(RFC 9113 §3.4). A port where nothing listens, or where something else listens (silent, or
answering HTTP/1), fails the probe.
"""

from __future__ import annotations

import socket
import time

from envs.errors import ConfigError

PROBE_TIMEOUT_S = 3.0
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
EMPTY_SETTINGS = b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"  # length 0, type SETTINGS, stream 0
SETTINGS = 0x04
REMEDY = "start it with `ray start --head` (it prints the address) or fix --address / RAY_ADDRESS"


def host_port(address: str) -> tuple[str, int] | None:
    """(host, port) of a `HOST:PORT` or `ray://HOST:PORT` address; None for `auto` / `local`,
    which Ray resolves itself."""
    if address in ("auto", "local"):
        return None
    rest = address.removeprefix("ray://")
    host, sep, port = rest.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"malformed Ray address {address!r}: use auto, HOST:PORT or "
                          f"ray://HOST:PORT")
    return host, int(port)


def check_ray_address(address: str | None, timeout_s: float = PROBE_TIMEOUT_S) -> None:
    """Raise a one-line ConfigError unless a gRPC server answers at `address` in `timeout_s`."""
    target = host_port(address) if address else None
    if target is None:
        return
    reason = _probe(*target, timeout_s)
    if reason is not None:
        raise ConfigError(f"no Ray cluster answers at {address} ({reason}): {REMEDY}")


def _probe(host: str, port: int, timeout_s: float) -> str | None:
    deadline = time.monotonic() + timeout_s
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as sock:
            sock.sendall(PREFACE + EMPTY_SETTINGS)
            header = b""
            while len(header) < 9:
                sock.settimeout(max(deadline - time.monotonic(), 0.01))
                chunk = sock.recv(9 - len(header))
                if not chunk:
                    return "the connection was closed: not a Ray head"
                header += chunk
    except socket.timeout:
        return f"no answer within {timeout_s:g} s"
    except OSError as e:
        return e.strerror or type(e).__name__
    return None if header[3] == SETTINGS else "it does not speak gRPC: not a Ray head"
