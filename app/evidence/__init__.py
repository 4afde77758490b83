"""Evidence of results: a flow rebuilt from its event log and compared with the live
tables, and export manifests."""

from app.evidence.manifest import Manifest, ManifestError, check_manifest, write_manifest
from app.evidence.report import AuditError, AuditReport, audit

__all__ = [
    "AuditError",
    "AuditReport",
    "Manifest",
    "ManifestError",
    "audit",
    "check_manifest",
    "write_manifest",
]
