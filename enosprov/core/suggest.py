"""'Did you mean': the nearest strings to a mistyped one, by edit distance.

The distance is the optimal string alignment distance (Levenshtein plus the swap of two
neighbouring characters as one edit), the usual model of typing errors. ``close`` answers "is
the distance at most 1 or 2" without the quadratic table for ASCII strings (common prefix and
suffix found with integer XORs, then the few edit patterns two edits allow), so a scan of
100,000 serial numbers takes a fraction of a second.
"""

from __future__ import annotations

from collections.abc import Iterable

MAX_SUGGESTIONS = 3


def distance(a: str, b: str) -> int:
    """The optimal string alignment distance of ``a`` and ``b``."""
    prev2: list[int] = []
    prev = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        cur = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cost = a[i - 1] != b[j - 1]
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                cur[j] = min(cur[j], prev2[j - 2] + 1)
        prev2, prev = prev, cur
    return prev[len(b)]


def max_distance(word: str) -> int:
    """How far a suggestion for ``word`` may be: 2 edits, and at most a fifth of its length
    (at least 1)."""
    return min(2, max(1, len(word) // 5))


class Matcher:
    """Decides ``distance(word, candidate) <= limit`` (limit 1 or 2) quickly for many
    candidates, given as UTF-8 bytes. Returns the distance, or None when it is larger."""

    def __init__(self, word: str, limit: int) -> None:
        if limit not in (1, 2):
            raise ValueError("limit must be 1 or 2")
        self.word = word
        self.limit = limit
        self.raw = word.encode("utf-8")
        self.ascii = self.raw.isascii()
        self.n = len(self.raw)
        self.big = int.from_bytes(self.raw, "big")
        self.little = int.from_bytes(self.raw, "little")

    def __call__(self, cand: bytes) -> int | None:
        n, m = self.n, len(cand)
        if abs(n - m) > self.limit:
            return None
        if not (self.ascii and cand.isascii()):
            d = distance(self.word, cand.decode("utf-8", "replace"))
            return d if d <= self.limit else None
        # common prefix: the trailing zero bytes of the XOR of the little-endian numbers (the
        # strings aligned at their first byte); common suffix likewise, big-endian
        x = int.from_bytes(cand, "little") ^ self.little
        if not x:
            return 0
        p = ((x & -x).bit_length() - 1) >> 3
        y = int.from_bytes(cand, "big") ^ self.big
        s = ((y & -y).bit_length() - 1) >> 3 if y else m
        shortest = min(n, m)
        p = min(p, shortest)
        s = min(s, shortest - p)
        return _edits(self.raw[p : n - s], cand[p : m - s], self.limit)


# One edit, as (characters of a, characters of b) it spans: substitution, deletion, insertion,
# swap of neighbours; and the pairs of a first and a last edit, by the length difference they make.
_ONE = ((1, 1), (1, 0), (0, 1), (2, 2))
_TWO: dict[int, tuple] = {}
for _first in _ONE:
    for _last in _ONE:
        _delta = _first[0] + _last[0] - _first[1] - _last[1]
        _TWO[_delta] = (*_TWO.get(_delta, ()), (*_first, *_last))


def _edits(a: bytes, b: bytes, limit: int) -> int | None:
    """The distance of ``a`` and ``b`` when at most ``limit`` (1 or 2), else None; ``a`` and
    ``b`` have no common first or last character (or one is empty), so a shortest edit script
    starts at their first characters and ends at their last."""
    la, lb = len(a), len(b)
    if la + lb <= 2:
        return la or lb  # equal, or one substitution, deletion or insertion
    if la == lb == 2 and a == b[::-1]:
        return 1
    if limit < 2:
        return None
    if la > 4 and a[2 : la - 2] not in b[1 : lb - 1]:  # what two edits at the ends leave
        return None
    for ax, ay, bx, by in _TWO.get(la - lb, ()):
        if ax + bx > la or ay + by > lb:
            continue
        if ax == 2 and a[:2] != b[1::-1]:
            continue
        if bx == 2 and a[la - 2 :] != b[lb - 2 :][::-1]:
            continue
        if a[ax : la - bx] == b[ay : lb - by]:
            return 2
    return None


def nearest(
    word: str, candidates: Iterable[str], *, limit: int | None = None, count: int = MAX_SUGGESTIONS
) -> list[str]:
    """The (at most ``count``) candidates nearest to ``word``, nearest first, then in
    alphabetical order; only those within ``limit`` edits (default :func:`max_distance`)."""
    limit = max_distance(word) if limit is None else limit
    scored = sorted({(d, c) for c in candidates if c != word and (d := distance(word, c)) <= limit})
    return [c for _, c in scored[:count]]
