"""The trace cache: a mod is traced again only when something it could read has changed.

A function's behaviour under tracing is fixed by its code and by what it can reach: closure cells, the
globals its code names, default arguments, a bound method's object, a partial's arguments, and the
attributes its code names on the modules, classes and objects it reaches (``Cfg.scale``, ``config.window``,
``os.environ``), recursively. ``_Walk`` visits all of that and produces a key: code objects and Python
constants by value, tensors by (dtype, shape, requires_grad, device, aliasing) and not by data (0-d CPU
tensors, which trace as constants, by value too), torch's and flexjit's own functions, classes and modules
by identity. Two calls with equal keys trace to the same graph, so the second reuses the first's trace and
only the tensors differ: they are re-read from the same places (a new ``document_id`` tensor in the closure
is what the mod reads next time, never a stale pointer).

What the key cannot cover makes the function traced on every call (slower, never wrong): an object without
__dict__ or a too large structure; code that looks names up at run time (``globals()``, ``getattr``,
``eval``, ...); a tensor the trace reads that the walk did not find (one made inside the function); and a
value the trace computed from tensor data (``w.sum()``, ``t[0]``, ``float(t[1])``, which the trace
reports, see _trace.py). Tracing is cheap (the compiled kernels are cached by structure in C++).
"""
import collections
import enum
import functools
import os
import types

import torch

from ._trace import BoundMod, trace

_MAX_ENTRIES = 1024
_MAX_NODES = 4096
_MAX_DEPTH = 8
_MAX_CONTAINER = 256

_ATOMS = (type(None), bool, int, str, bytes, torch.dtype, torch.device, torch.Size, enum.Enum, range)
_BUILTINS = (types.BuiltinFunctionType, types.BuiltinMethodType, types.WrapperDescriptorType,
             types.MethodDescriptorType, types.MethodWrapperType, types.ClassMethodDescriptorType,
             types.GetSetDescriptorType, types.MemberDescriptorType)
# Names through which code reads variables or attributes chosen at run time: the walk cannot know which.
_DYNAMIC_LOOKUPS = frozenset({"globals", "locals", "vars", "eval", "exec", "getattr", "hasattr", "__import__",
                              "import_module", "__dict__", "__getattribute__"})
_HEAPTYPE = 1 << 9   # Py_TPFLAGS_HEAPTYPE: a class made by a class statement, whose attributes can change
_MISSING = object()


class _Uncacheable(Exception):
    pass


@functools.lru_cache(maxsize=4096)
def _global_names(code: types.CodeType) -> tuple:
    """Names a code object (and the functions and comprehensions nested in it) reads as globals or attributes."""
    names = set(code.co_names)
    for c in code.co_consts:
        if isinstance(c, types.CodeType):
            names.update(_global_names(c))
    return tuple(sorted(names))


def _static_attr(holder, name):
    """holder.name as stored in a module's or class's own dictionaries: no descriptor, __getattr__ or lazy
    import runs. _MISSING when absent."""
    if isinstance(holder, types.ModuleType):
        return holder.__dict__.get(name, _MISSING)
    for klass in holder.__mro__:
        if name in klass.__dict__:
            return klass.__dict__[name]
    return _MISSING


def _call_target(obj):
    """The Python function that calling `obj` runs: its class's __call__, or forward for a torch.nn.Module
    (whose __call__ is torch's hook machinery); None for anything else."""
    f = _static_attr(type(obj), "forward" if isinstance(obj, torch.nn.Module) else "__call__")
    return f if isinstance(f, types.FunctionType) else None


def _is_library(module_name) -> bool:
    """torch's and flexjit's own code: its functions, classes and module attributes are fixed for the
    process (the API a mod calls), so they are keyed by identity and not walked."""
    return (module_name or "").partition(".")[0] in ("torch", "flexjit")


def _is_library_function(f) -> bool:
    """A library function without closure state (a closure such as and_masks' result holds user mods)."""
    return f.__closure__ is None and _is_library(f.__module__)


