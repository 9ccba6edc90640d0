"""The rounds a batch's profile writes go in (both stores read, change and write that many)."""

from storage.store import PROFILES_PER_WRITE, write_rounds


def test_ids_come_in_order_in_rounds_of_profiles_per_write():
    ids = [f"p{n}" for n in range(2 * PROFILES_PER_WRITE + 5)]
    rounds = list(write_rounds(ids))
    assert [len(r) for r in rounds] == [PROFILES_PER_WRITE, PROFILES_PER_WRITE, 5]
    assert [i for r in rounds for i in r] == ids


def test_no_ids_make_no_round():
    assert list(write_rounds([])) == []
