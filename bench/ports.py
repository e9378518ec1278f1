"""A free local port for a service a bench or test starts."""

from __future__ import annotations

import random
import socket

# Below the kernel's ephemeral ranges (Linux 32768-60999, macOS 49152-65535): a port taken from those
# can be handed to any socket bound to port 0 (the emulator's own moto server among them) before the
# service binds it. Seen: "Address already in use" under the parallel suite.
PORTS = range(20000, 32000)


def free_port() -> int:
    for port in random.sample(PORTS, 100):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {PORTS.start}-{PORTS.stop - 1}")