def _is_fixed_holder(v) -> bool:
    """A class defined in C, or a library module or class: keyed by identity, its attributes not walked."""
    if isinstance(v, type):
        return not v.__flags__ & _HEAPTYPE or _is_library(v.__module__)
    return isinstance(v, types.ModuleType) and _is_library(v.__name__)


class _Walk:
    """Everything a callable can reach, as a hashable key plus the tensors found (by path)."""

    def __init__(self):
        self.key = []
        self.tensors = {}   # path -> tensor
        self.names = {}     # id(tensor) -> variable name
        self.valued = []    # tensors whose value (not only shape) is in the key: 0-d CPU constants
        self._seen = {}     # id(object) -> first visit number (aliasing and cycles)
        self._alive = []    # keeps visited objects alive so their ids stay unique during the walk
        self._nodes = 0
        self._read = set()  # every global or attribute name the visited code reads
        self._holders = []  # [module or class, path, depth, names done]: whose attributes the code may read

    def visit(self, v, path, name, depth):
        self._nodes += 1
        if self._nodes > _MAX_NODES or depth > _MAX_DEPTH:
            raise _Uncacheable
        if isinstance(v, float):
            self.key.append((float, v.hex()))   # distinguishes -0.0 and NaN
        elif isinstance(v, torch.Tensor):
            self._tensor(v, path, name)
        elif isinstance(v, _ATOMS) or isinstance(v, complex):
            self.key.append((type(v), v if not isinstance(v, complex) else repr(v)))
        elif isinstance(v, _BUILTINS) or _is_fixed_holder(v):
            self.key.append(("builtin", v))
        elif type(v) is os._Environ:   # not isinstance: an ABC check costs more than the whole walk
            self.key.append(("environ", tuple(v._data.items())))
        elif isinstance(v, (set, frozenset)):
            if len(v) > _MAX_CONTAINER or not all(isinstance(x, _ATOMS + (float,)) for x in v):
                raise _Uncacheable
            self.key.append((type(v), frozenset(v)))
        elif self._first_visit(v):
            self._compound(v, path, name, depth)

    def finish(self):
        """Visits, on every module and class met, each attribute some visited code names. A visit may reach
        more code (more names) and more modules and classes, so this repeats until nothing new is read."""
        progress = bool(self._holders)
        while progress:
            progress = False
            for holder in list(self._holders):
                obj, path, depth, done = holder
                for n in sorted(self._read - done):
                    done.add(n)
                    progress = True
                    self._nodes += 1
                    value = _static_attr(obj, n)
                    self.key.append(("attr", n, value is not _MISSING))
                    if value is not _MISSING:
                        self.visit(value, path + (("attr", n),), n, depth)
        if self._nodes > _MAX_NODES:
            raise _Uncacheable

    def _first_visit(self, v) -> bool:
        seen = self._seen.get(id(v))
        if seen is not None:
            self.key.append(("ref", seen))
            return False
        self._seen[id(v)] = len(self._seen)
        self._alive.append(v)
        return True

    def _tensor(self, t, path, name):
        if id(t) in self._seen:
            self.key.append(("alias", self._seen[id(t)]))
            return
        self._seen[id(t)] = len(self._seen)
        self._alive.append(t)
        self.tensors[path] = t
        self.names.setdefault(id(t), name)
        item = ("tensor", t.dtype, tuple(t.shape), t.requires_grad, t.device)
        if t.dim() == 0 and t.device.type == "cpu" and not t.requires_grad:
            item += (repr(t.item()),)   # traced as a constant
            self.valued.append(t)
        self.key.append(item)

    def _compound(self, v, path, name, depth):
        d = depth + 1
        if isinstance(v, (tuple, list)):
            self._sized(v, type(v))
            for i, x in enumerate(v):
                self.visit(x, path + (("item", i),), name, d)
        elif isinstance(v, dict):
            self._sized(v, type(v))
            for k, x in v.items():
                if not isinstance(k, (str, int)):
                    raise _Uncacheable
                self.key.append(k)
                self.visit(x, path + (("key", k),), k if isinstance(k, str) else name, d)
        elif isinstance(v, types.FunctionType):
            self._function(v, path, d)
        elif isinstance(v, types.MethodType):
            self.key.append("method")
            self.visit(v.__func__, path + (("func",),), name, d)
            self.visit(v.__self__, path + (("self",),), "self", d)
        elif isinstance(v, functools.partial):
            self.key.append("partial")
            self.visit(v.func, path + (("func",),), name, d)
            self.visit(v.args, path + (("args",),), name, d)
            self.visit(v.keywords, path + (("keywords",),), name, d)
        else:
            self._holder_or_object(v, path, name, d)

    def _holder_or_object(self, v, path, name, d):
        if isinstance(v, (types.ModuleType, type)):
            self.key.append(("holder", v))
            self._holders.append([v, path, d, set()])
        elif isinstance(v, (staticmethod, classmethod)):
            self.visit(v.__func__, path + (("func",),), name, d)
        elif isinstance(v, property):
            self.visit(v.fget, path + (("fget",),), name, d)
        elif hasattr(v, "__dict__"):
            self.key.append(("object", type(v)))
            self.visit(vars(v), path + (("vars",),), name, d)
            self.visit(type(v), path + (("type",),), name, d)   # class attributes: self.scale of a class
            self.visit(_call_target(v), path + (("call",),), name, d)
        else:
            raise _Uncacheable

    def _sized(self, v, kind):
        if len(v) > _MAX_CONTAINER:
            raise _Uncacheable
        self.key.append((kind, len(v)))

    def _function(self, f, path, depth):
        if _is_library_function(f):
            self.key.append(("builtin", f))
            return
        code = f.__code__
        names = _global_names(code)
        if not _DYNAMIC_LOOKUPS.isdisjoint(names):
            raise _Uncacheable
        self._read.update(names)
        self.key.append(("function", code))
        for i, (var, cell) in enumerate(zip(code.co_freevars, f.__closure__ or ())):
            try:
                value = cell.cell_contents
            except ValueError:   # a cell not assigned yet
                self.key.append("empty cell")
                continue
            self.visit(value, path + (("cell", i),), var, depth)
        self.visit(f.__defaults__, path + (("defaults",),), "default", depth)
        self.visit(f.__kwdefaults__, path + (("kwdefaults",),), "default", depth)
        for g in names:
            if g in f.__globals__:
                self.visit(f.__globals__[g], path + (("global", g),), g, depth)


