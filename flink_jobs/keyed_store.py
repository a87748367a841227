"""A store over one Flink keyed ValueState, read and written under many keys per JVM call: the
profiles of the profile operator (one entry per user) and the windows of the popularity operator
(one per category). No pyflink import: the JVM accessor comes in through ``KeyedStateAccess``, so
unit tests run it over a dict."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from typing import Generic, Optional, Protocol, TypeVar

from udfs.profile import Profile
from udfs.profile_codec import decode_profile, encode_profile

T = TypeVar("T")


class KeyedStateAccess(Protocol):
    """One keyed ValueState read and written under many keys per call (the JVM's
    jvm/.../KeyedStateAccess; tests use an in-memory one)."""

    def getAll(self, users: list[str]) -> Sequence[Optional[str]]: ...  # noqa: N802 - Java names

    def putAll(self, users: list[str], values: list[str]) -> None: ...  # noqa: N802

    def clear(self, user: str) -> None: ...


# The state holds versioned bytes (udfs.profile, udfs.popularity) as a latin-1 string: an exact 1:1
# map of bytes 0..255. PyFlink's thread mode converts byte[] to a tuple of ints element by element and
# cannot read an empty byte[] state at all (None -> TypeError), while a string crosses as one object.
def to_state(data: bytes) -> str:
    return data.decode("latin-1")


def from_state(text: str) -> bytes:
    return text.encode("latin-1")


class KeyedStore(Generic[T]):
    """Values of many keys over one keyed ValueState.

    Decoded values of recent keys stay in an LRU cache (rebuilt from state after any restart,
    because open() runs again); ``prefetch`` reads a batch's other keys from state in one JVM call.
    Changed values are encoded and written to state once per checkpoint (``flush``, on the
    batcher's commit marker before each barrier), not once per batch: encoding is the most
    expensive part of an update."""

    def __init__(self, access: KeyedStateAccess, cache_size: int,
                 decode: Callable[[bytes], T], encode: Callable[[T], bytes]) -> None:
        self.access = access
        self.cache_size = cache_size
        self.decode = decode
        self.encode = encode
        self.cache: OrderedDict[str, T] = OrderedDict()
        self.dirty: dict[str, T] = {}  # not in state yet; never evicted before flush
        self.absent: set[str] = set()  # read from state: no entry, and not put since
        self.state_reads = 0

    def prefetch(self, keys: Iterable[str]) -> None:
        """Start a batch: read every key not held in memory, in one call; later get()s of them
        need no JVM call. The "no entry" answers of earlier batches are dropped (memory bound)."""
        self.absent.clear()
        self._read(k for k in dict.fromkeys(keys) if k not in self.dirty and k not in self.cache)

    def _read(self, keys: Iterable[str]) -> None:
        missing = list(keys)
        if not missing:
            return
        self.state_reads += len(missing)
        for key, raw in zip(missing, self.access.getAll(missing), strict=True):
            if raw is None:
                self.absent.add(key)
            else:
                self._remember(key, self.decode(from_state(raw)))

    def get(self, key: str) -> Optional[T]:
        v = self.dirty.get(key)
        if v is not None:
            return v
        v = self.cache.get(key)
        if v is not None:
            self.cache.move_to_end(key)
            return v
        if key in self.absent:
            return None
        self._read([key])  # not prefetched (or evicted since): one read, the batch's answers kept
        return self.cache.get(key)

    def put(self, key: str, value: T) -> None:
        self.dirty.pop(key, None)  # re-inserted: dirty keys stay in order of their latest put
        self.dirty[key] = value
        self.absent.discard(key)  # it will have an entry: never answer "none" for it again

    def remove(self, key: str) -> None:
        self.dirty.pop(key, None)
        self.cache.pop(key, None)
        self.absent.add(key)
        self.access.clear(key)

    def flush(self, keys: Optional[Iterable[str]] = None) -> int:
        """Write changed values to keyed state (one JVM call): all of them, or those of ``keys``
        that are changed; returns how many."""
        keys = list(self.dirty) if keys is None else [k for k in keys if k in self.dirty]
        if keys:
            self.access.putAll(keys, [to_state(self.encode(self.dirty[k])) for k in keys])
        for key in keys:
            self._remember(key, self.dirty.pop(key))
        return len(keys)

    def _remember(self, key: str, value: T) -> None:
        self.cache[key] = value
        self.cache.move_to_end(key)
        if len(self.cache) > self.cache_size:
            self.cache.popitem(last=False)


class KeyedProfileStore(KeyedStore[Profile]):
    """udfs.engine.ProfileStore over Flink keyed state, one entry per user (udfs.profile's
    versioned Avro bytes)."""

    def __init__(self, access: KeyedStateAccess, cache_size: int) -> None:
        super().__init__(access, cache_size, decode_profile, encode_profile)
