"""What the benchmarks that start vitrined share: a free loopback port, and
waiting until the daemon answers."""

import socket
import subprocess
import sys
import time


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_serving(vitrine, address, daemon, limit=120, who="bench"):
    """Returns once vitrined at `address` answers a one-token request; exits
    naming `who` when the daemon ends or `limit` seconds pass first."""
    deadline = time.time() + limit
    while time.time() < deadline:
        if daemon.poll() is not None:
            sys.exit(f"{who}: vitrined exited with {daemon.returncode}")
        probe = subprocess.run([vitrine, "ask", "--address", address, "--route", "base",
                                "--max-new-tokens", "1", "ping"], capture_output=True)
        if probe.returncode == 0:
            return
        time.sleep(0.2)
    sys.exit(f"{who}: vitrined did not start serving within {limit} s")
