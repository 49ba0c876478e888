"""A local S3 server for the fetch tests: moto's server, holding a folder as a bucket.

Run as a process so that a test can kill it mid-download::

    python tests/s3_server.py --root DIR --bucket openneuro.org --port 0 --ready FILE \
        --log LOG [--die-after KEY:N] [--corrupt KEY] [--multipart-over BYTES]

Every file under ``DIR`` becomes the object of the same key (files larger than
``--multipart-over`` bytes are uploaded in 5 MiB parts, so their ETag is a multipart one, as
OpenNeuro's large files are). Each request is appended to ``LOG`` as ``METHOD PATH RANGE``.
``--die-after KEY:N`` kills the whole server process after sending N bytes of that object's
body (a connection dropped mid-file); ``--corrupt KEY`` flips one byte of that object's body
in transit. The port actually bound is written to ``--ready`` once the bucket is filled.
Binds 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import os
import threading
from pathlib import Path


def _middleware(app, log_path: Path, die_after: tuple[str, int] | None, corrupt: str | None):
    lock = threading.Lock()

    def wrapped(environ, start_response):
        path = environ.get("PATH_INFO", "")
        with lock, open(log_path, "a") as fh:
            fh.write(
                f"{environ['REQUEST_METHOD']} {path} {environ.get('HTTP_RANGE', '-')}"
                f" {environ.get('QUERY_STRING', '')}\n"
            )
        body = app(environ, start_response)
        if environ["REQUEST_METHOD"] != "GET":
            return body
        if die_after and path.endswith("/" + die_after[0]):
            return _die_after(body, die_after[1])
        if corrupt and path.endswith("/" + corrupt):
            return _flip_first_byte(body)
        return body

    return wrapped


def _die_after(body, n_bytes):
    sent = 0
    for block in body:
        if sent + len(block) >= n_bytes:
            yield block[: n_bytes - sent]
            os._exit(3)  # the server dies mid-file, as a killed server would
        sent += len(block)
        yield block


def _flip_first_byte(body):
    first = True
    for block in body:
        if first and block:
            block = bytes([block[0] ^ 0xFF]) + block[1:]
            first = False
        yield block


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--root", required=True)
    parser.add_argument("--bucket", default="openneuro.org")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--ready", required=True)
    parser.add_argument("--log", required=True)
    parser.add_argument("--die-after", default=None)
    parser.add_argument("--corrupt", default=None)
    parser.add_argument("--multipart-over", type=int, default=6 * 2**20)
    args = parser.parse_args()

    import boto3
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
    from werkzeug.serving import make_server

    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    die_after = None
    if args.die_after:
        key, n = args.die_after.rsplit(":", 1)
        die_after = (key, int(n))
    app = _middleware(
        DomainDispatcherApplication(create_backend_app), Path(args.log), die_after, args.corrupt
    )
    server = make_server("127.0.0.1", args.port, app, threaded=True)
    port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()

    client = boto3.client(
        "s3",
        endpoint_url=f"http://127.0.0.1:{port}",
        region_name="us-east-1",
        config=boto3.session.Config(s3={"addressing_style": "path"}),
    )
    client.create_bucket(Bucket=args.bucket, ACL="public-read")  # OpenNeuro: anonymous reads
    root = Path(args.root)
    part = 5 * 2**20
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        key = path.relative_to(root).as_posix()
        data = path.read_bytes()
        if len(data) <= args.multipart_over:
            client.put_object(Bucket=args.bucket, Key=key, Body=data, ACL="public-read")
            continue
        upload = client.create_multipart_upload(Bucket=args.bucket, Key=key, ACL="public-read")
        parts = []
        for i, start in enumerate(range(0, len(data), part), 1):
            etag = client.upload_part(
                Bucket=args.bucket,
                Key=key,
                UploadId=upload["UploadId"],
                PartNumber=i,
                Body=data[start : start + part],
            )["ETag"]
            parts.append({"PartNumber": i, "ETag": etag})
        client.complete_multipart_upload(
            Bucket=args.bucket,
            Key=key,
            UploadId=upload["UploadId"],
            MultipartUpload={"Parts": parts},
        )
    Path(args.log).write_text("")  # the test reads only the requests made after start-up
    tmp = Path(args.ready + ".tmp")
    tmp.write_text(str(port))
    os.replace(tmp, args.ready)
    thread.join()


if __name__ == "__main__":
    main()
