"""flexjit: FlexAttention's Python API on flexjit's JIT compiler.

Replace ``from torch.nn.attention.flex_attention import flex_attention, create_block_mask`` with
``from flexjit import flex_attention, create_block_mask``: the same score_mod / mask_mod functions are traced
into flexjit's expression DSL, compiled to CUDA with NVRTC (cached in memory and on disk) and run forward
and backward. CPU tensors run through flexjit's float64 reference. See docs/python.md.
"""
from ._cache import cache_size, clear_cache
from ._errors import Error, FlexjitError, TraceError
from .attention import flex_attention
from .block_mask import BlockMask, and_masks, create_block_mask, create_mask, noop_mask, or_masks
from .packing import create_document_block_mask, create_nested_block_mask

__version__ = "0.1.0"

__all__ = [
    "flex_attention", "create_block_mask", "create_mask", "BlockMask", "and_masks", "or_masks", "noop_mask",
    "create_document_block_mask", "create_nested_block_mask", "FlexjitError", "Error", "TraceError", "clear_cache",
    "cache_size",
]
