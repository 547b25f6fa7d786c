"""Operations as the chaos workloads record them, and their JSON form.

Every operation has an invoke time and, unless its outcome is unknown, a completion time,
both from ``time.monotonic()`` (CLOCK_MONOTONIC is one clock for every process on the
machine, so histories recorded by several worker processes merge). Outcomes:

* ``ok``: the cluster answered and the answer is in ``output``;
* ``fail``: the operation certainly did not take effect (a read that failed, a write the
  cluster refused before proposing it);
* ``unknown``: it may or may not have taken effect (a timeout, a broken connection); for the
  checkers its completion time is infinite.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

INF = math.inf

OK, FAIL, UNKNOWN = "ok", "fail", "unknown"


@dataclass
class Op:
    id: str
    """Unique in the run: ``worker/task/n``."""
    process: str
    """The client (task) that ran it; one client runs one operation at a time."""
    workload: str
    """``register``, ``set``, ``lock``, ``watch``."""
    f: str
    """What it did: read/write/cas (register), add/read (set), acquire/release/fenced/... (lock)."""
    key: str = ""
    value: Any = None
    """The input: a written value, ``[expected, new]`` for cas, a token..."""
    invoke: float = 0.0
    complete: float | None = None
    """None while pending, and for unknown outcomes (= infinitely late)."""
    outcome: str = UNKNOWN
    output: Any = None
    """read: the value read (None: missing); cas: ``[succeeded, value seen when it failed]``;
    writes: the response revision."""
    node: str = ""
    """The member that gave the final answer (or was last tried)."""
    error: str = ""
    attempts: int = 0
    revision: int = 0
    """The store revision of an acknowledged write (for the watch cross-check)."""

    @property
    def end(self) -> float:
        return INF if self.outcome == UNKNOWN or self.complete is None else self.complete

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @staticmethod
    def from_json(data: dict[str, Any]) -> Op:
        return Op(**data)

    def describe(self, t0: float = 0.0) -> str:
        end = "∞" if self.end == INF else f"{self.end - t0:9.3f}"
        what = f"{self.f}({self.key}{', ' if self.key and self.value is not None else ''}{'' if self.value is None else _short(self.value)})"
        out = "" if self.output is None else f" -> {_short(self.output)}"
        err = f"  [{self.error}]" if self.error and self.outcome != OK else ""
        node = f"@{self.node}" if self.node else ""
        return f"{self.invoke - t0:9.3f} .. {end}  {self.process:<14} {node:<4} {self.outcome:<7} {what}{out}{err}"


def _short(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, str) else value
    return text if len(text) <= 60 else text[:57] + "..."


@dataclass
class Counter:
    """Monotonic ids for one client: ``prefix/n``."""

    prefix: str
    n: int = 0

    def next(self) -> str:
        self.n += 1
        return f"{self.prefix}/{self.n}"


@dataclass
class History:
    ops: list[Op] = field(default_factory=list)

    def add(self, op: Op) -> Op:
        self.ops.append(op)
        return op

    def extend(self, ops: Iterable[Op]) -> None:
        self.ops.extend(ops)

    def of(self, workload: str) -> list[Op]:
        return [op for op in self.ops if op.workload == workload]

    def dump(self, path: str) -> None:
        with open(path, "w") as f:
            json.dump([op.to_json() for op in self.ops], f)

    @staticmethod
    def load(path: str) -> History:
        with open(path) as f:
            return History([Op.from_json(d) for d in json.load(f)])
