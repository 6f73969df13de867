"""Connector kinds: the built-in ``rest`` kind and third-party kinds found through installed entry points."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import pytest

from connectors import registry
from connectors.base import ConnectorConfig, ConnectorFactory
from connectors.registry import ENTRY_POINT_GROUP, UnknownConnectorKind, available_kinds, factory_for
from connectors.rest import RestConnector

PLUGIN_MODULE = "acme_ldap_connector"
REST = cast(ConnectorFactory, RestConnector)
PLUGIN_SOURCE = '''
from connectors.base import CallContext, ConnectorConfig, Query, Record


class LdapConnector:
    def __init__(self, config: ConnectorConfig, root: object) -> None:
        self.config, self.root = config, root

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def operations(self) -> frozenset[str]:
        return frozenset({"person"})

    async def fetch(self, query: Query, ctx: CallContext) -> Record:
        raise NotImplementedError

    async def aclose(self) -> None:
        pass
'''


@pytest.fixture
def installed_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A third-party distribution installed the way pip lays it out: a module plus its dist-info."""
    (tmp_path / f"{PLUGIN_MODULE}.py").write_text(PLUGIN_SOURCE, encoding="utf-8")
    dist_info = tmp_path / "acme_ldap_connector-1.0.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-ldap-connector\nVersion: 1.0\n",
                                        encoding="utf-8")
    (dist_info / "entry_points.txt").write_text(
        f"[{ENTRY_POINT_GROUP}]\n"
        f"ldap = {PLUGIN_MODULE}:LdapConnector\n"
        f"rest = {PLUGIN_MODULE}:LdapConnector\n",
        encoding="utf-8",
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    sys.modules.pop(PLUGIN_MODULE, None)


def test_rest_is_built_in() -> None:
    assert factory_for("rest") is REST
    assert available_kinds()["rest"] == "connectors.rest:RestConnector"


def test_unknown_kind_is_refused() -> None:
    with pytest.raises(UnknownConnectorKind, match="carrier-pigeon"):
        factory_for("carrier-pigeon")


def test_third_party_kind_is_found_through_entry_points(installed_plugin: Path) -> None:
    kinds = available_kinds()
    assert kinds["ldap"] == f"{PLUGIN_MODULE}:LdapConnector"
    factory = factory_for("ldap")
    assert factory.__module__ == PLUGIN_MODULE
    config = ConnectorConfig(name="directory", kind="ldap", base_url="ldap://127.0.0.1:389",
                             audience="acme.directory", mapping="acme_ldap_connector")
    connector = registry.build(config, installed_plugin)
    assert connector.name == "directory"
    assert connector.operations == frozenset({"person"})


def test_third_party_kind_cannot_shadow_a_built_in(installed_plugin: Path) -> None:
    assert available_kinds()["rest"] == "connectors.rest:RestConnector"
    assert factory_for("rest") is REST


def test_third_party_kind_is_gone_once_uninstalled() -> None:
    assert "ldap" not in available_kinds()
    with pytest.raises(UnknownConnectorKind):
        factory_for("ldap")
