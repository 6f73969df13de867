"""The access log: every request, accepted or refused, as one pseudonymised entry of an append-only Merkle tree
log (RFC 9162 style) with signed tree heads; see docs/merkle-log.md."""

from gateway.audit.heads import TreeHeadSigner, log_id_for, tree_head_keys
from gateway.audit.pseudonym import Pseudonymiser
from gateway.audit.record import AccessRecord, leaf_hash
from gateway.audit.sqlite.store import SqliteAccessLog
from gateway.audit.store import AccessLog, AccessLogCorrupt, ChainBreak

__all__ = [
    "AccessLog",
    "AccessLogCorrupt",
    "AccessRecord",
    "ChainBreak",
    "Pseudonymiser",
    "SqliteAccessLog",
    "TreeHeadSigner",
    "leaf_hash",
    "log_id_for",
    "tree_head_keys",
]
