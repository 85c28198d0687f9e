"""Hook ids: traced mods by number, so that the torch custom ops (whose arguments can only be tensors and
numbers) can name the score_mod, sink_mod, prob_mod and mask_mod of a call.

An id stands for a mod's structure: two traces with the same C++ key (the graph, its constants, the dtype
and rank of each capture), the same name and the same captures requiring a gradient share one id, and the
op binds that TracedMod's captures to the tensors it is given. So the table grows with the number of
distinct mods a program uses, not with the number of calls (mods traced on every call included), and an id
means the same thing for the whole process: a graph compiled by torch.compile may keep it as a constant.
Ids are not meaningful in another process (a graph exported with its ids would need the same traces).
"""
import threading

from ._errors import FlexjitError

NONE = -1   # the id of an absent hook (no sink_mod, no mask_mod, ...)

_lock = threading.Lock()
_by_key = {}
_hooks = []


def _key(traced) -> tuple:
    mod = traced.mod
    return (type(mod).__name__, mod.key, mod.name, tuple(bool(c.requires_grad) for c in traced.captures))


def hook_id(traced) -> int:
    """The id of a TracedMod (registered on first use)."""
    key = _key(traced)
    with _lock:
        found = _by_key.get(key)
        if found is None:
            found = _by_key[key] = len(_hooks)
            _hooks.append(traced)
        return found


def optional_id(traced) -> int:
    return NONE if traced is None else hook_id(traced)


def traced_hook(i: int):
    """The TracedMod of id `i`; None for NONE."""
    if i == NONE:
        return None
    if not 0 <= i < len(_hooks):
        raise FlexjitError(f"flexjit: hook id {i} is not known in this process; the graph that holds it was made by "
                           f"another process (flexjit's custom ops name traced mods by process-local ids)")
    return _hooks[i]
