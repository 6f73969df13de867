"""``client verify`` and ``client call`` against a real gateway and the real simulators, run as a user would."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.cli.main import main
from tests.gateway.conftest import Stack, build_stack


@pytest.fixture
async def stack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Stack]:
    async with build_stack(tmp_path) as built:
        monkeypatch.setenv("ANSS_GATEWAY_STATE_DIR", str(built.settings.state_dir))
        yield built


async def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = await asyncio.to_thread(main, list(argv))
    out, err = capsys.readouterr()
    return code, out, err


async def test_client_call_calls_a_service_as_the_one_client_entitled_to_it(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    father = stack.population.fixture("deceased_father").father
    code, out, err = await run(capsys, "client", "call", "rnp.person", "--param", f"idcs={father.idcs}",
                               "--url", stack.gateway.url, "--case-ref", "DECES-1")
    assert code == 0, err
    assert "response signature valid" in err
    body = json.loads(out)
    assert (body["service"], body["purpose"], body["found"]) == ("rnp.person", "ms.death-verification", True)
    assert body["record"]["alive"] is False


async def test_client_call_exits_1_on_a_refusal_and_2_on_a_usage_mistake(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = await run(capsys, "client", "call", "rnp.person", "--param", "idcs=12",
                               "--url", stack.gateway.url)
    assert code == 1 and json.loads(out)["code"] == "invalid_request" and "HTTP 400" in err
    code, _out, err = await run(capsys, "client", "call", "rnp.nowhere", "--url", stack.gateway.url)
    assert code == 2 and "no service 'rnp.nowhere'" in err and "rnp.person" in err
    with pytest.raises(SystemExit) as exited:  # argparse refuses it, before anything is sent
        await run(capsys, "client", "call", "rnp.person", "--param", "idcs", "--url", stack.gateway.url)
    assert exited.value.code == 2 and "name=value" in capsys.readouterr().err


async def test_client_services_lists_what_a_client_may_use(stack: Stack, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = await run(capsys, "client", "services", "--client", "men.bourses", "--url", stack.gateway.url)
    assert code == 0, err
    assert [s["service"] for s in json.loads(out)["services"]] == ["cnss.declarations"]


async def test_client_verify_exits_1_when_no_check_could_be_verified(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    for control in stack.simulators.controls.values():
        control.fail = True
    idcs = stack.population.fixture("salaried_parent").father.idcs
    code, out, err = await run(capsys, "client", "verify", "--idcs", idcs, "--check", "identity",
                               "--url", stack.gateway.url)
    assert code == 1
    assert json.loads(out)["checks"]["identity"]["status"] == "unavailable"
    assert "no check could be verified" in err


async def test_client_verify_explain_prints_the_asd_computation(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    mother = stack.population.fixture("deceased_father").mother.idcs
    code, out, err = await run(capsys, "client", "verify", "--idcs", mother, "--check", "asd_entitlement",
                               "--as-of", "2026-09-01", "--explain", "--url", stack.gateway.url)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == "asd_entitlement:"
    assert lines[1] == "  Barème en vigueur le 2026-09-01 : celui du 2026-01-01."
    assert lines[-1] == "  Montant mensuel indicatif : 1200 MAD."  # three orphans of father at 400
    code, out, err = await run(capsys, "client", "verify", "--idcs", mother, "--check", "asd_entitlement",
                               "--as-of", "2025-12-01", "--language", "en", "--explain", "--url", stack.gateway.url)
    assert code == 0, err
    assert out.splitlines()[-1] == "  Indicative monthly amount: 1125 MAD."  # 3 x 375


async def test_batch_commands_submit_follow_and_fetch_signed_results(
    stack: Stack, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    subjects = tmp_path / "subjects.jsonl"
    subjects.write_text("".join(json.dumps({"idcs": stack.population.fixture(name).father.idcs}) + "\n"
                                for name in ("amo_tadamon", "salaried_parent")), encoding="utf-8")
    code, out, err = await run(capsys, "batch", "submit", "--file", str(subjects), "--case-ref-prefix", "CLI-B-",
                               "--check", "identity", "--wait", "--url", stack.gateway.url)
    assert code == 0, err
    batch_id = out.strip()
    assert "2/2" in err and "done" in err
    results = tmp_path / "results.jsonl"
    code, _out, err = await run(capsys, "batch", "results", batch_id, "--out", str(results),
                                "--url", stack.gateway.url)
    assert code == 0, err
    lines = [json.loads(line) for line in results.read_text(encoding="utf-8").splitlines()]
    assert [line["case_ref"] for line in lines] == ["CLI-B-1", "CLI-B-2"] and all("jws" in line for line in lines)
    code, out, _err = await run(capsys, "batch", "status", batch_id, "--url", stack.gateway.url)
    assert code == 0 and json.loads(out)["done"] == 2
    code, _out, err = await run(capsys, "batch", "status", "0" * 32, "--url", stack.gateway.url)
    assert code == 1 and "not_found" in err
    code, out, err = await run(capsys, "batch", "cancel", batch_id, "--url", stack.gateway.url)
    assert code == 0 and json.loads(out)["status"] == "done", "stdout holds the batch document, as status's"
