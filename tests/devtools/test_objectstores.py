"""devtools.objectstores: real S3 and GCS servers on loopback, gone with their context."""

from __future__ import annotations

import socket

import pytest

from devtools.objectstores import LoopbackGCS, LoopbackS3


def listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_the_s3_server_stores_what_a_client_puts_and_is_gone_after_its_context():
    import s3fs

    with LoopbackS3() as s3:
        assert s3.env["AWS_ENDPOINT_URL"] == f"http://127.0.0.1:{s3.port}"
        assert s3.make_bucket("bkt") == "s3://bkt"
        fs = s3fs.S3FileSystem(
            key="testing", secret="testing", endpoint_url=s3.endpoint, skip_instance_cache=True
        )
        fs.pipe("bkt/x/y.bin", b"\x00data")
        assert fs.cat("bkt/x/y.bin") == b"\x00data"
        with pytest.raises(FileNotFoundError):
            fs.cat("bkt/missing")
    assert not listening(s3.port)


def test_the_gcs_emulator_starts_with_its_bucket_and_stops_with_its_context(monkeypatch):
    import gcsfs

    with LoopbackGCS(bucket="made") as gcs:
        assert gcs.env == {"STORAGE_EMULATOR_HOST": f"http://127.0.0.1:{gcs.port}"}
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs.endpoint)
        fs = gcsfs.GCSFileSystem(skip_instance_cache=True)
        fs.pipe("made/a.txt", b"hello")
        assert fs.cat("made/a.txt") == b"hello"
    assert not listening(gcs.port)
