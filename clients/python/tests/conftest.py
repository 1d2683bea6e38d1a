"""A real bridge on free loopback ports for the client tests."""

import os
import socket
import subprocess
import time
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
BIN = os.environ.get("SSE_BRIDGE_BIN", str(ROOT / "target" / "debug" / "sse-bridge"))
SECRET = "python-client-test-secret"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def token(*args: str) -> str:
    return subprocess.check_output([BIN, "token", "--secret", SECRET, *args], text=True).strip()


class Bridge:
    def __init__(self) -> None:
        self.http_port, self.grpc_port = free_port(), free_port()
        self.process = subprocess.Popen(
            [
                BIN, "serve", "--jwt-secret", SECRET,
                "--http-addr", f"127.0.0.1:{self.http_port}",
                "--grpc-addr", f"127.0.0.1:{self.grpc_port}",
                "--max-payload-bytes", "4096",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.http_port), timeout=0.2).close()
                socket.create_connection(("127.0.0.1", self.grpc_port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise RuntimeError("the bridge did not start")
                time.sleep(0.05)
        self.tenant = str(uuid.uuid4())
        self.subscriber_token = token("--tenant", self.tenant)
        self.publisher_token = token("--publisher")

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def stop(self) -> None:
        self.process.kill()
        self.process.wait()


@pytest.fixture
def bridge():
    b = Bridge()
    yield b
    b.stop()
