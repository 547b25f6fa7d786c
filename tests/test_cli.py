"""The console scripts exist and say honestly that the server and client are still to come."""

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


@pytest.mark.parametrize("cli", [server_cli, client_cli], ids=["coord-server", "coordctl"])
def test_without_command_says_not_yet_and_fails(
    cli: object, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main([]) == 2  # type: ignore[attr-defined]
    assert "not implemented yet" in capsys.readouterr().err
