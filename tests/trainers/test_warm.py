"""trainers.warm: one kept value per kind, rebuilt when its key changes."""

from trainers import warm


def test_a_value_is_kept_per_kind_until_its_key_changes():
    warm.clear()
    built = []

    def build(tag):
        return lambda: built.append(tag) or {"tag": tag}

    first, reused = warm.kept("a", {"x": 1}, build("a1"))
    assert not reused and first == {"tag": "a1"}
    again, reused = warm.kept("a", {"x": 1}, build("a2"))
    assert reused and again is first  # the same object: callers only read it
    other, reused = warm.kept("b", {"x": 1}, build("b1"))  # kinds are independent
    assert not reused and other == {"tag": "b1"}
    changed, reused = warm.kept("a", {"x": 2}, build("a3"))
    assert not reused and changed == {"tag": "a3"}
    back, reused = warm.kept("a", {"x": 1}, build("a4"))  # one value per kind: the old key is gone
    assert not reused and back == {"tag": "a4"} and built == ["a1", "b1", "a3", "a4"]
    warm.clear()
    _, reused = warm.kept("b", {"x": 1}, build("b2"))
    assert not reused
    warm.clear()
