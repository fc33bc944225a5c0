"""wmproxy.security.lru: what is kept and what goes first, as cachetools' LRUCache."""

from wmproxy.security.lru import Lru


def test_the_least_recent_goes_first_and_a_lookup_makes_a_key_recent():
    kept: Lru[str, int] = Lru(2)
    kept["a"] = 1
    kept["b"] = 2
    assert kept.get("a") == 1  # "a" is now the most recent
    kept["c"] = 3
    assert "b" not in kept and kept.get("a") == 1 and kept.get("c") == 3
    assert kept.currsize == 2


def test_setting_a_key_again_makes_it_recent_and_a_missing_key_gives_the_default():
    kept: Lru[str, int] = Lru(2)
    kept["a"] = 1
    kept["b"] = 2
    kept["a"] = 10
    kept["c"] = 3
    assert list(kept) == ["a", "c"] and kept["a"] == 10
    assert kept.get("zz") is None and kept.get("zz", 5) == 5
    assert kept.pop("a") == 10 and len(kept) == 1
