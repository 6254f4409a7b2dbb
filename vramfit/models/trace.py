"""One decoder layer's activations, traced from the model's own training step on fake tensors.

The model is built by transformers under ``FakeTensorMode`` (shapes and dtypes, no storage) with the
recipe's changes applied the way the libraries apply them: the linears bitsandbytes quantizes are replaced
by a stand-in with ``MatMul4Bit``'s autograd contract (the input cast to the compute dtype, nothing saved
but the weight, the output cast back to the input's dtype: bitsandbytes ``nn/modules.py::Linear4bit`` and
``autograd/_functions.py``), the other 16-bit parameters are upcast to fp32 as
``prepare_model_for_kbit_training`` does, peft's own ``get_peft_model`` wraps the targets, and the step
runs under autocast. Two counters watch it:

* autograd's saved-tensor hooks: what backward keeps (unique storages, parameters excluded);
* a ``TorchDispatchMode`` tally of live storage: the peak inside a layer's forward and its backward.

Built with 1 and 2 decoder layers, the difference is one layer; with two sequence lengths, the part that
grows with s^2 (eager scores) separates from the part that grows with tokens. The vocabulary is shrunk
to 128: the head and the loss are modelled in ``estimate/logits.py``. What no trace can see (the
dequantized weight of a 4-bit matmul, the cuBLAS workspace, paged optimizer state, SDPA's backend
buffers) stays modelled in the estimator. Autocast runs as CPU autocast (the only one a CPU can run),
whose lower-precision op list covers the matmuls and SDPA like CUDA's.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache

from vramfit.models.inventory import build_meta_model, hf_config_object, read_inventory, resolve_lora_targets
from vramfit.models.moe_trace import kernel_experts

TRACE_VOCAB = 128
_DT = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}


@dataclass(frozen=True)
class TraceKey:
    """What a layer's activations depend on besides the shapes of the model (a shape class)."""

    method: str
    quant: str
    load_dtype: str
    compute_dtype: str
    kbit_upcast: bool
    targets: tuple[str, ...]
    rank: int
    dropout: bool
    attn: str


@dataclass(frozen=True)
class LayerTrace:
    """Bytes of one decoder layer, per token (and per s^2 per sequence for eager scores)."""

    saved_per_token: float
    saved_per_s2: float
    fwd_transient_per_token: float
    bwd_transient_per_token: float
    transformers_version: str
    torch_version: str


def _tally_mode(torch):
    from torch.multiprocessing.reductions import StorageWeakRef
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_flatten

    class Tally(TorchDispatchMode):
        """Live bytes of the storages created while it is active; ``peak`` since ``mark()``."""

        def __init__(self):
            super().__init__()
            self.live: dict = {}
            self.peak = 0
            self.params: set = set()
            # autocast's cached copies of parameters (modelled apart), by storage address while alive: an
            # address is reused once its storage is freed, so a dead entry must not hide a new tensor
            self.weight_copies: dict = {}

        def now(self) -> int:
            for k in [k for k, (r, _) in self.live.items() if r.expired()]:
                del self.live[k]
            return sum(n for _, n in self.live.values())

        def is_weight_copy(self, storage) -> bool:
            r = self.weight_copies.get(storage._cdata)
            return r is not None and not r.expired()

        def mark(self) -> int:
            self.peak = n = self.now()
            return n

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            if func is torch.ops.aten._to_copy.default and args[0].untyped_storage()._cdata in self.params:
                self.weight_copies[out.untyped_storage()._cdata] = StorageWeakRef(out.untyped_storage())
            for t in tree_flatten(out)[0]:
                if isinstance(t, torch.Tensor):
                    s = t.untyped_storage()
                    r = StorageWeakRef(s)
                    if r.cdata not in self.live:
                        self.live[r.cdata] = (r, s.nbytes())
            self.peak = max(self.peak, self.now())
            return out

    return Tally


