"""Go 1.16's ``sort.Sort``, step for step, for etcd's range sorting.

etcd sorts a range by version, create/mod revision or value with Go's ``sort.Sort``,
which is not stable: keys with equal sort values come out in an order that depends on
the algorithm (an insertion sort after a gap-6 pass for up to 12 keys, quicksort with
median-of-three pivots above). etcd 3.5.1 is built with Go 1.16, so its answers follow
that algorithm, which this module reproduces comparison for comparison and swap for
swap; Python's stable sort would keep such keys in key order instead (as etcd 3.4.23,
built with Go 1.19's pattern-defeating quicksort, does for small ranges).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


class _Data:
    __slots__ = ("items", "less_items")

    def __init__(self, items: list[Any], less: Callable[[Any, Any], bool]) -> None:
        self.items = items
        self.less_items = less

    def less(self, i: int, j: int) -> bool:
        return self.less_items(self.items[i], self.items[j])

    def swap(self, i: int, j: int) -> None:
        items = self.items
        items[i], items[j] = items[j], items[i]


def go_sort(items: list[T], less: Callable[[T, T], bool]) -> None:
    """Sort ``items`` in place exactly as Go 1.16's sort.Sort with ``less``."""
    n = len(items)
    depth = 0
    i = n
    while i > 0:
        depth += 1
        i >>= 1
    _quick_sort(_Data(items, less), 0, n, depth * 2)


def _insertion_sort(data: _Data, a: int, b: int) -> None:
    for i in range(a + 1, b):
        j = i
        while j > a and data.less(j, j - 1):
            data.swap(j, j - 1)
            j -= 1


def _sift_down(data: _Data, lo: int, hi: int, first: int) -> None:
    root = lo
    while True:
        child = 2 * root + 1
        if child >= hi:
            return
        if child + 1 < hi and data.less(first + child, first + child + 1):
            child += 1
        if not data.less(first + root, first + child):
            return
        data.swap(first + root, first + child)
        root = child


def _heap_sort(data: _Data, a: int, b: int) -> None:
    first, lo, hi = a, 0, b - a
    for i in range((hi - 1) // 2, -1, -1):
        _sift_down(data, i, hi, first)
    for i in range(hi - 1, -1, -1):
        data.swap(first, first + i)
        _sift_down(data, lo, i, first)


def _median_of_three(data: _Data, m1: int, m0: int, m2: int) -> None:
    if data.less(m1, m0):
        data.swap(m1, m0)
    if data.less(m2, m1):
        data.swap(m2, m1)
        if data.less(m1, m0):
            data.swap(m1, m0)


def _do_pivot(data: _Data, lo: int, hi: int) -> tuple[int, int]:
    m = (lo + hi) >> 1
    if hi - lo > 40:
        s = (hi - lo) // 8
        _median_of_three(data, lo, lo + s, lo + 2 * s)
        _median_of_three(data, m, m - s, m + s)
        _median_of_three(data, hi - 1, hi - 1 - s, hi - 1 - 2 * s)
    _median_of_three(data, lo, m, hi - 1)
    pivot = lo
    a, c = lo + 1, hi - 1
    while a < c and data.less(a, pivot):
        a += 1
    b = a
    while True:
        while b < c and not data.less(pivot, b):
            b += 1
        while b < c and data.less(pivot, c - 1):
            c -= 1
        if b >= c:
            break
        data.swap(b, c - 1)
        b += 1
        c -= 1
    protect = hi - c < 5
    if not protect and hi - c < (hi - lo) // 4:
        dups = 0
        if not data.less(pivot, hi - 1):
            data.swap(c, hi - 1)
            c += 1
            dups += 1
        if not data.less(b - 1, pivot):
            b -= 1
            dups += 1
        if not data.less(m, pivot):
            data.swap(m, b - 1)
            b -= 1
            dups += 1
        protect = dups > 1
    if protect:
        while True:
            while a < b and not data.less(b - 1, pivot):
                b -= 1
            while a < b and data.less(a, pivot):
                a += 1
            if a >= b:
                break
            data.swap(a, b - 1)
            a += 1
            b -= 1
    data.swap(pivot, b - 1)
    return b - 1, c


def _quick_sort(data: _Data, a: int, b: int, max_depth: int) -> None:
    while b - a > 12:
        if max_depth == 0:
            _heap_sort(data, a, b)
            return
        max_depth -= 1
        mlo, mhi = _do_pivot(data, a, b)
        if mlo - a < b - mhi:
            _quick_sort(data, a, mlo, max_depth)
            a = mhi
        else:
            _quick_sort(data, mhi, b, max_depth)
            b = mlo
    if b - a > 1:
        for i in range(a + 6, b):
            if data.less(i, i - 6):
                data.swap(i, i - 6)
        _insertion_sort(data, a, b)
