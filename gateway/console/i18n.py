"""The console's two languages: French (the default) and English, and how a request picks one.

The choice, first that applies: ``?lang=fr|en`` on any page (remembered in a cookie), the cookie, the browser's
``Accept-Language`` (the first of French and English by preference), else French. Every text a page shows is
in ``MESSAGES`` under the same key in both languages (a test checks it); anomaly explanations come in both
languages from ``gateway.audit.anomalies``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from zoneinfo import ZoneInfo

from aiohttp import web

LANGUAGES = ("fr", "en")
DEFAULT = "fr"
LANG_COOKIE = "anss_console_lang"

MESSAGES: dict[str, dict[str, str]] = {
    "fr": {
        "app_title": "Console des officiers de sécurité",
        "skip": "Aller au contenu",
        "nav_label": "Navigation principale",
        "nav_search": "Recherche",
        "nav_anomalies": "Alertes",
        "nav_integrity": "Intégrité du journal",
        "signed_in_as": "Connecté en tant que",
        "logout": "Se déconnecter",
        "lang_switch": "English",
        "lang_switch_label": "Switch to English",
        "footer": "Passerelle d'interconnexion des données — ANSS. Chaque consultation de cette console est "
                  "elle-même inscrite au journal des accès.",
        # login
        "login_title": "Connexion",
        "login_intro": "Réservé aux officiers de sécurité habilités. Vos consultations sont journalisées.",
        "officer_id": "Identifiant d'officier",
        "password": "Mot de passe",
        "login_submit": "Se connecter",
        "login_failed": "Identifiant ou mot de passe incorrect.",
        "login_throttled": "Trop de tentatives de connexion. Patientez avant de réessayer (l'attente double).",
        "login_expired": "Votre session a expiré ou n'est plus valide : reconnectez-vous.",
        "logged_out": "Vous êtes déconnecté.",
        "form_expired": "Le formulaire a expiré. Rechargez la page et réessayez.",
        # search
        "search_title": "Rechercher dans le journal des accès",
        "filters": "Filtres",
        "since": "Depuis (inclus)",
        "until": "Jusqu'à (exclu)",
        "time_hint": "Heure locale ({zone})",
        "client": "Client",
        "purpose": "Motif",
        "case_ref": "Référence du dossier",
        "outcome": "Issue",
        "check": "Vérification",
        "source": "Source",
        "citizen": "Citoyen",
        "citizen_kind": "Type d'identifiant",
        "citizen_value": "Identifiant du citoyen",
        "citizen_hint": "L'identifiant n'est jamais enregistré : la passerelle en calcule le pseudonyme.",
        "subject": "Pseudonyme du citoyen",
        "any": "(tous)",
        "search_submit": "Rechercher",
        "results": "Résultats",
        "results_caption": "Entrées du journal, les plus récentes d'abord",
        "no_results": "Aucune entrée ne correspond à ces filtres.",
        "next_page": "Page suivante",
        "first_page": "Première page",
        "index": "N°",
        "time": "Date et heure",
        "status": "Statut HTTP",
        "open_entry": "Voir l'entrée {index}",
        "searching_subject": "Recherche par pseudonyme {subject}",
        "invalid_filter": "Filtre invalide : {detail}",
        # entry
        "entry_title": "Entrée n° {index}",
        "entry_fields": "Contenu de l'entrée",
        "method_path": "Requête",
        "legal_basis": "Base légale",
        "consent_id": "Consentement",
        "checks": "Vérifications",
        "sources": "Sources contactées",
        "latency": "Durée (ms)",
        "request_hmac": "Empreinte de la requête (HMAC-SHA256 à clé)",
        "response_hmac": "Empreinte de la réponse (HMAC-SHA256 à clé)",
        "request_id": "Identifiant de la requête",
        "detail": "Détails",
        "leaf_hash": "Empreinte de la feuille (RFC 9162)",
        "entry_pruned": "Cette entrée a été élaguée (durée de conservation) : seule son empreinte est conservée.",
        "same_citizen": "Autres entrées concernant ce citoyen",
        "proof_title": "Preuve d'inclusion",
        "proof_verified": "Vérifiée : cette entrée est incluse dans l'arbre de {size} entrées dont la tête a été "
                          "signée le {time} (clé {kid}) ; la preuve d'inclusion compte {hashes} empreintes.",
        "proof_pending": "Pas encore couverte par une tête d'arbre signée : la prochaine tête est signée au plus "
                         "tard dans {seconds} secondes.",
        "proof_failed": "ÉCHEC : la preuve d'inclusion ne correspond pas à la tête d'arbre signée. Le journal a "
                        "peut-être été altéré ; lancez une vérification complète.",
        "head_invalid": "ÉCHEC : la signature de la dernière tête d'arbre n'est pas valide ({reason}).",
        "root_hash": "Racine",
        # integrity
        "integrity_title": "Intégrité du journal des accès",
        "latest_head": "Dernière tête d'arbre signée",
        "tree_size": "Taille de l'arbre",
        "signed_at": "Signée le",
        "key": "Clé",
        "signature": "Signature",
        "signature_ok": "valide",
        "signature_bad": "NON VALIDE ({reason})",
        "no_head": "Aucune tête d'arbre n'a encore été signée.",
        "entries_total": "Entrées dans le journal",
        "unsigned_tail": "Entrées pas encore couvertes par une tête signée",
        "last_verification": "Dernière vérification complète",
        "never_verified": "Aucune vérification complète n'a été lancée depuis la console.",
        "verified_by": "le {time} par {officer}",
        "verify_now": "Vérifier maintenant",
        "verify_hint": "Recalcule tout l'arbre depuis les entrées et contrôle chaque tête signée. Peut prendre "
                       "du temps sur un grand journal.",
        "verify_intact": "Journal intact : {size} entrées recalculées, toutes les têtes signées vérifiées, "
                         "l'index de recherche conforme à chaque entrée.",
        "verify_broken": "JOURNAL ALTÉRÉ à partir de l'entrée n° {index} : {reason}",
        # anomalies
        "anomalies_title": "Alertes",
        "anomalies_intro": "Comportements inhabituels des {hours} dernières heures, comparés à l'historique de "
                           "chaque client sur les {days} jours précédents.",
        "no_anomalies": "Aucune alerte : rien d'inhabituel sur la période.",
        # operations dashboard
        "nav_dashboard": "Tableau de bord",
        "dash_title": "Tableau de bord des opérations",
        "dash_intro": "Les 24 dernières heures (depuis le {start}), d'après les agrégats horaires du journal des "
                      "accès ; disjoncteurs et lots : maintenant. Heures locales ({zone}).",
        "dash_summary": "Requêtes : {ok} répondues, {refused} refusées, {errors} en erreur.",
        "dash_no_client": "(sans client)",
        "cat_ok": "répondues",
        "cat_refused": "refusées (4xx)",
        "cat_error": "erreurs (5xx)",
        "cat_pending": "en attente",
        "legend": "Légende",
        "dash_hours_title": "Requêtes par heure et par issue",
        "dash_hours_desc": "Colonnes empilées, une par heure : {ok} requêtes répondues, {refused} refusées et "
                           "{errors} en erreur sur 24 heures.",
        "dash_hour_bar": "{hour} : {ok} répondues, {refused} refusées, {errors} en erreur",
        "dash_hours_table": "Requêtes par heure",
        "dash_hour": "Heure",
        "dash_clients_title": "Requêtes par client sur 24 heures",
        "dash_clients_desc": "Barres empilées, une par client ({clients} clients) : répondues, refusées, en erreur.",
        "dash_client_bar": "{client} : {ok} répondues, {refused} refusées, {errors} en erreur",
        "dash_outcomes_table": "Requêtes par client et par issue (24 heures)",
        "dash_client_hours": "Par heure, pour les clients les plus actifs",
        "dash_client_hours_title": "Requêtes de {client} par heure",
        "dash_client_hours_desc": "Colonnes empilées, une par heure : {ok} répondues, {refused} refusées, {errors} en "
                                  "erreur pour {client} sur 24 heures.",
        "dash_client_hour_bar": "{client}, {hour} : {ok} répondues, {refused} refusées, {errors} en erreur",
        "dash_requests": "Requêtes",
        "dash_sources_title": "Administrations : temps de réponse p50 et p99 sur 24 heures",
        "dash_sources_desc": "Deux barres par administration ({sources}) : la médiane (p50) et le 99e centile (p99) "
                             "du temps d'appel, estimés d'après l'histogramme horaire.",
        "dash_source_p50": "{source} : p50 {ms} ms",
        "dash_source_p99": "{source} : p99 {ms} ms",
        "dash_source_total": "p99 {ms} ms · {rate} d'erreurs",
        "dash_sources_table": "Administrations sur 24 heures",
        "dash_calls": "Appels",
        "dash_errors": "Erreurs",
        "dash_error_rate": "Taux d'erreur",
        "dash_breakers": "Disjoncteurs (maintenant)",
        "dash_breaker_state": "État",
        "dash_breaker_window": "Appels dans la fenêtre",
        "dash_breaker_failures": "Taux d'échec",
        "dash_breaker_refused": "Appels refusés",
        "breaker_closed": "fermé (les appels passent)",
        "breaker_open": "ouvert (appels refusés)",
        "breaker_half_open": "semi-ouvert (appels d'essai)",
        "dash_batches": "Lots de vérifications (7 derniers jours)",
        "dash_batch_title": "Avancement du lot {batch}",
        "dash_batch_desc": "{done} faits, {failed} en échec, {pending} en attente sur {total}.",
        "dash_batch_done": "{count} faits",
        "dash_batch_failed": "{count} en échec",
        "dash_batch_pending": "{count} en attente",
        "dash_batch": "Lot",
        "dash_batch_status": "Statut",
        "dash_total": "Sujets",
        "dash_done": "Faits",
        "dash_failed": "En échec",
        "dash_pending": "En attente",
        "dash_none": "Rien sur la période.",
        "severity": "Gravité",
        "severity_high": "élevée",
        "severity_medium": "moyenne",
        "severity_low": "faible",
        "kind_volume": "Volume inhabituel",
        "kind_outside_hours": "Accès hors des heures de travail",
        "kind_refusal_burst": "Rafale de refus",
        "kind_citizen_many_clients": "Citoyen consulté par de nombreux clients",
        "kind_rare_purpose": "Motif rarement utilisé",
        "kind_anonymous_refusals": "Refus sans client identifié",
        "flag_entries": "Entrées concernées ({count})",
        "flag_more": "et {more} autres",
        "flag_period": "Du {start} au {end}",
        "scan_truncated": "Seules les {count} entrées les plus récentes de chacun de ces clients ont été "
                          "examinées : {clients}.",
        "scan_truncated_unattributed": "Seules les {count} plus récentes des requêtes sans client identifié ont "
                                       "été examinées.",
        # errors
        "error_title": "Erreur",
        "error_404": "Cette page n'existe pas.",
        "error_403": "Action refusée.",
        "error_400": "La demande est invalide.",
        "error_429": "Trop de demandes. Réessayez plus tard.",
        "error_500": "Une erreur interne est survenue. Elle a été journalisée.",
        "error_503": "Le service est momentanément indisponible.",
        "back_to_search": "Retour à la recherche",
        "request_ref": "Référence de la requête : {request_id}",
        "yes": "oui",
        "no": "non",
        "colon": " : ",
    },
    "en": {
        "app_title": "Security officers' console",
        "skip": "Skip to content",
        "nav_label": "Main navigation",
        "nav_search": "Search",
        "nav_anomalies": "Anomalies",
        "nav_integrity": "Log integrity",
        "signed_in_as": "Signed in as",
        "logout": "Sign out",
        "lang_switch": "Français",
        "lang_switch_label": "Passer en français",
        "footer": "Data interconnection gateway — ANSS. Every use of this console is itself recorded in the "
                  "access log.",
        "login_title": "Sign in",
        "login_intro": "For authorised security officers only. What you look at is logged.",
        "officer_id": "Officer id",
        "password": "Password",
        "login_submit": "Sign in",
        "login_failed": "Wrong officer id or password.",
        "login_throttled": "Too many sign-in attempts. Wait before trying again (the wait doubles).",
        "login_expired": "Your session has expired or is no longer valid: please sign in again.",
        "logged_out": "You are signed out.",
        "form_expired": "The form has expired. Reload the page and try again.",
        "search_title": "Search the access log",
        "filters": "Filters",
        "since": "From (inclusive)",
        "until": "Until (exclusive)",
        "time_hint": "Local time ({zone})",
        "client": "Client",
        "purpose": "Purpose",
        "case_ref": "Case reference",
        "outcome": "Outcome",
        "check": "Check",
        "source": "Source",
        "citizen": "Citizen",
        "citizen_kind": "Identifier type",
        "citizen_value": "Citizen's identifier",
        "citizen_hint": "The identifier is never stored: the gateway computes its pseudonym.",
        "subject": "Citizen's pseudonym",
        "any": "(any)",
        "search_submit": "Search",
        "results": "Results",
        "results_caption": "Access-log entries, newest first",
        "no_results": "No entry matches these filters.",
        "next_page": "Next page",
        "first_page": "First page",
        "index": "No.",
        "time": "Date and time",
        "status": "HTTP status",
        "open_entry": "Open entry {index}",
        "searching_subject": "Searching by pseudonym {subject}",
        "invalid_filter": "Invalid filter: {detail}",
        "entry_title": "Entry no. {index}",
        "entry_fields": "What the entry records",
        "method_path": "Request",
        "legal_basis": "Legal basis",
        "consent_id": "Consent",
        "checks": "Checks",
        "sources": "Sources contacted",
        "latency": "Latency (ms)",
        "request_hmac": "Request digest (keyed HMAC-SHA256)",
        "response_hmac": "Response digest (keyed HMAC-SHA256)",
        "request_id": "Request id",
        "detail": "Details",
        "leaf_hash": "Leaf hash (RFC 9162)",
        "entry_pruned": "This entry was pruned (retention period): only its hash is kept.",
        "same_citizen": "Other entries about this citizen",
        "proof_title": "Inclusion proof",
        "proof_verified": "Verified: this entry is included in the tree of {size} entries whose head was signed "
                          "on {time} (key {kid}); the inclusion proof holds {hashes} hashes.",
        "proof_pending": "Not yet covered by a signed tree head: the next head is signed within {seconds} seconds "
                         "at most.",
        "proof_failed": "FAILED: the inclusion proof does not match the signed tree head. The log may have been "
                        "altered; run a full verification.",
        "head_invalid": "FAILED: the latest tree head's signature is not valid ({reason}).",
        "root_hash": "Root",
        "integrity_title": "Access-log integrity",
        "latest_head": "Latest signed tree head",
        "tree_size": "Tree size",
        "signed_at": "Signed on",
        "key": "Key",
        "signature": "Signature",
        "signature_ok": "valid",
        "signature_bad": "NOT VALID ({reason})",
        "no_head": "No tree head has been signed yet.",
        "entries_total": "Entries in the log",
        "unsigned_tail": "Entries not yet covered by a signed head",
        "last_verification": "Last full verification",
        "never_verified": "No full verification has been run from the console yet.",
        "verified_by": "on {time} by {officer}",
        "verify_now": "Verify now",
        "verify_hint": "Recomputes the whole tree from the entries and checks every signed head. May take a while "
                       "on a large log.",
        "verify_intact": "Log intact: {size} entries recomputed, every signed head verified, the search index "
                         "true to every entry.",
        "verify_broken": "LOG ALTERED from entry no. {index}: {reason}",
        "anomalies_title": "Anomalies",
        "anomalies_intro": "Unusual behaviour over the last {hours} hours, compared with each client's own history "
                           "over the {days} days before.",
        "no_anomalies": "No anomaly: nothing unusual over the period.",
        # operations dashboard
        "nav_dashboard": "Dashboard",
        "dash_title": "Operations dashboard",
        "dash_intro": "The last 24 hours (since {start}), from the access log's hourly aggregates; breakers and "
                      "batches: now. Local times ({zone}).",
        "dash_summary": "Requests: {ok} answered, {refused} refused, {errors} errors.",
        "dash_no_client": "(no client)",
        "cat_ok": "answered",
        "cat_refused": "refused (4xx)",
        "cat_error": "errors (5xx)",
        "cat_pending": "pending",
        "legend": "Legend",
        "dash_hours_title": "Requests per hour by outcome",
        "dash_hours_desc": "Stacked columns, one per hour: {ok} requests answered, {refused} refused and {errors} "
                           "errors over 24 hours.",
        "dash_hour_bar": "{hour}: {ok} answered, {refused} refused, {errors} errors",
        "dash_hours_table": "Requests per hour",
        "dash_hour": "Hour",
        "dash_clients_title": "Requests by client over 24 hours",
        "dash_clients_desc": "Stacked bars, one per client ({clients} clients): answered, refused, errors.",
        "dash_client_bar": "{client}: {ok} answered, {refused} refused, {errors} errors",
        "dash_outcomes_table": "Requests by client and outcome (24 hours)",
        "dash_client_hours": "Per hour, for the busiest clients",
        "dash_client_hours_title": "Requests of {client} per hour",
        "dash_client_hours_desc": "Stacked columns, one per hour: {ok} answered, {refused} refused, {errors} errors "
                                  "for {client} over 24 hours.",
        "dash_client_hour_bar": "{client}, {hour}: {ok} answered, {refused} refused, {errors} errors",
        "dash_requests": "Requests",
        "dash_sources_title": "Administrations: p50 and p99 response time over 24 hours",
        "dash_sources_desc": "Two bars per administration ({sources}): the median (p50) and the 99th percentile "
                             "(p99) of the call time, estimated from the hourly histogram.",
        "dash_source_p50": "{source}: p50 {ms} ms",
        "dash_source_p99": "{source}: p99 {ms} ms",
        "dash_source_total": "p99 {ms} ms · {rate} errors",
        "dash_sources_table": "Administrations over 24 hours",
        "dash_calls": "Calls",
        "dash_errors": "Errors",
        "dash_error_rate": "Error rate",
        "dash_breakers": "Circuit breakers (now)",
        "dash_breaker_state": "State",
        "dash_breaker_window": "Calls in the window",
        "dash_breaker_failures": "Failure rate",
        "dash_breaker_refused": "Calls refused",
        "breaker_closed": "closed (calls go through)",
        "breaker_open": "open (calls refused)",
        "breaker_half_open": "half-open (trial calls)",
        "dash_batches": "Verification batches (last 7 days)",
        "dash_batch_title": "Progress of batch {batch}",
        "dash_batch_desc": "{done} done, {failed} failed, {pending} pending of {total}.",
        "dash_batch_done": "{count} done",
        "dash_batch_failed": "{count} failed",
        "dash_batch_pending": "{count} pending",
        "dash_batch": "Batch",
        "dash_batch_status": "Status",
        "dash_total": "Subjects",
        "dash_done": "Done",
        "dash_failed": "Failed",
        "dash_pending": "Pending",
        "dash_none": "Nothing over the period.",
        "severity": "Severity",
        "severity_high": "high",
        "severity_medium": "medium",
        "severity_low": "low",
        "kind_volume": "Unusual volume",
        "kind_outside_hours": "Access outside working hours",
        "kind_refusal_burst": "Burst of refusals",
        "kind_citizen_many_clients": "Citizen looked up by many clients",
        "kind_rare_purpose": "Rarely used purpose",
        "kind_anonymous_refusals": "Refusals without an identified client",
        "flag_entries": "Entries concerned ({count})",
        "flag_more": "and {more} more",
        "flag_period": "From {start} to {end}",
        "scan_truncated": "Only the {count} most recent entries of each of these clients were examined: "
                          "{clients}.",
        "scan_truncated_unattributed": "Only the {count} most recent requests without an identified client were "
                                       "examined.",
        "error_title": "Error",
        "error_404": "This page does not exist.",
        "error_403": "Action refused.",
        "error_400": "The request is not valid.",
        "error_429": "Too many requests. Try again later.",
        "error_500": "An internal error occurred. It has been logged.",
        "error_503": "The service is temporarily unavailable.",
        "back_to_search": "Back to the search",
        "request_ref": "Request reference: {request_id}",
        "yes": "yes",
        "no": "no",
        "colon": ": ",
    },
}


def from_accept_language(header: str | None) -> str | None:
    """The first of our languages the browser prefers (RFC 9110 quality values), if any."""
    ranked: list[tuple[float, int, str]] = []
    for position, part in enumerate((header or "").split(",")):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                quality = 0.0
        primary = tag.strip().lower().split("-")[0]
        if primary in LANGUAGES and quality > 0:
            ranked.append((-quality, position, primary))
    return min(ranked)[2] if ranked else None


def negotiate(request: web.Request) -> str:
    asked = request.query.get("lang")
    if asked in LANGUAGES:
        return asked
    remembered = request.cookies.get(LANG_COOKIE)
    if remembered in LANGUAGES:
        return remembered
    return from_accept_language(request.headers.get("Accept-Language")) or DEFAULT


class Translator:
    """``t("key", name=value)``: the message in the page's language with its placeholders filled."""

    def __init__(self, lang: str, zone: str) -> None:
        self.lang = lang if lang in LANGUAGES else DEFAULT
        self.messages: Mapping[str, str] = MESSAGES[self.lang]
        self.zone = ZoneInfo(zone)
        self.zone_name = zone

    def __call__(self, key: str, **values: object) -> str:
        text = self.messages[key]
        return text.format(**values) if values else text

    def hour_label(self, moment: datetime) -> str:
        """A clock hour in local time: ``14:00`` (French ``14 h``)."""
        local = moment.astimezone(self.zone)
        return f"{local.hour} h" if self.lang == "fr" else f"{local.hour:02d}:00"

    def percent(self, share: float) -> str:
        text = f"{share * 100:.1f}"
        return f"{text.replace('.', ',')} %" if self.lang == "fr" else f"{text}%"

    def when(self, moment: datetime | str | None) -> str:
        """A time as people read it here: local time, with its offset from UTC."""
        if not moment:
            return ""
        if isinstance(moment, str):
            try:
                parsed = datetime.fromisoformat(moment)
            except ValueError:
                return moment
        else:
            parsed = moment
        local = parsed.astimezone(self.zone)
        offset = local.strftime("%z")
        zone = f"UTC{offset[:3]}:{offset[3:]}"
        stamp = local.strftime("%d/%m/%Y %H:%M:%S") if self.lang == "fr" else local.strftime("%Y-%m-%d %H:%M:%S")
        return f"{stamp} ({zone})"
