"""The access log: every request, accepted or refused, as one pseudonymised, tamper-evident entry."""

from gateway.audit.pseudonym import Pseudonymiser
from gateway.audit.record import AccessRecord, leaf_hash
from gateway.audit.sqlite import SqliteAccessLog
from gateway.audit.store import AccessLog, ChainBreak

__all__ = ["AccessLog", "AccessRecord", "ChainBreak", "Pseudonymiser", "SqliteAccessLog", "leaf_hash"]