def _flash_sdpa(torch):
    """SDPA and dropout as CUDA runs them. SDPA as the CUDA flash kernel runs it (``_scaled_dot_product_flash_attention``): q, k, v in the
    autocast dtype (grouped-query k and v not expanded), the output and an fp32 logsumexp per head and
    query are what backward keeps; backward allocates dq, dk, dv. A CPU trace would otherwise take the
    CPU kernel's path (k and v expanded to every head), which the GPU does not run."""

    class _Flash(torch.autograd.Function):
        @staticmethod
        def forward(ctx, q, k, v):
            out = q.new_empty(q.shape[:-1] + v.shape[-1:])
            lse = q.new_empty(q.shape[:-1], dtype=torch.float32)
            ctx.save_for_backward(q, k, v, out, lse)
            return out

        @staticmethod
        def backward(ctx, grad):
            q, k, v, _, _ = ctx.saved_tensors
            return torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)

    def dropout(input, p=0.5, training=True, inplace=False):
        # CUDA's fused dropout (native_dropout) keeps a bool mask; the CPU path keeps a float noise tensor
        return torch.native_dropout(input, p, training)[0] if training and 0 < p < 1 else input

    def sdpa(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, enable_gqa=False):
        if torch.is_autocast_enabled("cpu"):
            dt = torch.get_autocast_dtype("cpu")
            query, key, value = (t.to(dt) for t in (query, key, value))
        return _Flash.apply(query, key, value)

    return sdpa, dropout


def _kbit_linear(torch, compute):
    nn = torch.nn

    class _MatMulKbit(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, weight):
            ctx.weight = weight  # bitsandbytes keeps only the (packed) weight: ctx.tensors = (None, B)
            return nn.functional.linear(x, weight)

        @staticmethod
        def backward(ctx, grad):
            return grad @ ctx.weight, None

    class KbitLinear(nn.Linear):
        def forward(self, x):
            inp_dtype = x.dtype
            x = x.to(compute)
            bias = None if self.bias is None else self.bias.to(compute)
            out = _MatMulKbit.apply(x, self.weight)
            out = out + bias if bias is not None else out
            return out.to(inp_dtype)

    return KbitLinear


def _prepare(torch, model, key: TraceKey, quantized: set[str], targets: list[str]):
    """The recipe's changes to the built model (quantized linears, k-bit upcast, LoRA / full)."""
    compute = getattr(torch, _DT[key.compute_dtype])
    if key.quant != "none":
        cls = _kbit_linear(torch, compute)
        for name in quantized:
            model.set_submodule(name, _kbit_standin(torch, cls, model.get_submodule(name), compute))
        for p in model.parameters():
            p.requires_grad_(False)
            if (
                key.kbit_upcast
                and p.dtype in (torch.float16, torch.bfloat16)
                and not _is_quantized(model, p, quantized)
            ):
                p.data = p.data.to(torch.float32)
        model.enable_input_require_grads()
    if key.method == "full":
        return model
    from peft import LoraConfig, get_peft_model

    cfg = LoraConfig(r=key.rank, lora_alpha=2 * key.rank, target_modules=targets,
                     lora_dropout=0.05 if key.dropout else 0.0, bias="none", task_type="CAUSAL_LM")  # fmt: skip
    if key.quant == "none":
        for p in model.parameters():
            p.requires_grad_(False)
    try:
        return get_peft_model(model, cfg)
    except ValueError as e:
        if "lora_dropout != 0" not in str(e):
            raise
        raise _fused_expert_dropout(model, cfg, key.targets) from None


def _fused_expert_dropout(model, cfg, targets: tuple[str, ...]):
    """peft's refusal of dropout on fused expert parameters, as the user's error. peft maps the names the
    experts' linears had before transformers fused them (``gate_proj``, ``down_proj``...) to the fused 3-D
    parameters (``utils/transformers_weight_conversion.py``: ``target_parameters``), which only
    ``lora.ParamWrapper`` adapts, and that works with ``lora_dropout = 0`` only."""
    from vramfit.errors import InputError

    fused = sorted(getattr(cfg, "target_parameters", None) or ())
    return InputError(
        "--dropout",
        f"for {model.config.model_type}, peft puts LoRA for --targets {','.join(targets)} on fused expert parameters "
        f"({', '.join(fused) or 'target_parameters'}), which it adapts only with lora_dropout 0 "
        "(lora.ParamWrapper); accepted: --dropout 0, or --targets without the experts' projections "
        "(e.g. attention)",
    )


