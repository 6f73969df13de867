"""Typed application state (aiohttp ``AppKey``) and what the handlers tell the access log."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

from gateway.audit import AccessLog, Pseudonymiser
from gateway.audit.health import HealthTracked
from gateway.audit.witness.guard import LogGuard
from gateway.batch.service import BatchService
from gateway.config.settings import Settings
from gateway.crypto.keyring import KeyResolver
from gateway.crypto.keys import SigningKey
from gateway.federation.executor import Federation
from gateway.federation.services import ServiceCatalogue
from gateway.policy.consent.store import ConsentStore
from gateway.stores.space import FreeSpaceWatch
from gateway.trust.backoff import LocalSignInThrottle, SignInThrottle
from gateway.trust.ratelimit import RateLimiter
from gateway.trust.refusals import RefusalBudget
from gateway.trust.replay import ReplayCache
from gateway.web.heavy import HeavyReads
from gateway.web.metrics import Metrics


@dataclass
class Runtime:
    """The resources of a running gateway, created and closed in ``cleanup_ctx``."""

    settings: Settings
    signing_key: SigningKey
    published_keys: list[SigningKey]
    client_keys: KeyResolver
    access_log: AccessLog
    pseudonymiser: Pseudonymiser
    session: aiohttp.ClientSession
    federation: Federation
    replay: ReplayCache
    limiter: RateLimiter
    consents: ConsentStore
    # the console's sign-in throttle (growing delays, no lockout): in Redis when the rate limits are, else in the
    # process, apart from the API clients' buckets so a flood of sign-in attempts never touches them
    sign_in_throttle: SignInThrottle = field(default_factory=LocalSignInThrottle)
    metrics: Metrics | None = None  # the application's Prometheus metrics (gateway/web/metrics.py)
    # the high-water checkpoint and the witnesses (gateway/audit/witness/guard.py); ``corrupt``: refuse everything
    log_guard: LogGuard | None = None
    refusals: RefusalBudget | None = None  # anonymous refusals: logged one by one within a budget, else counted
    free_space: FreeSpaceWatch | None = None  # the access log's disk
    log_health: HealthTracked | None = None  # the access log itself when its store tracks its health (PostgreSQL)
    heavy_reads: HeavyReads = field(default_factory=HeavyReads)  # the officers' heavy reads, bounded (web/heavy.py)
    # when an entry last failed to be written (monotonic), None once one is written again: /readyz is not ready
    # for APPEND_FAILURE_HOLD_S after a failure, so a pod whose log cannot be written leaves the Service
    append_failed_at: float | None = None

    def __post_init__(self) -> None:
        if self.log_health is None and isinstance(self.access_log, HealthTracked):
            self.log_health = self.access_log  # found once: a Protocol check costs too much per request


@dataclass
class AuditNote:
    """Filled in by the handlers as they learn things; the audit middleware writes it out."""

    client: str | None = None
    purpose: str | None = None
    legal_basis: str | None = None
    case_ref: str | None = None
    checks: tuple[str, ...] = ()
    subject: str | None = None
    sources: tuple[tuple[str, str], ...] = ()
    outcome: str | None = None
    request_hmac: str | None = None  # Pseudonymiser.body_digest of the request body
    consent_id: str | None = None  # the consent a consent-based query or a consent change rests on
    co_subjects: tuple[str, ...] = ()  # pseudonyms of the other persons whose data was read (spouses, children)
    detail: dict[str, Any] = field(default_factory=dict)
    time: str | None = None  # the entry's time when the handler must quote it (else the time it is written)


SETTINGS: web.AppKey[Settings] = web.AppKey("settings", Settings)
RUNTIME: web.AppKey[Runtime] = web.AppKey("runtime", Runtime)
REQUEST_ID: web.RequestKey[str] = web.RequestKey("request_id", str)
AUDIT_NOTE: web.RequestKey[AuditNote] = web.RequestKey("audit_note", AuditNote)
PROBLEM_CODE: web.RequestKey[str] = web.RequestKey("problem_code", str)
REQUEST_BODY: web.RequestKey[bytes] = web.RequestKey("request_body", bytes)
SERVICES: web.AppKey[ServiceCatalogue] = web.AppKey("services", ServiceCatalogue)
METRICS: web.AppKey[Metrics] = web.AppKey("metrics", Metrics)
BATCHES: web.AppKey[BatchService] = web.AppKey("batches", BatchService)
