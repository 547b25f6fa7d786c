"""The distributions: the wheel and sdist build from a copy of what the Dockerfile copies,
``pip install coord`` (the wheel, in a fresh virtualenv) gives a working client and
coordctl without the server's packages, and the server's packages are the [server] extra.

The fresh virtualenv gets the wheel with ``--no-deps`` (no network, no index) and sees the
base dependencies (grpcio, protobuf, grpcio-health-checking) through a path file naming
this checkout's .venv; the server's packages, also there, are hidden by an import hook,
as if they had not been installed. About 15 s on the busy test machine."""

from __future__ import annotations

import email.parser
import re
import shutil
import subprocess
import sys
import sysconfig
import textwrap
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SERVER_ONLY = ("grpc_reflection", "prometheus_client", "aiohttp")

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A wheel and an sdist built from a clean copy of the sources."""
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md", "MANIFEST.in", "Makefile"):
        shutil.copy(ROOT / name, src / name)
    (src / "tools").mkdir()
    shutil.copy(ROOT / "tools" / "protogen.py", src / "tools" / "protogen.py")
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("protos", "coord", "coord_server", "coord_client", "coord_common"):
        shutil.copytree(ROOT / name, src / name, ignore=ignore)
    out = tmp_path_factory.mktemp("dist")
    build = ("import sys; from setuptools import build_meta as b; out = sys.argv[1]; "  # build_meta rewrites argv
             "print(b.build_wheel(out)); print(b.build_sdist(out))")
    proc = subprocess.run([sys.executable, "-c", build, str(out)], cwd=src, capture_output=True, text=True,
                          timeout=150)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def name_of(requirement: str) -> str:
    """"protobuf<8,>=7.35.1" -> "protobuf"."""
    return re.split(r"[<>=!~ ;\[]", requirement, maxsplit=1)[0]


def metadata(wheel: Path) -> email.message.Message:
    with zipfile.ZipFile(wheel) as z:
        name = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        return email.parser.Parser().parsestr(z.read(name).decode())


def test_server_packages_are_an_extra(dist: Path) -> None:
    wheel = next(dist.glob("coord-*.whl"))
    requires = metadata(wheel).get_all("Requires-Dist") or []
    base = [r for r in requires if "extra ==" not in r]
    server = [r for r in requires if "extra == \"server\"" in r]
    assert sorted(name_of(r) for r in base) == ["grpcio", "grpcio-health-checking", "protobuf"]
    assert {name_of(r) for r in server} == {"grpcio-reflection", "prometheus-client", "aiohttp"}
    assert next(dist.glob("coord-*.tar.gz"), None) is not None, sorted(p.name for p in dist.iterdir())
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
    assert "coord_client/py.typed" in names and "coord_client/cli.py" in names


def test_the_wheel_alone_gives_the_client_and_coordctl(dist: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=60)
    py = venv / "bin" / "python"
    site = Path(subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    # The base dependencies come from this checkout's environment; the wheel goes in alone.
    (site / "deps-from-checkout.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    wheel = next(dist.glob("coord-*.whl"))
    install = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--quiet",
                              "--target", str(site), str(wheel)], capture_output=True, text=True, timeout=120)
    assert install.returncode == 0, install.stderr
    # Hide the server's packages, as after `pip install coord`.
    hide = textwrap.dedent(f"""
        import sys
        class Hide:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in {SERVER_ONLY!r}:
                    raise ModuleNotFoundError(f"No module named {{name!r}} (hidden: not in the base install)")
                return None
        sys.meta_path.insert(0, Hide())
    """)
    (site / "hide_server_packages.py").write_text(hide)
    (site / "hide-server-packages.pth").write_text("import hide_server_packages\n")
    check = ("import coord_client, coord_client.cli, coord_client.aio, coord_client.hashring, coord_client.snapshot; "
             "from coord_client import Client, AsyncClient; print(coord_client.__file__)")
    proc = subprocess.run([str(py), "-c", check], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().startswith(str(site)), f"coord_client came from {proc.stdout.strip()}, not the wheel"
    # The console scripts are written for the fresh interpreter only by a full install;
    # run them as their entry points.
    help_ = subprocess.run([str(py), "-c", "import sys; from coord_client.cli import main; sys.exit(main(['--help']))"],
                           cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert help_.returncode == 0 and "usage: coordctl" in help_.stdout, help_.stderr
    server = subprocess.run([str(py), "-c", "import sys; from coord_server.cli import main; sys.exit(main([]))"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert server.returncode == 2 and "coord[server]" in server.stderr, server.stderr