def _kbit_standin(torch, cls, old, compute):
    """The k-bit stand-in for a module bitsandbytes replaces: an ``nn.Linear`` as ``Linear4bit`` is one. A
    ``Conv1D`` (weight stored in x out) becomes a ``Linear4bit(in, out)`` whose weight transformers transposes
    before quantizing (``integrations/bitsandbytes.py``: ``replace_with_bnb_linear`` reads
    ``in_features, out_features = module.weight.shape``; ``if issubclass(module.source_cls, Conv1D): value =
    value.T``), so peft and the model see a plain linear with ``in_features`` / ``out_features``."""
    from transformers.pytorch_utils import Conv1D

    new = cls.__new__(cls)
    new.__dict__ = old.__dict__
    if isinstance(old, Conv1D):
        new.in_features, new.out_features = old.weight.shape
        new.weight = torch.nn.Parameter(old.weight.data.T.contiguous(), requires_grad=False)
    new.weight.data = new.weight.data.to(compute)
    return new


def _is_quantized(model, p, quantized: set[str]) -> bool:
    return any(model.get_submodule(n).weight is p for n in quantized)


def _materialize(torch, model) -> None:
    """Replace every meta parameter and buffer by a fake CPU tensor (ties kept), so that CPU autocast
    applies; called inside FakeTensorMode."""
    done: dict[int, object] = {}
    for mod in model.modules():
        for name, p in list(mod._parameters.items()):
            if p is not None:
                if id(p) not in done:
                    done[id(p)] = torch.nn.Parameter(torch.empty(p.shape, dtype=p.dtype), p.requires_grad)
                mod._parameters[name] = done[id(p)]
        for name, b in list(mod._buffers.items()):
            if b is not None:
                mod._buffers[name] = torch.zeros(b.shape, dtype=b.dtype)


def _layers(model):
    import torch

    lists = [
        m
        for m in model.modules()
        if isinstance(m, torch.nn.ModuleList) and len(m) and "DecoderLayer" in type(m[0]).__name__
    ]
    if lists:
        return lists[0]
    return next((m for m in model.modules() if isinstance(m, torch.nn.ModuleList) and len(m)), ())


class _NoLayer(Exception):
    """A build with no decoder layer: its ``num_hidden_layers`` counts sublayers (LongCat-Flash: 2 a layer)."""


def _measure(config: dict, key: TraceKey, num_layers: int, seq: int) -> tuple[int, int, int]:
    """(saved bytes, peak layer-forward transient, peak layer-backward transient) of one step."""
    import torch
    from torch._subclasses.fake_tensor import FakeTensorMode

    Tally = _tally_mode(torch)
    small = {**config, "vocab_size": TRACE_VOCAB, "num_hidden_layers": num_layers}
    small["pad_token_id"] = 0  # within the shrunk vocabulary (the embedding checks it)
    for k in ("layer_types",):  # per-layer lists follow the number of layers
        if isinstance(small.get(k), list):
            small[k] = small[k][:num_layers]
    model = build_meta_model(small, "trace", dtype=_DT[key.load_dtype], attn=key.attn)
    model.config.use_cache = False
    if not len(_layers(model)):
        raise _NoLayer
    inv = read_inventory(model, model.config)
    quantized = {m.name for m in inv.linears if m.quantized} if key.quant != "none" else set()
    targets = [m.name for m in resolve_lora_targets(inv, key.targets)] if key.method != "full" else []
    model = _prepare(torch, model, key, quantized, targets)
    if key.method == "full":
        model.requires_grad_(True)
    with FakeTensorMode(allow_non_fake_inputs=True):
        _materialize(torch, model)
        model.train()
        ids = torch.zeros(1, seq, dtype=torch.long)
        params = {p.untyped_storage()._cdata for p in model.parameters()}
        param_ids = {id(p) for p in model.parameters()}
        saved: dict[int, int] = {}
        tally = Tally()

        def pack(t):
            s = t.untyped_storage()
            if id(t) not in param_ids and s._cdata not in params and not tally.is_weight_copy(s):
                saved[s._cdata] = s.nbytes()
            return t

        fwd_t, bwd_t = [0], [0]
        layer = _layers(model)[-1]
        state: dict = {}

        def pre(mod, args, kwargs):
            state["fwd0"] = tally.mark()

        def post(mod, args, kwargs, out):
            h = out[0] if isinstance(out, (tuple, list)) else out
            fwd_t[0] = max(fwd_t[0], tally.peak - tally.now())
            x = args[0] if args else kwargs["hidden_states"]
            # LoRA without k-bit preparation: the first layer's input needs no gradient (the embedding is
            # frozen and nothing sets enable_input_require_grads), so backward ends inside that layer;
            # the two-layer build measures the backward transient then
            if h.requires_grad and x.requires_grad:
                h.register_hook(lambda g: state.__setitem__("bwd0", tally.mark()))
                x.register_hook(lambda g: bwd_t.__setitem__(0, max(bwd_t[0], tally.peak - state["bwd0"])))
            return out

        layer.register_forward_pre_hook(pre, with_kwargs=True)
        layer.register_forward_hook(post, with_kwargs=True)
        tally.params = params
        autocast = key.compute_dtype != "fp32"
        import transformers.integrations.sdpa_attention as hf_sdpa

        F = torch.nn.functional
        real = F.scaled_dot_product_attention, getattr(hf_sdpa, "use_gqa_in_sdpa", None), F.dropout
        F.scaled_dot_product_attention, F.dropout = _flash_sdpa(torch)
        if real[1] is not None:  # the CUDA path: k and v reach the kernel with their own heads
            hf_sdpa.use_gqa_in_sdpa = lambda *a, **k: True
        try:
            with kernel_experts(torch):
                _step(torch, model, tally, pack, ids, key, autocast)
        finally:
            F.scaled_dot_product_attention, F.dropout = real[0], real[2]
            if real[1] is not None:
                hf_sdpa.use_gqa_in_sdpa = real[1]
    return sum(saved.values()), fwd_t[0], bwd_t[0]