class _Entry:
    __slots__ = ("traced", "paths")

    def __init__(self, traced, paths):
        self.traced, self.paths = traced, paths


_cache: "collections.OrderedDict[tuple, _Entry]" = collections.OrderedDict()


def _walk(fn):
    walk = _Walk()
    try:
        walk.visit(fn, (), "fn", 0)
        walk.finish()
        return walk, tuple(walk.key)
    except (_Uncacheable, RecursionError):
        return walk, None


def resolve(kind: str, fn) -> BoundMod:
    """The traced mod of `fn` (from the cache when nothing it reads has changed), bound to today's tensors."""
    walk, key = _walk(fn)
    if key is not None:
        key = (kind, key)
        try:
            entry = _cache.get(key)
        except TypeError:   # an unhashable value slipped into the key
            key, entry = None, None
        if entry is not None:
            _cache.move_to_end(key)
            return BoundMod(entry.traced, [walk.tensors[p] for p in entry.paths])
    traced, tensors = trace(kind, fn, walk.names, walk.valued)
    if key is not None and not traced.read_data:
        path_of = {id(t): p for p, t in walk.tensors.items()}
        if all(id(t) in path_of for t in tensors):
            _cache[key] = _Entry(traced, [path_of[id(t)] for t in tensors])
            if len(_cache) > _MAX_ENTRIES:
                _cache.popitem(last=False)
    return BoundMod(traced, tensors)


def clear_cache() -> None:
    """Forgets every cached trace (kernels stay cached in C++)."""
    _cache.clear()


def cache_size() -> int:
    return len(_cache)
