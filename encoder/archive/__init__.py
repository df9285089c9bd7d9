"""An archive a CBIR tool can grow: cases ingested once, kept consistent under crashes, queried by
slice or by whole case, patient by patient, with metadata filters (see docs/archive.md)."""
from .catalogue import parse_where
from .common import AddReport, ArchiveLockedError, ModelMismatchError
from .core import Archive
from .retrieval import PatientHit, SliceMatch

__all__ = ["AddReport", "Archive", "ArchiveLockedError", "ModelMismatchError", "PatientHit", "SliceMatch",
           "parse_where"]
