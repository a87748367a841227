"""The Python copy of Flink's key-group assignment (tests/integration/keygroups.py) gives the numbers
that jvm/.../KeyedStateAccessTest pins for the JVM's own (UserKeys.keyGroupOf / subtaskOf)."""

from tests.integration.keygroups import key_group, subtask_of


def test_same_key_groups_as_the_jvm():
    assert [key_group(u, 128) for u in ("u1", "r0", "r1", "1000001", "\u00e9\u2603")] == [20, 36, 69, 25, 121]
    assert subtask_of("\u00e9\u2603", 128, 3) == 2
    assert {subtask_of(f"u{i}", 128, 4) for i in range(200)} == {0, 1, 2, 3}
