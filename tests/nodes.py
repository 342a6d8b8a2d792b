"""One command run as NODE_RANK 0 and 1 of a two-node job, both on this machine (loopback)."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_two_nodes(cmd: list[str], cwd: Path, timeout: float, **env: str) -> list[str]:
    """Start ``cmd`` twice (MASTER_ADDR/PORT, NODE_RANK, WORLD_SIZE=2, PYTHONPATH set, plus
    ``env``), wait for both, fail with their output unless both exit 0; their logs."""
    port = free_port()
    procs = []
    for node in (0, 1):
        node_env = dict(
            os.environ,
            MASTER_ADDR="127.0.0.1",
            MASTER_PORT=str(port),
            NODE_RANK=str(node),
            WORLD_SIZE="2",
            PYTHONPATH=str(ROOT),
            **env,
        )
        procs.append(
            subprocess.Popen(
                cmd, cwd=cwd, env=node_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
            )
        )
    try:
        logs = [p.communicate(timeout=timeout)[0].decode() for p in procs]
    finally:
        for p in procs:
            p.kill()
    assert all(p.returncode == 0 for p in procs), "\n".join(log[-3000:] for log in logs)
    return logs
