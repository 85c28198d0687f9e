"""flexjit's exceptions.

``FlexjitError`` (a ``RuntimeError``) is raised for every user mistake, with the message of the C++ core
unchanged when the core detects it. ``TraceError`` (also a ``TypeError``) is raised while a score_mod or
mask_mod is traced, for Python constructs that cannot be traced; its message says what to write instead.
"""
from ._flexjit import FlexjitError, current_trace

Error = FlexjitError


class TraceError(FlexjitError, TypeError):
    """A construct in a traced score_mod / mask_mod that flexjit cannot trace."""


class TraceAttributeError(TraceError, AttributeError):
    """An attribute a traced value does not have (an AttributeError too, so hasattr() works)."""


def trace_error(message: str, kind=TraceError) -> TraceError:
    """A TraceError naming the mod being traced ("score_mod 'alibi': ...")."""
    where = current_trace()
    return kind(f"{where}: {message}" if where else message)
