"""Export manifests: beside each exported file, its row count and SHA-256, so that a file handed
to a client can later be shown to be the one exported, unchanged."""

from __future__ import annotations

import hashlib
from datetime import datetime
from pathlib import Path

import msgspec

from app.errors import SmsflowsError

FORMAT = "smsflows-export/1"


class ManifestError(SmsflowsError):
    """A manifest or its file cannot be read, or they do not match."""

    status_code = 422


class Manifest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    format: str
    file: str
    """The exported file's name, beside the manifest."""
    flow: str
    flow_hash: str
    rows: int
    """Data rows, without the header."""
    sha256: str
    """SHA-256 of the file's bytes."""
    exported_at: datetime


def manifest_path(path: Path) -> Path:
    return path.with_name(path.name + ".manifest.json")


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 16), b""):
            h.update(block)
    return h.hexdigest()


def write_manifest(path: Path, flow: str, flow_hash: str, rows: int, now: datetime) -> Manifest:
    manifest = Manifest(FORMAT, path.name, flow, flow_hash, rows, file_sha256(path), now)
    manifest_path(path).write_bytes(msgspec.json.format(msgspec.json.encode(manifest)) + b"\n")
    return manifest


def check_manifest(path: Path) -> Manifest:
    """The manifest of ``path`` (the exported file or its manifest) when the file matches it."""
    if path.name.endswith(".manifest.json"):
        path = path.with_name(path.name.removesuffix(".manifest.json"))
    where = manifest_path(path)
    try:
        manifest = msgspec.json.decode(where.read_bytes(), type=Manifest)
        digest = file_sha256(path)
    except OSError as exc:
        raise ManifestError(f"cannot read {exc.filename}: {exc.strerror}") from None
    except msgspec.MsgspecError as exc:
        raise ManifestError(f"{where} is not an export manifest: {exc}") from None
    if digest != manifest.sha256:
        raise ManifestError(
            f"{path} was changed after it was exported: its SHA-256 is {digest}, the manifest "
            f"says {manifest.sha256} ({manifest.rows} rows, exported {manifest.exported_at:%Y-%m-%d %H:%M} "
            "UTC)"
        )
    return manifest