def _step(torch, model, tally, pack, ids, key: TraceKey, autocast: bool):
    """One forward (under autocast) and backward, counted."""
    with tally, torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        with torch.autocast("cpu", dtype=getattr(torch, _DT[key.compute_dtype]), enabled=autocast):
            loss = model(input_ids=ids, labels=ids).loss
    with tally:
        loss.backward()
    return loss


@lru_cache(maxsize=256)
def _trace(config_json: str, key: TraceKey) -> LayerTrace:
    import warnings

    import transformers

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        verbosity = transformers.logging.get_verbosity()
        transformers.logging.set_verbosity_error()
        try:
            return _trace_quiet(config_json, key)
        finally:
            transformers.logging.set_verbosity(verbosity)


def _trace_quiet(config_json: str, key: TraceKey) -> LayerTrace:
    import torch
    import transformers

    config = json.loads(config_json)
    s1, s2 = 64, 128
    # num_hidden_layers 1 and 2, or 2 and 4 where it counts sublayers and 1 builds none: per unit of
    # num_hidden_layers either way, as the estimator multiplies by num_hidden_layers
    try:
        n1, n2 = 1, 2
        a1, f1, b1 = _measure(config, key, n1, s1)
    except _NoLayer:
        n1, n2 = 2, 4
        a1, f1, b1 = _measure(config, key, n1, s1)
    a2, f2, b2 = _measure(config, key, n2, s1)
    c1, _, _ = _measure(config, key, n1, s2)
    c2, _, _ = _measure(config, key, n2, s2)
    per_layer_1, per_layer_2 = (
        (a2 - a1) / (n2 - n1),
        (c2 - c1) / (n2 - n1),
    )  # one layer's saved bytes at s1, s2
    # per_layer(s) = alpha s + beta s^2  ->  beta = (p2/s2 - p1/s1) / (s2 - s1)
    beta = max(0.0, (per_layer_2 / s2 - per_layer_1 / s1) / (s2 - s1)) if key.attn == "eager" else 0.0
    alpha = per_layer_1 / s1 - beta * s1
    return LayerTrace(
        alpha, beta, max(f1, f2) / s1, max(b1, b2) / s1, transformers.__version__, torch.__version__
    )


def trace_layer(config: dict, key: TraceKey) -> LayerTrace:
    """One decoder layer of ``config`` under ``key``, traced (cached per config and key)."""
    hf_config_object(config, "trace")  # clear errors before any tracing
    return _trace(json.dumps(config, sort_keys=True, default=str), key)
