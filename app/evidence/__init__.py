"""Evidence of results: a flow rebuilt from its event log and compared with the live
tables, export manifests, and one phone's messages and decisions in a flow."""

from app.evidence.manifest import Manifest, ManifestError, check_manifest, write_manifest
from app.evidence.participant import Participation, participation
from app.evidence.report import AuditError, AuditReport, audit

__all__ = [
    "AuditError",
    "AuditReport",
    "Manifest",
    "ManifestError",
    "Participation",
    "audit",
    "check_manifest",
    "participation",
    "write_manifest",
]
