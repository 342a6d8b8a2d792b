"""Object stores on loopback for tests and benchmarks: S3 (moto's server) and GCS (the
gcp-storage-emulator), each a real HTTP server in its own process on 127.0.0.1.

    with LoopbackS3() as s3:          # s3.env: what a client process needs
        os.environ.update(s3.env)     # s3fs, boto3 and Beam's own clients then talk to it
        s3.make_bucket("b")           # s3://b/... now works

The production code is not told anything: the endpoint reaches s3fs (botocore) through
``AWS_ENDPOINT_URL`` and gcsfs / google-cloud-storage through ``STORAGE_EMULATOR_HOST``,
as it would for any S3-compatible store or GCS emulator. Both servers keep everything in
memory and die with the context.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _program(name: str) -> str:
    path = BIN / name
    found = str(path) if path.exists() else shutil.which(name)
    if not found:
        raise RuntimeError(f"{name}: not installed (pip install -e '.[dev]')")
    return found


class _Server:
    """A server process on a free loopback port; the context waits until it listens."""

    name = ""

    def __init__(self, start_timeout_s: float = 60.0) -> None:
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.start_timeout_s = start_timeout_s
        self.proc: subprocess.Popen | None = None

    def command(self) -> list[str]:
        raise NotImplementedError

    @property
    def env(self) -> dict[str, str]:
        raise NotImplementedError

    def __enter__(self):
        self.proc = subprocess.Popen(
            self.command(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + self.start_timeout_s
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name}: exited with {self.proc.returncode} at start")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return self
            except OSError:
                if time.monotonic() > deadline:
                    self.__exit__(None, None, None)
                    raise RuntimeError(f"{self.name}: not listening on {self.endpoint}") from None
                time.sleep(0.2)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class LoopbackS3(_Server):
    """moto's S3 server (``moto_server``), any bucket name, fixed test credentials."""

    name = "moto_server"

    def command(self) -> list[str]:
        return [_program("moto_server"), "-H", "127.0.0.1", "-p", str(self.port)]

    @property
    def env(self) -> dict[str, str]:
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            # never read the machine's own AWS set-up
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        }

    def make_bucket(self, bucket: str) -> str:
        import boto3

        boto3.client("s3", endpoint_url=self.endpoint, **_credentials(self.env)).create_bucket(
            Bucket=bucket
        )
        return f"s3://{bucket}"


class LoopbackGCS(_Server):
    """gcp-storage-emulator in memory; ``bucket`` exists from the start."""

    name = "gcp-storage-emulator"

    def __init__(self, bucket: str = "montage-test", start_timeout_s: float = 60.0) -> None:
        super().__init__(start_timeout_s)
        self.bucket = bucket

    def command(self) -> list[str]:
        return [
            _program("gcp-storage-emulator"), "start", "-H", "127.0.0.1",
            "--port", str(self.port), "--default-bucket", self.bucket, "--in-memory", "-q",
        ]  # fmt: skip

    @property
    def env(self) -> dict[str, str]:
        return {"STORAGE_EMULATOR_HOST": self.endpoint}


def _credentials(env: dict[str, str]) -> dict[str, str]:
    return {
        "aws_access_key_id": env["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": env["AWS_SECRET_ACCESS_KEY"],
        "region_name": env["AWS_DEFAULT_REGION"],
    }
