"""Every mistake in an administration's file is one line naming the file, the line and the setting."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from gateway.cli.main import main
from gateway.config.connectors import build_connectors, load_connectors
from gateway.config.settings import ConfigError
from tests.config_support import ROOT, config_with, line_named


def build_error(config: Path) -> tuple[ConfigError, Path]:
    with pytest.raises(ConfigError) as caught:
        build_connectors(load_connectors(config / "connectors", {}), ROOT)
    message = str(caught.value)
    assert "\n" not in message and "Traceback" not in message, message
    path = Path(message.split(":")[0])
    assert re.match(rf"^{re.escape(str(path))}:\d+ connector ", message), message
    return caught.value, path


def edited(tmp_path: Path, file: str, old: str, new: str) -> Path:
    return config_with(tmp_path, old, new, f"connectors/{file}")


def test_the_shipped_administrations_build(tmp_path: Path) -> None:
    connectors = build_connectors(load_connectors(ROOT / "config" / "connectors", {}), ROOT)
    assert {name: sorted(c.operations) for name, c in connectors.items()} == {
        "civil_registry": ["family", "person"], "education": ["enrolment"], "employment": ["declarations"],
        "health": ["coverage"], "social_registry": ["social_registration"]}


def test_an_unknown_kind_names_its_line(tmp_path: Path) -> None:
    error, path = build_error(edited(tmp_path, "health.toml", 'kind = "soap"', 'kind = "soapy"'))
    assert path.name == "health.toml"
    assert line_named(error, path) == 'kind = "soapy"'
    assert "unknown connector kind 'soapy'" in str(error) and "'rest'" in str(error)


def test_a_mapping_module_that_does_not_exist_names_its_line(tmp_path: Path) -> None:
    config = edited(tmp_path, "education.toml", 'audience = "men.massar"',
                    'audience = "men.massar"\nmapping = "acme.nowhere"')
    text = (config / "connectors" / "education.toml").read_text(encoding="utf-8")
    (config / "connectors" / "education.toml").write_text(text.split("[operations.enrolment]")[0], encoding="utf-8")
    error, path = build_error(config)
    assert line_named(error, path) == 'mapping = "acme.nowhere"'
    assert "cannot import 'acme.nowhere'" in str(error)


def test_a_mapping_and_operations_together_are_refused(tmp_path: Path) -> None:
    config = edited(tmp_path, "education.toml", 'audience = "men.massar"',
                    'audience = "men.massar"\nmapping = "tests.connectors.mapping_module"')
    error, path = build_error(config)
    assert line_named(error, path).startswith("mapping = ")
    assert "either `mapping` or [operations]" in str(error)


def test_a_missing_wsdl_names_its_line(tmp_path: Path) -> None:
    error, path = build_error(edited(tmp_path, "health.toml", "health_amo.wsdl", "health_amo_v9.wsdl"))
    assert line_named(error, path) == 'wsdl = "schemas/wsdl/health_amo_v9.wsdl"'
    assert "not found" in str(error)


def test_a_wsdl_that_does_not_parse_names_its_line(tmp_path: Path) -> None:
    broken = tmp_path / "broken.wsdl"
    broken.write_text("<wsdl:definitions xmlns:wsdl='http://schemas.xmlsoap.org/wsdl/'><oops>", encoding="utf-8")
    error, path = build_error(edited(tmp_path, "health.toml", '"schemas/wsdl/health_amo.wsdl"', f'"{broken}"'))
    assert line_named(error, path) == f'wsdl = "{broken}"'
    assert "cannot load WSDL" in str(error)


def test_a_wsdl_operation_that_does_not_exist_names_its_line(tmp_path: Path) -> None:
    error, path = build_error(edited(tmp_path, "civil_registry.toml", '"GetFamily"', '"GetFamilies"'))
    assert line_named(error, path) == 'soap_operation = "GetFamilies"'
    assert "operations.family.soap_operation" in str(error)


def test_a_field_path_the_wsdl_types_lack_names_its_line(tmp_path: Path) -> None:
    error, path = build_error(edited(tmp_path, "civil_registry.toml", '"person.lastNameAr"', '"person.lastNameArabic"'))
    assert line_named(error, path) == 'last_name_ar = "person.lastNameArabic"'
    assert "no such element" in str(error) and "lastNameAr" in str(error)


def test_a_field_whose_type_does_not_fit_the_wsdl_names_its_line(tmp_path: Path) -> None:
    error, path = build_error(edited(tmp_path, "civil_registry.toml",
                                     'birth_date = { at = "person.birthDate", type = "date" }',
                                     'birth_date = { at = "person.birthDate", type = "bool" }'))
    assert line_named(error, path).startswith("birth_date = ")
    assert "fits bool" in str(error)


def test_a_repeated_element_read_as_one_value_is_refused(tmp_path: Path) -> None:
    error, path = build_error(edited(tmp_path, "civil_registry.toml", 'each = "children.member"',
                                     'each = "children"'))
    assert line_named(error, path) == 'each = "children"'
    assert "not a repeated element" in str(error)


def test_a_missing_record_schema_names_its_line(tmp_path: Path) -> None:
    error, path = build_error(edited(tmp_path, "education.toml", 'record = "enrolment"', 'record = "enrollment"'))
    assert line_named(error, path) == 'record = "enrollment"'
    assert "record schema" in str(error) and "not found" in str(error)


def test_a_field_the_record_does_not_have_names_its_line(tmp_path: Path) -> None:
    error, path = build_error(edited(tmp_path, "education.toml", 'school = "/school"',
                                     'school = "/school"\nregion = "/region"'))
    assert line_named(error, path) == 'region = "/region"'
    assert "no property 'region'" in str(error)


def test_a_template_naming_an_undeclared_parameter_names_its_line(tmp_path: Path) -> None:
    error, path = build_error(edited(tmp_path, "education.toml", '"/massar/v1/pupils/{idcs}/enrolment"',
                                     '"/massar/v1/pupils/{pupil}/enrolment"'))
    assert line_named(error, path) == 'path = "/massar/v1/pupils/{pupil}/enrolment"'
    assert "{pupil} is not a declared parameter" in str(error)


def test_two_administrations_claiming_one_operation_is_a_start_up_error(tmp_path: Path) -> None:
    config = config_with(tmp_path, 'name = "education"', 'name = "education"', "connectors/education.toml")
    copy = config / "connectors" / "massar_mirror.toml"
    shutil.copy(config / "connectors" / "education.toml", copy)
    copy.write_text(copy.read_text(encoding="utf-8").replace('name = "education"', 'name = "massar_mirror"'),
                    encoding="utf-8")
    error, path = build_error(config)
    assert path == copy
    assert line_named(error, path) == "[operations.enrolment]"
    assert "'education'" in str(error) and "already answers this operation" in str(error)


def test_serve_with_a_broken_administration_prints_one_line_and_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = edited(tmp_path, "health.toml", 'kind = "soap"', 'kind = "carrier-pigeon"')
    assert main(["--config", str(config), "serve"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("configuration error: ") and "health.toml:" in err and "carrier-pigeon" in err


@pytest.mark.parametrize(("old", "new"), [
    ("timeout_s = 2.0", "timeout_s = -1"), ("timeout_s = 2.0", "timeout_s = 0"),
    ("connect_timeout_s = 1.0", "connect_timeout_s = -1.0"), ("max_connections = 32", "max_connections = 0"),
    ("max_response_bytes = 262144", "max_response_bytes = -5")])
def test_a_deadline_count_or_size_must_be_above_zero(tmp_path: Path, old: str, new: str) -> None:
    """0 calls in flight would wait forever, a deadline of 0 would time every call out: refused at start, at the
    setting's own line (not the one of ``connect_timeout_s`` for ``timeout_s``)."""
    config = edited(tmp_path, "education.toml", old, new)
    with pytest.raises(ConfigError) as caught:
        load_connectors(config / "connectors", {})
    path = config / "connectors" / "education.toml"
    assert line_named(caught.value, path) == new
    assert f"`{new.split(' ')[0]}` must be greater than 0" in str(caught.value)


