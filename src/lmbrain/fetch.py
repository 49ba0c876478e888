"""Fetch the files a configuration needs from a public dataset's S3 bucket (OpenNeuro).

OpenNeuro serves every public dataset anonymously from the S3 bucket ``openneuro.org``, one
prefix per accession (``s3://openneuro.org/ds003020/...``; ``aws s3 ls --no-sign-request``
lists it). lmbrain reads that bucket with boto3's unsigned requests, so no credentials and no
other client (AWS CLI, datalad, openneuro-py) are needed, and the endpoint can be pointed at any
S3-compatible server (a mirror, or a local server in the tests).

How a file is fetched (:meth:`S3Source.download`):

1. It is streamed into ``<name>.part`` beside its final path; an interrupted download leaves
   only that file, never a partial file under the final name.
2. A later run finds the ``.part`` and resumes it with an HTTP range request from its size.
3. The whole file is verified: its size, and its MD5 against the object's ETag (:func:`etag_matches`:
   a single-part upload's ETag is the MD5 of the file; a multipart upload's is the MD5 of the
   parts' MD5s followed by ``-<number of parts>``, checked for the usual part sizes). A file that
   fails is fetched again from scratch once, then :class:`~lmbrain.errors.InputError` names it.
4. The verified file is renamed onto its final path and a record of its size and ETag is written
   under ``<root>/.lmbrain-fetch/`` (one small JSON file per file, so parallel jobs never write
   the same record). A file whose record matches the bucket's listing is never fetched again.

Which files a configuration needs is decided from the bucket's listing and the patterns of the
dataset's adapter (:func:`needed_files`): only the configured subjects, stories and derivatives.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import logging
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from lmbrain.errors import InputError

log = logging.getLogger(__name__)

#: The bucket and endpoint OpenNeuro serves public datasets from.
OPENNEURO_BUCKET = "openneuro.org"
OPENNEURO_ENDPOINT = "https://s3.amazonaws.com"
#: Folder (under the dataset root) of the per-file verification records.
RECORD_DIR = ".lmbrain-fetch"
CHUNK = 1 << 20
_MIB = 1 << 20
#: Part sizes tried when checking a multipart ETag (boto3/AWS CLI default 8 MiB first).
_PART_SIZES = (8, 16, 5, 15, 32, 64, 100, 128, 256, 512, 1024)


@dataclass(frozen=True)
class RemoteFile:
    """One object of the bucket: ``key`` relative to the dataset's prefix."""

    key: str
    size: int
    etag: str


def _md5_file(path: Path, part_size: int | None = None) -> list[bytes]:
    """MD5 digests of ``path`` (one, or one per part of ``part_size`` bytes)."""
    digests = []
    with open(path, "rb") as fh:
        while True:
            h = hashlib.md5()
            remaining = part_size
            n_read = 0
            while remaining is None or remaining > 0:
                block = fh.read(CHUNK if remaining is None else min(CHUNK, remaining))
                if not block:
                    break
                h.update(block)
                n_read += len(block)
                if remaining is not None:
                    remaining -= len(block)
            if n_read == 0 and digests:
                break
            digests.append(h.digest())
            if part_size is None or n_read < part_size:
                break
    return digests


