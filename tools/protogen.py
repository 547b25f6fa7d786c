"""Generate the committed Python stubs from ``protos/``, or check that they are current.

    python tools/protogen.py            regenerate in place       (make proto)
    python tools/protogen.py --check    regenerate into a temporary directory and compare
                                        byte for byte with the committed files (make proto-check)

Rules:

1. ``protos/`` is the only source. Every ``.proto`` under it is compiled with the pinned
   grpcio-tools and mypy-protobuf of the running interpreter (the project's ``.venv``), as

       python -m grpc_tools.protoc -I protos --python_out=. --grpc_python_out=. \\
           --mypy_out=quiet:. --mypy_grpc_out=quiet:. protos/coord/v1/*.proto protos/coord/raft/v1/*.proto

   (etcd's v3 API under ``protos/coord/etcd/`` included: its files import each other as
   ``coord/etcd/...``, so they land in ``coord/etcd/`` beside coord's own), so
   ``protos/coord/v1/kv.proto`` (package ``coord.v1``) becomes ``coord/v1/kv_pb2.py``,
   ``kv_pb2.pyi``, ``kv_pb2_grpc.py`` and ``kv_pb2_grpc.pyi``, and generated modules import
   each other as ``from coord.v1 import common_pb2``: the same from a checkout and from
   an installed wheel, with no patching.
2. The output tree ``coord/`` is generated code only. Besides the stubs it holds an
   ``__init__.py`` with a one-line docstring in every package directory and a ``py.typed``
   marker, all written here. Anything else found under ``coord/`` is reported by
   ``--check`` (write hand-made code in ``coord_server/`` or ``coord_client/``).
3. ``--check`` names every stale, missing and unexpected file and exits with status 1.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import TextIO

ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "protos"
OUT_PACKAGE = "coord"
_GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py", "_pb2_grpc.pyi")
_EXTRA_NAMES = ("__init__.py", "py.typed")


class GenerationError(RuntimeError):
    """protoc, or one of its plugins, is missing or failed."""


def proto_files() -> list[Path]:
    """Every ``.proto`` file under ``protos/``, in a stable order."""
    return sorted(PROTO_DIR.rglob("*.proto"))


def _plugin(name: str) -> Path:
    # mypy-protobuf installs its protoc plugins as console scripts next to the interpreter.
    candidate = Path(sys.executable).parent / name
    if candidate.exists():
        return candidate
    found = shutil.which(name)
    if found is None:
        raise GenerationError(
            f"protoc plugin {name!r} not found next to {sys.executable} or on PATH; "
            "install the dev extras (make .venv)"
        )
    return Path(found)


def _run_protoc(args: list[str]) -> None:
    try:
        from grpc_tools import protoc
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise GenerationError("grpc_tools is not installed; run make .venv") from exc
    # `python -m grpc_tools.protoc` adds the well-known types' directory itself; main()
    # does not, so add it here (the first argument is the program name and is ignored).
    well_known = Path(protoc.__file__).parent / "_proto"
    status = protoc.main(["protoc", f"-I{PROTO_DIR}", f"-I{well_known}", *args])
    if status != 0:
        raise GenerationError(f"protoc failed with status {status}")


def generate(out_dir: Path) -> None:
    """Compile every proto into ``out_dir`` and write the package markers (rule 1, 2)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    protos = proto_files()
    if not protos:
        raise GenerationError(f"no .proto files under {PROTO_DIR}")
    _run_protoc(
        [
            f"--plugin=protoc-gen-mypy={_plugin('protoc-gen-mypy')}",
            f"--plugin=protoc-gen-mypy_grpc={_plugin('protoc-gen-mypy_grpc')}",
            f"--python_out={out_dir}",
            f"--grpc_python_out={out_dir}",
            f"--mypy_out=quiet:{out_dir}",
            f"--mypy_grpc_out=quiet:{out_dir}",
            *(str(p) for p in protos),
        ]
    )
    package_root = out_dir / OUT_PACKAGE
    for directory in sorted({p.parent for p in package_root.rglob("*_pb2.py")}):
        while True:
            rel = directory.relative_to(out_dir).as_posix()
            (directory / "__init__.py").write_text(
                f'"""Generated from protos/{rel} by `make proto`; do not edit."""\n'
            )
            if directory == package_root:
                break
            directory = directory.parent
    (package_root / "py.typed").write_text("")


def descriptor_set(out_file: Path) -> None:
    """Write a FileDescriptorSet of every proto, with source info (comments) kept."""
    _run_protoc(
        [
            f"--descriptor_set_out={out_file}",
            "--include_source_info",
            *(str(p) for p in proto_files()),
        ]
    )


def _is_managed(rel: Path) -> bool:
    return rel.name in _EXTRA_NAMES or rel.name.endswith(_GENERATED_SUFFIXES)


def _files(base: Path) -> dict[Path, bytes]:
    root = base / OUT_PACKAGE
    if not root.exists():
        return {}
    return {
        p.relative_to(base): p.read_bytes()
        for p in root.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }


def compare(fresh_dir: Path, committed_dir: Path = ROOT) -> list[str]:
    """Describe every difference between fresh output and the committed tree, one line each."""
    fresh, committed = _files(fresh_dir), _files(committed_dir)
    problems: list[str] = []
    for rel in sorted(fresh.keys() | committed.keys()):
        if rel not in committed:
            problems.append(f"missing:    {rel.as_posix()} (generated but not committed)")
        elif rel not in fresh:
            if _is_managed(rel):
                problems.append(f"stale:      {rel.as_posix()} (no longer generated; delete it)")
            else:
                problems.append(
                    f"unexpected: {rel.as_posix()} ({OUT_PACKAGE}/ holds generated code only)"
                )
        elif fresh[rel] != committed[rel]:
            problems.append(f"stale:      {rel.as_posix()} (differs from what protos/ generates)")
    return problems


def _write(fresh_dir: Path) -> list[str]:
    fresh, committed = _files(fresh_dir), _files(ROOT)
    changes: list[str] = []
    for rel, data in sorted(fresh.items()):
        if committed.get(rel) != data:
            target = ROOT / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
            changes.append(f"wrote   {rel.as_posix()}")
    for rel in sorted(committed.keys() - fresh.keys()):
        if _is_managed(rel):
            (ROOT / rel).unlink()
            changes.append(f"removed {rel.as_posix()}")
    return changes


def _print(lines: Iterable[str], stream: TextIO | None = None) -> None:
    for line in lines:
        print(f"  {line}", file=stream or sys.stdout)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check",
        action="store_true",
        help="compare the committed stubs with fresh output instead of writing them",
    )
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="coord-protogen-") as tmp:
        try:
            generate(Path(tmp))
        except GenerationError as exc:
            print(f"protogen: {exc}", file=sys.stderr)
            return 2
        if args.check:
            problems = compare(Path(tmp))
            if problems:
                print(
                    "proto-check: the committed stubs are out of date with protos/. "
                    "Run `make proto` and commit the result.",
                    file=sys.stderr,
                )
                _print(problems, sys.stderr)
                return 1
            print(f"proto-check: {len(_files(Path(tmp)))} generated files match protos/")
            return 0
        changes = _write(Path(tmp))
        _print(changes or ["stubs already up to date"])
        return 0


if __name__ == "__main__":
    sys.exit(main())