@pytest.mark.parametrize("url", ["http://127.0.0.1:8102/x?y=1", "http://127.0.0.1:8102/#top", "ftp://host", "host:80",
                                 "http://127.0.0.1:99999", "http://127.0.0.1:0", "http://127.0.0.1:x",
                                 "http://user:pw@127.0.0.1:8102", "http://@127.0.0.1:8102", "http://:8102"])
def test_a_base_url_is_an_origin_and_a_prefix_only(tmp_path: Path, url: str) -> None:
    message = refused_at_its_line(tmp_path, 'base_url = "http://127.0.0.1:8102"', f'base_url = "{url}"')
    assert "without credentials, a query or a fragment" in message


@pytest.mark.parametrize("name", ["Education", "edu-cation", "1education", "edu.cation"])
def test_an_administrations_name_is_lower_case(tmp_path: Path, name: str) -> None:
    assert "must be lower case" in refused_at_its_line(tmp_path, 'name = "education"', f'name = "{name}"')


def refused_at_its_line(tmp_path: Path, old: str, new: str) -> str:
    """education.toml with ``old`` made ``new``: refused at start, naming that line; the message."""
    config = edited(tmp_path, "education.toml", old, new)
    with pytest.raises(ConfigError) as caught:
        load_connectors(config / "connectors", {})
    assert line_named(caught.value, config / "connectors" / "education.toml") == new
    return str(caught.value)


def test_a_type_mistake_names_the_settings_own_line(tmp_path: Path) -> None:
    config = edited(tmp_path, "education.toml", "timeout_s = 2.0", 'timeout_s = "2"')
    with pytest.raises(ConfigError) as caught:
        load_connectors(config / "connectors", {})
    assert line_named(caught.value, config / "connectors" / "education.toml") == 'timeout_s = "2"'
