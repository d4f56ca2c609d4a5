"""The order in which programs that stop together get their stop signal (stoker.supervise.
stop_order): examples, and hypothesis playing whole stops on random dependency graphs."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from stoker.supervise.stop_order import may_stop, requirements

# issue 22's repro: slow depends on db; crashy and lone depend on nothing and nothing on them
REPRO = {"db": (), "slow": ("db",), "crashy": (), "lone": ()}


def test_unrelated_programs_stop_in_the_first_wave() -> None:
    assert may_stop(REPRO, REPRO) == {"slow", "crashy", "lone"}
    assert may_stop({"db", "crashy", "lone"}, REPRO) == {"db", "crashy", "lone"}  # slow is gone
    assert may_stop({"db", "slow"}, REPRO) == {"slow"}


def test_a_dependency_waits_for_dependents_through_others() -> None:
    chain = {"a": ("b",), "b": ("c",), "c": ()}
    assert requirements(chain) == {"a": {"b", "c"}, "b": {"c"}, "c": set()}
    assert may_stop({"a", "c"}, chain) == {"a"}  # b is not stopping, but a needs c through it
    assert may_stop({"b", "c"}, chain) == {"b"}
    assert may_stop({"c"}, chain) == {"c"}
    assert may_stop(set(), chain) == set()


def test_a_diamond() -> None:
    diamond = {"web": ("api", "cache"), "api": ("db",), "cache": ("db",), "db": ()}
    assert may_stop(diamond, diamond) == {"web"}
    assert may_stop({"api", "cache", "db"}, diamond) == {"api", "cache"}
    assert may_stop({"cache", "db"}, diamond) == {"cache"}


def test_a_cycle_never_stalls_a_stop() -> None:
    # (the config refuses cycles; the rule must not hang or stop nothing if one slipped through)
    assert may_stop({"a", "b"}, {"a": ("b",), "b": ("a",)})


@st.composite
def graphs(draw: st.DrawFn) -> dict[str, tuple[str, ...]]:
    """A random acyclic dependency graph: a program depends only on programs named before it."""
    names = [f"p{i}" for i in range(draw(st.integers(0, 8)))]
    return {
        name: tuple(draw(st.sets(st.sampled_from(names[:i]), max_size=3)) if i else ())
        for i, name in enumerate(names)
    }


@given(graph=graphs(), data=st.data())
def test_a_whole_stop_signals_every_dependent_before_its_dependencies(
    graph: dict[str, tuple[str, ...]], data: st.DataObject
) -> None:
    """Some of the programs stop together; those signalled exit in any order, some slower than
    others. Every one is signalled in the end; none before every program among them that needs
    it (directly or not) has exited; and one that no other among them needs, in the first wave."""
    needs = requirements(graph)
    stopping = data.draw(st.sets(st.sampled_from(sorted(graph)))) if graph else set()
    alive, signalled, exited = set(stopping), set(), []
    first = True
    while alive:
        free = may_stop(alive, graph)
        assert free and free <= alive  # progress, always
        if first:
            assert free == {p for p in alive if not any(p in needs[q] for q in alive)}
            first = False
        for name in free - signalled:
            dependents = {q for q in stopping if name in needs[q]}
            assert dependents <= set(exited), (name, dependents, exited)
        signalled |= free
        gone = data.draw(st.sets(st.sampled_from(sorted(signalled & alive)), min_size=1))
        alive -= gone
        exited += sorted(gone)
    assert signalled == stopping
