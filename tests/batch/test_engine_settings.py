"""``[batches]`` picks the engine: embedded on SQLite, procrastinate on PostgreSQL (or as told, when it can)."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config.batches import BatchSettings, engine_for, load_batches
from gateway.config.settings import ConfigError, load


def test_auto_is_embedded_on_sqlite_and_procrastinate_on_postgres() -> None:
    auto = BatchSettings()
    assert (engine_for(auto, "sqlite"), engine_for(auto, "postgres")) == ("embedded", "procrastinate")
    assert engine_for(BatchSettings(engine="embedded"), "postgres") == "embedded"
    with pytest.raises(ConfigError, match="needs PostgreSQL"):
        engine_for(BatchSettings(engine="procrastinate"), "sqlite")


def test_the_shipped_configuration_runs_make_run_embedded(tmp_path: Path) -> None:
    settings = load(env={"ANSS_GATEWAY_STATE_DIR": str(tmp_path)})
    assert engine_for(settings.batches, settings.storage_backend) == "embedded"
    assert not settings.batches.serve_works
    told = load(env={"ANSS_GATEWAY_STATE_DIR": str(tmp_path), "ANSS_GATEWAY_BATCH_ENGINE": "embedded"})
    assert told.batches.engine == "embedded"


@pytest.mark.parametrize(("table", "message"), [
    ({"engine": "celery"}, "`engine` must be one of"),
    ({"heartbeat_s": 30, "stalled_after_s": 30}, "`heartbeat_s` must be shorter"),
    ({"recover_every_s": 0}, "`recover_every_s` must be a number of seconds"),
    ({"serve_works": "yes"}, "`serve_works` must be true or false"),
    ({"worker_concurrency": 0}, "`worker_concurrency` must be a positive integer"),
])
def test_mistakes_are_one_line_naming_the_setting(table: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_batches(table, Path("."), "gateway.toml [batches]")
