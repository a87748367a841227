"""Which profile subtask owns a user, computed the way the job does (jvm/.../UserKeys.subtaskOf), so a
test can group predictions by subtask. Flink's rules, in Python:

- key = Row(user_id) (PyFlink's KeyByKeySelector); Row.hashCode (RowUtils.deepHashCodeRow) of an
  INSERT row with one string field = 31 * 0 + (31 * 1 + (31 * 1 + String.hashCode)) = 62 + h;
- key group = MathUtils.murmurHash(hash) % max parallelism (KeyGroupRangeAssignment);
- subtask = key group * parallelism // max parallelism.

Pinned against the JVM by KeyedStateAccessTest.keyGroupsArePinnedForThePythonCopy and
tests/unit/test_keygroups.py (same strings, same numbers)."""

from __future__ import annotations

_MASK = 0xFFFFFFFF


def _i32(x: int) -> int:
    x &= _MASK
    return x - (1 << 32) if x & 0x80000000 else x


def java_string_hash(s: str) -> int:
    """java.lang.String.hashCode (over UTF-16 code units)."""
    h = 0
    data = s.encode("utf-16-be")
    for i in range(0, len(data), 2):
        h = _i32(31 * h + int.from_bytes(data[i:i + 2], "big"))
    return h


def _rotl(x: int, r: int) -> int:
    x &= _MASK
    return ((x << r) | (x >> (32 - r))) & _MASK


def murmur_hash(code: int) -> int:
    """org.apache.flink.util.MathUtils.murmurHash(int)."""
    code = _i32(code * 0xCC9E2D51)
    code = _i32(_rotl(code, 15))
    code = _i32(code * 0x1B873593)
    code = _i32(_rotl(code, 13))
    code = _i32(code * 5 + 0xE6546B64)
    h = (code ^ 4) & _MASK
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & _MASK
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & _MASK
    h ^= h >> 16
    code = _i32(h)
    if code >= 0:
        return code
    return -code if code != -(1 << 31) else 0


def key_group(user_id: str, max_parallelism: int) -> int:
    return murmur_hash(_i32(62 + java_string_hash(user_id))) % max_parallelism


def subtask_of(user_id: str, max_parallelism: int, parallelism: int) -> int:
    return key_group(user_id, max_parallelism) * parallelism // max_parallelism
