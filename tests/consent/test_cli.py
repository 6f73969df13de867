"""``anss-gateway consent grant|revoke|list|show``: the ANSS office on the configured registry, every action
in the access log — and a running gateway follows what the office records, at once."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from gateway.audit.sqlite.store import verify_database
from gateway.cli.main import main
from gateway.config.settings import load
from tests.consent.conftest import GRANTEE, PURPOSE, calls, entries, last_entry
from tests.gateway.conftest import build_stack

IDCS = "7153094029"


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, Any, str]:
    code = main(["consent", *args, "--operator", "agent-7"])
    out, err = capsys.readouterr()
    return code, json.loads(out) if out.strip() else None, err


def grant_args(idcs: str = IDCS, *extra: str) -> list[str]:
    return ["grant", "--idcs", idcs, "--grantee", GRANTEE, "--purpose", PURPOSE, "--check", "identity",
            "--check", "household", "--valid-until", "2099-12-31T23:59:59Z",
            "--evidence", "document:ASD-12/2026-123", *extra]


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("ANSS_GATEWAY_STATE_DIR", str(tmp_path / "state"))
    return tmp_path / "state"


class Log:
    def __init__(self, state: Path) -> None:
        self.path = load(env={"ANSS_GATEWAY_STATE_DIR": str(state)}).audit_database

    def all(self) -> list[dict[str, Any]]:
        import sqlite3

        import orjson

        conn = sqlite3.connect(self.path)
        try:
            return [dict(orjson.loads(r[0])) for r in conn.execute("SELECT entry FROM access_log ORDER BY idx")]
        finally:
            conn.close()


def test_grant_list_show_revoke(state: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, consent, _ = run(capsys, *grant_args())
    assert code == 0 and consent["status"] == "active" and consent["granted_by"] == "cli:agent-7"
    consent_id = consent["consent_id"]
    assert run(capsys, "list", "--idcs", IDCS)[1] == {"consents": [consent]}
    assert run(capsys, "show", consent_id)[1] == consent
    code, revoked, _ = run(capsys, "revoke", consent_id, "--reason", "withdrawn by letter 2026/456")
    assert code == 0 and revoked["status"] == "revoked" and revoked["revoked_by"] == "cli:agent-7"
    code, again, _ = run(capsys, "revoke", consent_id, "--reason", "again")
    assert code == 0 and again == revoked

    logged = Log(state).all()
    assert [(e["method"], e["path"], e["status"], e["outcome"]) for e in logged] == [
        ("CLI", "consent grant", 201, "consent_granted"),
        ("CLI", "consent list", 200, "consents_listed"),
        ("CLI", "consent show", 200, "consent_shown"),
        ("CLI", "consent revoke", 200, "consent_revoked"),
        ("CLI", "consent revoke", 200, "consent_already_revoked"),
    ]
    for entry in logged:
        assert entry["client"] == "cli:agent-7" and entry["subject"] == consent["citizen"]
        assert len(entry["request_id"]) == 32
    for entry in (logged[0], *logged[2:]):
        assert (entry["purpose"], entry["consent_id"], entry["legal_basis"]) == (PURPOSE, consent_id, "consent")
    assert verify_database(Log(state).path) is None
    raw = b"".join(p.read_bytes() for p in state.glob("*.sqlite3*"))
    assert IDCS.encode() not in raw, "the identifier is stored nowhere"


@pytest.mark.parametrize(
    ("args", "exit_code", "outcome"),
    [
        (["show", "00000000-0000-4000-8000-000000000000"], 1, "not_found"),
        (["revoke", "not-a-consent-id", "--reason", "x"], 1, "not_found"),
        (grant_args("12345"), 2, "invalid_request"),
        (grant_args(IDCS, "--valid-from", "yesterday"), 2, "invalid_request"),
        (["grant", "--idcs", IDCS, "--grantee", "anss.asd", "--purpose", "asd.eligibility", "--check", "identity",
          "--valid-until", "2099-01-01T00:00:00Z", "--evidence", "form"], 2, "invalid_request"),
        (["list", "--idcs", "ABC"], 2, "invalid_request"),
        (["grant", "--idcs", IDCS, "--grantee", "mhpv.housing", "--purpose", "partner.social-housing", "--check",
          "identity", "--valid-until", "2099-01-01T00:00:00Z", "--evidence", f"document:file-{IDCS}"], 2,
         "evidence_personal_data"),
        (["grant", "--idcs", IDCS, "--grantee", "mhpv.housing", "--purpose", "partner.social-housing", "--check",
          "identity", "--valid-until", "2099-01-01T00:00:00Z", "--evidence", "signed by Fatima at Sale"], 2,
         "invalid_request"),
    ],
)
def test_refusals_are_reported_and_logged(state: Path, capsys: pytest.CaptureFixture[str], args: list[str],
                                          exit_code: int, outcome: str) -> None:
    code, document, err = run(capsys, *args)
    assert (code, document) == (exit_code, None) and err.startswith("refused")
    entry = Log(state).all()[-1]
    assert (entry["method"], entry["path"], entry["outcome"]) == ("CLI", f"consent {args[0]}", outcome)
    assert entry["detail"]["reason"] in err


async def test_the_gateway_follows_the_office_at_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """Granted by the CLI (another process's view of the same files), used, revoked by the CLI: refused."""
    async with build_stack(tmp_path) as stack:
        monkeypatch.setenv("ANSS_GATEWAY_STATE_DIR", str(stack.settings.state_dir))
        idcs = stack.population.fixture("salaried_parent").father.idcs
        assert await asyncio.to_thread(main, ["consent", *grant_args(idcs)]) == 0
        consent_id = json.loads(capsys.readouterr().out)["consent_id"]
        async with stack.client_for(GRANTEE) as housing:
            assert (await _verify(housing, idcs)).status == 200
            assert last_entry(stack)["consent_id"] == consent_id
            assert await asyncio.to_thread(main, ["consent", "revoke", consent_id, "--reason", "withdrawn"]) == 0
            before = calls(stack)
            refused = await _verify(housing, idcs)
        assert (refused.status, refused.json()["code"]) == (403, "consent_revoked")
        assert calls(stack) == before
        assert [e["outcome"] for e in entries(stack)][-3:] == ["answered", "consent_revoked", "consent_revoked"]
        assert [e["method"] for e in entries(stack)][-3:] == ["POST", "CLI", "POST"]


async def _verify(client: Any, idcs: str) -> Any:
    return await client.verify({"idcs": idcs}, PURPOSE, "HOUSING-CLI", ["identity", "household"])


def test_an_unusable_registry_is_reported(state: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state.mkdir(parents=True)
    (state / "consents.sqlite3").write_bytes(b"this is not a database" * 100)
    assert main(["consent", "list", "--idcs", IDCS]) == 1
    assert "cannot use the consent registry" in capsys.readouterr().err
