"""Test fixtures: a real redis-server on a free loopback port."""

import pathlib
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator

import pytest

REDIS_PASSWORD = "ocps-test-password"
"""Password the test server requires, so that REDIS_PASSWORD is exercised."""

START_TIMEOUT = 10.0
"""Seconds to wait for redis-server to accept connections."""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """Start redis-server for the session; yield the REDIS_* variables.

    Fails (does not skip) when redis-server is missing: ``dev/setup.sh``
    installs it.
    """
    executable = shutil.which("redis-server")
    if executable is None:
        pytest.fail("redis-server is not installed; run dev/setup.sh")
    port = _free_port()
    work_dir: pathlib.Path = tmp_path_factory.mktemp("redis")
    process = subprocess.Popen(
        [
            executable,
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--requirepass",
            REDIS_PASSWORD,
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(work_dir),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"redis-server did not start on port {port}")
                time.sleep(0.05)
        yield {
            "REDIS_HOST": "127.0.0.1",
            "REDIS_PORT": str(port),
            "REDIS_PASSWORD": REDIS_PASSWORD,
        }
    finally:
        process.terminate()
        process.wait(timeout=10)
