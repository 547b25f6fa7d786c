"""The synchronous client cannot drift from the asyncio one (tools/syncgen.py).

- The generated blocks of coord_client/sync.py and coord_client/auth.py are what the aio
  source says they should be (the twin of ``python tools/syncgen.py --check``), and the
  check fails when the aio source changes without them.
- Every public method and property of each aio class has a sync twin with the same
  parameters (names, kinds, defaults, annotations with the aio class names written as
  their twins') and result type, hand-written or generated; the few documented
  differences are listed here with their reason.

No server: these read the source and the classes.
"""

from __future__ import annotations

import importlib.util
import inspect
import re
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from coord_client import aio, auth, sync

ROOT = Path(__file__).resolve().parents[2]


def _syncgen() -> ModuleType:
    spec = importlib.util.spec_from_file_location("syncgen", ROOT / "tools" / "syncgen.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("syncgen", module)
    spec.loader.exec_module(module)
    return module


syncgen = _syncgen()

PAIRS: list[tuple[type, type]] = [
    (aio.AsyncClient, sync.Client),
    (aio.AsyncTxn, sync.Txn),
    (aio.Lease, sync.Lease),
    (aio.LeaseScope, sync.LeaseScope),
    (aio.Lock, sync.Lock),
    (aio.Campaign, sync.Campaign),
    (aio.Observation, sync.Observation),
    (aio.Watch, sync.Watch),
    (aio.RingView, sync.RingView),
    (auth.AsyncAuth, auth.Auth),
]

DIFFERENT: dict[tuple[str, str], str] = {
    ("Lock", "lost"): "a threading.Event attribute (aio: an asyncio.Event)",
    ("Campaign", "lost"): "a threading.Event attribute (aio: an asyncio.Event)",
    **{key: why for key, why in syncgen.NOT_MIRRORED.items()},
}
"""(sync class, name) -> why the twin differs from the aio member, or is absent."""


def test_pairs_are_the_generators_pairs() -> None:
    assert [(a.__name__, s.__name__) for a, s in PAIRS] == [(t.aio_class, t.sync_class) for t in syncgen.TWINS]


def test_generated_blocks_are_current() -> None:
    diffs = syncgen.stale()
    assert not diffs, "the sync client is stale; run `make syncgen`:\n" + "\n".join(diffs)


def test_check_fails_when_aio_changes(monkeypatch: pytest.MonkeyPatch) -> None:
    """A new keyword argument on an aio method makes the committed sync file stale."""
    real = syncgen._read

    def edited(path: str) -> str:
        text: str = real(path)
        if path == "coord_client/aio/client.py":
            text = text.replace("async def leases(self, *, timeout", "async def leases(self, *, limit: int = 0, timeout")
        return text

    monkeypatch.setattr(syncgen, "_read", edited)
    rendered = syncgen.render()["coord_client/sync.py"]
    assert "def leases(self, *, limit: int = 0, timeout: float | None = None)" in rendered
    assert "self._aclient.leases(limit=limit, timeout=timeout)" in rendered


def test_generator_refuses_what_it_cannot_mirror(monkeypatch: pytest.MonkeyPatch) -> None:
    """An async method returning a twinned class (a Lease needs wrapping on the loop) must
    be written by hand: the tool says so instead of generating a wrong twin."""
    real = syncgen._read

    def edited(path: str) -> str:
        text: str = real(path)
        if path == "coord_client/aio/client.py":
            text = text.replace(
                "    async def leases(self,",
                "    async def any_lease(self) -> Lease:\n        raise NotImplementedError\n\n    async def leases(self,",
            )
        return text

    monkeypatch.setattr(syncgen, "_read", edited)
    with pytest.raises(syncgen.SyncGenError, match="any_lease"):
        syncgen.render()


def _public(cls: type) -> dict[str, Any]:
    """The public functions and properties ``cls`` defines or inherits from coord_client."""
    out: dict[str, Any] = {}
    for klass in reversed(cls.__mro__):
        if klass.__module__.startswith("coord_client"):
            out.update({k: v for k, v in vars(klass).items() if not k.startswith("_")})
    return {k: v for k, v in out.items() if inspect.isfunction(v) or isinstance(v, property)}


def _renamed(annotation: Any) -> str:
    text = str(annotation)
    for old, new in syncgen.RENAMED.items():
        text = re.sub(rf"\b{old}\b", new, text)
    return text


def _shape(member: Any) -> tuple[Any, ...]:
    if isinstance(member, property):
        assert member.fget is not None
        return ("property", _renamed(inspect.signature(member.fget).return_annotation))
    signature = inspect.signature(member)
    params = tuple(
        (p.name, p.kind, p.default, _renamed(p.annotation)) for p in signature.parameters.values()
    )
    return ("method", params, _renamed(signature.return_annotation))


def _text(member: Any) -> str:
    return str(inspect.signature(member.fget if isinstance(member, property) else member))


@pytest.mark.parametrize(("aio_cls", "sync_cls"), PAIRS, ids=[s.__name__ for _, s in PAIRS])
def test_every_aio_member_has_a_sync_twin(aio_cls: type, sync_cls: type) -> None:
    sync_members = _public(sync_cls)
    wrong = []
    for name, member in _public(aio_cls).items():
        if (sync_cls.__name__, name) in DIFFERENT:
            continue
        twin = sync_members.get(name)
        if twin is None:
            wrong.append(f"{sync_cls.__name__}.{name} is missing")
        elif _shape(twin) != _shape(member):
            wrong.append(f"{sync_cls.__name__}.{name}{_text(twin)} differs from aio {name}{_text(member)}")
        elif inspect.iscoroutinefunction(twin) or inspect.isasyncgenfunction(twin):
            wrong.append(f"{sync_cls.__name__}.{name} is async")
    assert not wrong, "\n".join(wrong)


def test_documented_differences_exist() -> None:
    """Every listed difference is real: the aio member exists and the sync one differs."""
    for (sync_name, name), why in DIFFERENT.items():
        aio_cls, sync_cls = next((a, s) for a, s in PAIRS if s.__name__ == sync_name)
        assert name in _public(aio_cls), (sync_name, name)
        twin = _public(sync_cls).get(name)
        assert twin is None or _shape(twin) != _shape(_public(aio_cls)[name]), (sync_name, name, why)
