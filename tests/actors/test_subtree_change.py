"""SubtreeChange: a sub-supervisor reports one child's change and its parent merges it into the kept state."""

from __future__ import annotations

from actors.supervision import SavedChild, SubtreeChange, SupervisorState


def _state(*keys: str) -> SupervisorState:
    return SupervisorState(children=tuple(SavedChild(key=k, incarnation=1) for k in keys))


def test_a_change_to_a_known_child_replaces_it_in_place() -> None:
    new = SavedChild(key="B", incarnation=2, state={"qty": 70})
    merged = SubtreeChange(key="B", saved=new).apply(_state("A", "B", "C"))
    assert [c.key for c in merged.children] == ["A", "B", "C"]
    assert merged.children[1] == new


def test_a_new_child_is_appended_in_start_order() -> None:
    merged = SubtreeChange(key="D", saved=SavedChild(key="D")).apply(_state("A", "B"))
    assert [c.key for c in merged.children] == ["A", "B", "D"]


def test_a_forgotten_child_is_removed_and_the_others_kept() -> None:
    merged = SubtreeChange(key="B", saved=None).apply(_state("A", "B", "C"))
    assert [c.key for c in merged.children] == ["A", "C"]


def test_the_first_change_applies_to_no_state_at_all() -> None:
    merged = SubtreeChange(key="A", saved=SavedChild(key="A", incarnation=1)).apply(None)
    assert merged == _state("A")
    assert SubtreeChange(key="A", saved=None).apply(None) == SupervisorState()


def test_changes_in_order_rebuild_what_the_sub_supervisor_holds() -> None:
    # What the parent keeps after a sequence of changes equals the sub-supervisor's own view.
    changes = [("A", 1), ("B", 1), ("A", 2), ("C", 1), ("B", None), ("B", 3)]
    kept: object = None
    truth: dict[str, SavedChild] = {}
    for key, incarnation in changes:
        saved = None if incarnation is None else SavedChild(key=key, incarnation=incarnation)
        kept = SubtreeChange(key=key, saved=saved).apply(kept)
        if saved is None:
            truth.pop(key, None)
        else:
            truth[key] = saved
    assert isinstance(kept, SupervisorState)
    assert {c.key: c for c in kept.children} == truth
