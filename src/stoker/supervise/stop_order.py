"""In which order programs stop when several stop together (`stoker down`, `stop all`, a
reload that removes them): a pure rule, no processes, no clock.

A program gets its stop signal once no program that depends on it (directly, or through
others) is still alive among those stopping; one that nothing alive depends on, including a
program unrelated to all the others, at once. Asked again whenever one of them has stopped,
the rule gives each program its signal as early as its dependents allow, not one wave after
another.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping


def requirements(depends_on: Mapping[str, Iterable[str]]) -> dict[str, frozenset[str]]:
    """Every program's dependencies, direct or through others (a cycle, which the config
    refuses, would end where it closes)."""
    found: dict[str, frozenset[str]] = {}

    def needs(name: str, path: frozenset[str]) -> frozenset[str]:
        if name in found:
            return found[name]
        direct = [d for d in depends_on.get(name, ()) if d not in path]
        result = frozenset(direct).union(*(needs(d, path | {d}) for d in direct))
        found[name] = result
        return result

    for name in depends_on:
        needs(name, frozenset({name}))
    return found


def may_stop(alive: Iterable[str], depends_on: Mapping[str, Iterable[str]]) -> frozenset[str]:
    """The programs of `alive` (being stopped, some process of theirs not gone yet) that may get
    their stop signal now: those no other program of `alive` depends on, directly or not."""
    alive = frozenset(alive)
    needs = requirements(depends_on)
    needed = frozenset().union(*(needs.get(name, frozenset()) for name in alive))
    return (alive - needed) or alive  # (only a cycle could leave none: never stall on one)
