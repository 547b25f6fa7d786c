"""The console scripts: help works, and coord-server refuses bad settings with a clear message
(coordctl's commands are tested in tests/client)."""

from __future__ import annotations

import pytest

from coord_client import cli as client_cli
from coord_server import cli as server_cli


@pytest.mark.parametrize("cli", [server_cli, client_cli], ids=["coord-server", "coordctl"])
def test_help_exits_zero(cli: object, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["--help"])  # type: ignore[attr-defined]
    assert exited.value.code == 0
    assert "usage:" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv,names",
    [
        (["--listen", "nowhere"], "listen"),
        (["--heartbeat-ms", "100", "--election-ms", "100"], "election_ms"),
        (["--tick-ms", "30"], "tick_ms"),
        (["--name", "a", "--initial-cluster", "b=127.0.0.1:1"], "initial_cluster"),
        (["--initial-cluster", "a=1.2.3.4:5,a=1.2.3.4:6", "--name", "a"], "twice"),
        (["--join", "127.0.0.1:1", "--initial-cluster", "x=127.0.0.1:2", "--name", "x"], "not both"),
        (["--log-level", "loud"], "log_level"),
    ],
)
def test_coord_server_refuses_bad_settings(argv: list[str], names: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert server_cli.main(argv) == 2
    err = capsys.readouterr().err
    assert names in err and err.startswith("coord-server: ")


def test_coord_server_reads_toml(tmp_path: object, capsys: pytest.CaptureFixture[str]) -> None:
    import pathlib

    path = pathlib.Path(str(tmp_path)) / "coord.toml"
    path.write_text('name = "n1"\nheartbeat_ms = "fast"\n')
    assert server_cli.main(["--config", str(path)]) == 2
    assert "heartbeat_ms must be int" in capsys.readouterr().err
