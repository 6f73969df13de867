"""The consent registry: citizens' consents for consent-based purposes, and their enforcement.

``store`` holds the values, the ``ConsentStore`` seam and the rule that picks a consent; ``sqlite`` the
embedded store; ``postgres`` the store shared by replicas; ``rules`` who may manage consents and what a new
one must satisfy; ``enforce`` the step of a verification that refuses a consent-based query without a
consent in force.
"""

from gateway.policy.consent.enforce import enforce_consent
from gateway.policy.consent.sqlite import SqliteConsentStore
from gateway.policy.consent.store import Consent, ConsentGrant, ConsentStore, Refusal, Revocation, decide

__all__ = [
    "Consent",
    "ConsentGrant",
    "ConsentStore",
    "Refusal",
    "Revocation",
    "SqliteConsentStore",
    "decide",
    "enforce_consent",
]
