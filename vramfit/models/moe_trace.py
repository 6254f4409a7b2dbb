"""The fused-experts matmul of MoE models as the GPU runs it, for the trace of :mod:`vramfit.models.trace`.

transformers runs the experts of an MoE layer (granitemoe, qwen3_moe, mixtral, olmoe, ...) through
``integrations/moe.py::grouped_mm_experts_forward``, the default ``experts_implementation`` ("grouped_mm",
``modeling_utils.py::get_correct_experts_implementation``). Its two ``_grouped_linear`` calls go through
``_grouped_mm(input, weight, offs)``, which casts the input to the weight's dtype and calls
``torch.nn.functional.grouped_mm`` / ``torch._grouped_mm`` when ``_can_use_grouped_mm`` allows it (on CUDA:
compute capability 8.0 or more), else its own ``transformers::grouped_mm_fallback`` op. The fallback loops
over ``offs.tolist()`` (data-dependent: it cannot run on fake tensors) and its backward allocates
``zeros_like(weight)`` even when the weight is frozen, which the GPU never does. The trace therefore
replaces ``_grouped_mm`` (the same name in transformers 5.17 and 5.24) by a stand-in with the memory of
torch's kernel:

* forward (``aten/src/ATen/native/cuda/GroupedBlas.cpp::_grouped_mm_cuda``): one output of
  ``create_grouped_gemm_output_tensor`` (``GroupedMMUtils.h``), rows x ``weight.size(-1)`` in the
  weight's dtype with its row stride rounded up to 16 bytes; the bf16 CUTLASS path and the fp32/fp16
  ``_grouped_mm_fallback`` (``mm_out`` into slices of that output) allocate nothing else that lasts.
* backward (``tools/autograd/derivatives.yaml``, ``_grouped_mm``): ``self`` gets
  ``_grouped_mm_mat1_backward(grad, mat2, ...)``, ``mat2`` gets ``_grouped_mm_mat2_backward(grad, self,
  ...)``: each saved input is used by one formula only, so autograd saves the weight when the input needs a
  gradient and the input only when the weight does (a frozen expert keeps nothing but its own weight), and
  each gradient is one tensor of its input's shape and dtype. Checked on torch 2.13's CPU kernel (the
  autograd code is the same on every device): ``saved_tensors_hooks`` see the weight and ``offs`` for a
  frozen weight, and the input as well for a trainable one. ``offs`` (one int32 per expert, shared by a
  layer's two calls) is left out here: it is a per-layer constant of a few hundred bytes, which the trace's
  per-token terms would otherwise scale with the tokens.

The input's cast to the weight's dtype is transformers' own (``input.to(weight.dtype)``), kept as is: a
k-bit-prepared model has fp32 experts (not ``nn.Linear``, so not quantized, and upcast), and the cast copy
is what the GPU holds too.
"""

from __future__ import annotations

from contextlib import contextmanager


def _moe_module():
    try:
        import transformers.integrations.moe as moe
    except ImportError:  # older transformers: no fused experts interface
        return None
    return moe if hasattr(moe, "_grouped_mm") else None


def _kernel_grouped_mm(torch):
    """``_grouped_mm(input, weight, offs)`` with torch's kernel's allocations and saved tensors."""

    class _GroupedMM(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, weight, offs):
            x_grad, w_grad = ctx.needs_input_grad[:2]
            ctx.save_for_backward(weight if x_grad else None, x if w_grad else None)
            # shapes only: a reference to ``x`` would keep it alive, which the kernel does not
            ctx.like = [(t.shape, t.stride(), t.dtype, t.device) for t in (x, weight)]
            rows, cols = x.shape[0], weight.shape[-1]
            align = max(1, 16 // weight.element_size())
            padded = (cols + align - 1) // align * align
            return torch.empty_strided((rows, cols), (padded, 1), dtype=weight.dtype, device=x.device)

        @staticmethod
        def backward(ctx, grad):
            gx, gw = (
                torch.empty_strided(shape, stride, dtype=dtype, device=device) if needed else None
                for needed, (shape, stride, dtype, device) in zip(
                    ctx.needs_input_grad[:2], ctx.like, strict=True
                )
            )
            return gx, gw, None

    def grouped_mm(input, weight, offs):
        return _GroupedMM.apply(input.to(weight.dtype), weight, offs)

    return grouped_mm


@contextmanager
def kernel_experts(torch):
    """Within the block, transformers' fused experts run the stand-in for torch's grouped_mm kernel."""
    moe = _moe_module()
    if moe is None:
        yield
        return
    real = moe._grouped_mm
    moe._grouped_mm = _kernel_grouped_mm(torch)
    try:
        yield
    finally:
        moe._grouped_mm = real