def etag_matches(path: Path, etag: str) -> bool:
    """Whether the file at ``path`` has the S3 ETag ``etag``.

    A plain ETag is the file's MD5. A multipart ETag ``<md5 of the parts' md5s>-<n>`` is checked
    for every usual part size that gives ``n`` parts, and for the smallest whole number of MiB
    that does. An ETag of another form (server-side encryption) cannot be checked: the size check
    alone then applies, and a warning says so.
    """
    etag = etag.strip('"')
    if re.fullmatch(r"[0-9a-f]{32}", etag):
        return _md5_file(path)[0].hex() == etag
    match = re.fullmatch(r"([0-9a-f]{32})-(\d+)", etag)
    if not match:
        log.warning("%s: ETag %r is not an MD5; only the size was checked", path, etag)
        return True
    n_parts = int(match.group(2))
    size = path.stat().st_size
    candidates = [mib * _MIB for mib in _PART_SIZES]
    candidates.append(-(-size // n_parts // _MIB) * _MIB)
    for part in dict.fromkeys(candidates):
        if part <= 0 or -(-size // part) != n_parts:
            continue
        digests = _md5_file(path, part)
        if hashlib.md5(b"".join(digests)).hexdigest() == match.group(1):
            return True
    return False


class S3Source:
    """A public dataset in an S3 bucket, read with anonymous (unsigned) requests.

    Parameters
    ----------
    accession : str
        The dataset's prefix in the bucket (``ds003020``).
    endpoint_url : str
        S3 endpoint (default: AWS, where OpenNeuro's bucket lives).
    bucket : str
        Bucket name (default ``openneuro.org``).
    client : optional
        A boto3 S3 client to use instead of making one.
    """

    def __init__(
        self,
        accession: str,
        endpoint_url: str = OPENNEURO_ENDPOINT,
        bucket: str = OPENNEURO_BUCKET,
        client=None,
    ):
        self.accession = accession.strip("/")
        self.endpoint_url = endpoint_url
        self.bucket = bucket
        self._client = client

    @property
    def client(self):
        if self._client is None:
            import boto3
            from botocore import UNSIGNED
            from botocore.config import Config

            self._client = boto3.client(
                "s3",
                endpoint_url=self.endpoint_url,
                region_name="us-east-1",
                config=Config(
                    signature_version=UNSIGNED,
                    s3={"addressing_style": "path"},
                    retries={"max_attempts": 3, "mode": "standard"},
                ),
            )
        return self._client

    def url(self, key: str = "") -> str:
        return f"s3://{self.bucket}/{self.accession}/{key}"

    def list(self, prefix: str = "") -> dict[str, RemoteFile]:
        """Every object under ``<accession>/<prefix>``, keyed by its path in the dataset."""
        from botocore.exceptions import BotoCoreError, ClientError

        full = f"{self.accession}/{prefix}"
        found: dict[str, RemoteFile] = {}
        try:
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=full
            )
            for page in pages:
                for obj in page.get("Contents", []):
                    key = obj["Key"][len(self.accession) + 1 :]
                    found[key] = RemoteFile(key, int(obj["Size"]), obj["ETag"].strip('"'))
        except (BotoCoreError, ClientError) as exc:
            raise InputError(self.url(prefix), f"cannot list the bucket ({exc})") from exc
        return found

    def _stream(self, key: str, start: int, out, progress: Callable[[int], None] | None):
        kwargs = {"Bucket": self.bucket, "Key": f"{self.accession}/{key}"}
        if start:
            kwargs["Range"] = f"bytes={start}-"
        body = self.client.get_object(**kwargs)["Body"]
        try:
            for block in body.iter_chunks(CHUNK):
                out.write(block)
                if progress is not None:
                    progress(len(block))
        finally:
            body.close()

    def download(
        self,
        remote: RemoteFile,
        dest: Path,
        progress: Callable[[int], None] | None = None,
    ) -> None:
        """Fetch ``remote`` to ``dest`` (resumable, verified, atomic; see the module docstring)."""
        from botocore.exceptions import BotoCoreError, ClientError, FlexibleChecksumError

        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        part = dest.with_name(dest.name + ".part")
        for attempt in range(2):
            start = part.stat().st_size if part.exists() else 0
            if start > remote.size:
                part.unlink()
                start = 0
            problem = None
            try:
                with open(part, "ab") as out:
                    if start < remote.size:
                        self._stream(remote.key, start, out, progress)
            except FlexibleChecksumError as exc:  # the server's own checksum header disagreed
                problem = f"checksum does not match ({exc})"
            except ClientError as exc:
                code = exc.response.get("Error", {}).get("Code", "")
                if code in ("NoSuchKey", "404"):
                    raise InputError(self.url(remote.key), "no such file in the bucket") from exc
                raise InputError(self.url(remote.key), f"download failed ({exc})") from exc
            except BotoCoreError as exc:
                raise InputError(
                    self.url(remote.key),
                    f"download interrupted ({exc}); {part} is kept and the next run resumes it",
                ) from exc
            size = part.stat().st_size
            if problem is None:
                if size == remote.size and etag_matches(part, remote.etag):
                    os.replace(part, dest)
                    return
                problem = (
                    f"size {size} instead of {remote.size}"
                    if size != remote.size
                    else f"checksum does not match the ETag {remote.etag}"
                )
            part.unlink()
            if attempt == 0:
                log.warning("%s: %s; fetching it again", self.url(remote.key), problem)
                continue
            raise InputError(self.url(remote.key), f"downloaded twice, {problem} both times")


def record_path(root: Path, key: str) -> Path:
    return Path(root) / RECORD_DIR / f"{key}.json"


def is_fetched(root: Path, remote: RemoteFile) -> bool:
    """Whether ``remote`` is on disk under ``root`` and was verified against this version."""
    path = Path(root) / remote.key
    record = record_path(root, remote.key)
    if not path.is_file() or not record.is_file():
        return False
    try:
        saved = json.loads(record.read_text())
    except (OSError, json.JSONDecodeError):
        return False
    return (
        saved.get("etag") == remote.etag
        and saved.get("size") == remote.size
        and path.stat().st_size == remote.size
    )


def _write_record(root: Path, remote: RemoteFile) -> None:
    from lmbrain.io import save_json

    save_json(
        record_path(root, remote.key), {"key": remote.key, "size": remote.size, "etag": remote.etag}
    )


def fetch(
    source: S3Source,
    files: Iterable[RemoteFile],
    root: str | Path,
    show_progress: bool = True,
) -> dict[str, list[str]]:
    """Fetch ``files`` under ``root``, skipping those already fetched and verified.

    A file already on disk without a record (downloaded by hand) is kept if it matches the
    listing's size and ETag, else fetched again.

    Returns
    -------
    dict
        ``fetched`` and ``present``: the keys downloaded now and those already there.
    """
    root = Path(root)
    files = sorted(files, key=lambda f: f.key)
    todo, present = [], []
    for remote in files:
        path = root / remote.key
        if is_fetched(root, remote):
            present.append(remote.key)
        elif (
            path.is_file()
            and path.stat().st_size == remote.size
            and etag_matches(path, remote.etag)
        ):
            _write_record(root, remote)
            present.append(remote.key)
        else:
            todo.append(remote)
    total = sum(f.size for f in todo)
    log.info(
        "%s: %d files to fetch (%s), %d already present",
        source.url(),
        len(todo),
        format_bytes(total),
        len(present),
    )
    bar = None
    if show_progress and todo:
        from tqdm import tqdm

        bar = tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc="fetch")
    try:
        for i, remote in enumerate(todo, 1):
            if bar is not None:
                bar.set_postfix_str(f"file {i}/{len(todo)}")
            source.download(remote, root / remote.key, bar.update if bar is not None else None)
            _write_record(root, remote)
    finally:
        if bar is not None:
            bar.close()
    return {"fetched": [f.key for f in todo], "present": present}


def format_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def literal_prefix(pattern: str) -> str:
    """The folder part of ``pattern`` before its first wildcard (what to list)."""
    head = re.split(r"[*?\[]", pattern, maxsplit=1)[0]
    return head if "/" not in head else head.rsplit("/", 1)[0] + "/"


def needed_files(
    listing: dict[str, RemoteFile],
    patterns: Iterable[str],
    required: Iterable[str] = (),
) -> list[RemoteFile]:
    """The objects of ``listing`` that match any of ``patterns`` (``fnmatch``, ``*`` crossing
    no ``/``), checking that each of ``required`` (exact keys) exists.

    Raises
    ------
    InputError
        Naming a required key that the bucket lacks.
    """
    patterns = list(patterns)
    chosen = {}
    for key, remote in listing.items():
        parts = key.split("/")
        for pattern in patterns:
            pparts = pattern.split("/")
            if len(parts) == len(pparts) and all(
                fnmatch.fnmatchcase(a, b) for a, b in zip(parts, pparts, strict=True)
            ):
                chosen[key] = remote
                break
    for key in required:
        if key not in listing:
            raise InputError(key, "is not in the bucket (wrong accession, subject or story?)")
    return [chosen[k] for k in sorted(chosen)]


def list_for(source: S3Source, patterns: Iterable[str]) -> dict[str, RemoteFile]:
    """The listing of the folders ``patterns`` reach into (one paginated list per folder)."""
    listing: dict[str, RemoteFile] = {}
    listed: list[str] = []
    for prefix in sorted({literal_prefix(p) for p in patterns}):
        if any(prefix.startswith(done) for done in listed):
            continue
        listed.append(prefix)
        listing.update(source.list(prefix))
    return listing


# -- what a configuration needs, and the plan the workflow fetches by --------------------------
def is_literal(pattern: str) -> bool:
    """Whether ``pattern`` names one file (no wildcard)."""
    return not re.search(r"[*?\[]", pattern)


def group_of(key: str, subjects: Iterable[str]) -> str:
    """The download job a file belongs to: the subject named by one of its folders or its
    name's ``<subject>_`` prefix, else ``shared``."""
    subjects = set(subjects)
    parts = key.split("/")
    for part in parts[:-1]:
        if part in subjects:
            return part
    head = parts[-1].split("_", 1)[0]
    return head if head in subjects else "shared"


def make_plan(
    source: S3Source,
    root: str | Path,
    patterns: list[str],
    required: list[str],
    subjects: list[str] | None,
    subject_pattern: str,
    cache: str | Path,
) -> dict:
    """What a dataset needs from its bucket, and whether it is all on disk already.

    The plan (source, patterns, files with size and ETag, subjects) is cached in ``cache``.
    When the cached plan was made for the same source and patterns and every file of it is
    on disk with a matching record (:func:`is_fetched`), it is returned without a network
    request; otherwise the bucket's folders that ``patterns`` reach are listed once.

    Parameters
    ----------
    patterns, required : list of str
        Path patterns (:func:`needed_files`) from the adapter's ``remote_patterns``, and those
        of them that must match (a wildcard one: at least one file).
    subjects : list of str or None
        The configured subjects (None: every subject the listing holds).
    subject_pattern : str
        Regular expression whose first group is the subject of a key (the adapter's
        ``REMOTE_SUBJECT``): the subjects of ``subjects: all``, and the check that each
        configured subject has files.

    Returns
    -------
    dict
        ``files`` (key, size, etag, group), ``subjects``, ``complete`` (nothing to fetch),
        ``listed`` (whether the bucket was listed now).
    """
    from lmbrain.io import save_json

    root, cache = Path(root), Path(cache)
    ident = {
        "endpoint": source.endpoint_url,
        "url": source.url(),
        "patterns": sorted(patterns),
        "required": sorted(required),
        "subjects": None if subjects is None else sorted(subjects),
    }
    saved = _read_json(cache)
    if saved.get("ident") == ident:
        remote = [RemoteFile(f["key"], f["size"], f["etag"]) for f in saved["files"]]
        if all(is_fetched(root, r) for r in remote):
            return {**saved, "complete": True, "listed": False}
    listing = list_for(source, patterns)
    files = needed_files(listing, patterns, [p for p in required if is_literal(p)])
    for pattern in required:
        if not is_literal(pattern) and not needed_files(listing, [pattern]):
            raise InputError(source.url(pattern), "no file of the bucket matches this")
    found = sorted(
        {m.group(1) for f in files if (m := re.match(subject_pattern, f.key)) is not None}
    )
    if subjects is None:
        subjects = found
    missing = [s for s in subjects if s not in found]
    if missing:
        raise InputError(
            source.url(), f"no files of subjects {missing} in the bucket (wrong subject name?)"
        )
    if not subjects:
        raise InputError(source.url(), f"no subject's files match {sorted(patterns)}")
    plan = {
        "ident": ident,
        "subjects": list(subjects),
        "files": [
            {"key": f.key, "size": f.size, "etag": f.etag, "group": group_of(f.key, subjects)}
            for f in files
        ],
    }
    if _read_json(cache) != plan:  # rewritten only when it changed
        save_json(cache, plan)
    complete = all(
        is_fetched(root, RemoteFile(f["key"], f["size"], f["etag"])) for f in plan["files"]
    )
    return {**plan, "complete": complete, "listed": True}


def plan_summary(plan: dict, root: str | Path) -> str:
    """``N files, X to fetch, M present`` for the log line before any job starts."""
    root = Path(root)
    todo = [
        f for f in plan["files"] if not is_fetched(root, RemoteFile(f["key"], f["size"], f["etag"]))
    ]
    return (
        f"{len(plan['files'])} files needed, {len(todo)} to fetch "
        f"({format_bytes(sum(f['size'] for f in todo))}), "
        f"{len(plan['files']) - len(todo)} present"
    )


def _read_json(path: Path) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError):
        return {}
