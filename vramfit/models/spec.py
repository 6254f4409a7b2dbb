"""ArchSpec: the shape of a decoder-only transformer, as far as memory is concerned.

One dataclass for every supported architecture (litgpt's ``Config`` is the model for this): the
fields are what a Hugging Face ``config.json`` says, and everything else (linear modules, parameter
counts, LoRA target names) is derived from them in one place. A CPU test builds every registry
model with transformers on the meta device and checks that the derived counts are exact.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

from vramfit.catalog import ATTNS, DEFAULT_ATTN, Attn

# Named groups of targets, expanded per architecture. "all-linear" is peft's: every nn.Linear except
# the output layer (peft ``tuners/tuners_utils.py::_maybe_include_all_linear_layers``).
TARGET_GROUPS = ("all-linear", "attention", "mlp")


@dataclass(frozen=True)
class LinearModule:
    """One ``nn.Linear`` inside every decoder layer (``layers.N.<path>``)."""

    name: str  # the module's attribute name, what LoRA's target_modules matches: "q_proj"
    in_features: int
    out_features: int
    bias: bool
    kind: str  # "attention" or "mlp"

    @property
    def weight_numel(self) -> int:
        return self.in_features * self.out_features

    @property
    def numel(self) -> int:
        return self.weight_numel + (self.out_features if self.bias else 0)


@dataclass(frozen=True)
class ArchSpec:
    """A decoder-only causal LM, described by the fields of its Hugging Face config."""

    name: str  # registry name, hub id or path it came from
    model_type: str  # transformers' model_type: llama, mistral, qwen2, qwen3, phi3, gemma2
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    tie_word_embeddings: bool = False
    attention_bias: bool = False  # bias on q, k, v (and o unless o_bias says otherwise)
    o_bias: bool = False
    mlp_bias: bool = False
    qk_norm: bool = False  # Qwen3: RMSNorm over head_dim on q and k
    fused_qkv: bool = False  # Phi-3: one qkv_proj
    fused_gate_up: bool = False  # Phi-3: one gate_up_proj
    norms_per_layer: int = 2  # Gemma-2 has 4 (pre/post attention and feed-forward)
    gated_mlp: bool = True  # SwiGLU / GeGLU: gate and up projections
    final_logit_softcapping: float | None = None  # Gemma-2: tanh soft-capping of the logits
    attn_logit_softcapping: float | None = None
    sliding_window: int | None = None
    torch_dtype: str = "bfloat16"  # the checkpoint's dtype
    default_attn: Attn = DEFAULT_ATTN  # what transformers picks when attn_implementation is not given
    max_position_embeddings: int = 4096
    hidden_act: str = "silu"
    family: str = ""  # display family: "Llama 3", "Qwen2.5"
    source: str = ""  # where the config came from (URL of config.json or a local path)
    hf_config: dict = field(default_factory=dict, compare=False, repr=False)  # the raw config.json
    # Read from the model built on the meta device (models/inventory.py) for types outside the built-in
    # families: parameters, quantized tensors and LoRA targets then come from it, not from the fields.
    inventory: object | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        for f in ("vocab_size", "hidden_size", "intermediate_size", "num_layers", "num_heads",
                  "num_kv_heads", "head_dim"):  # fmt: skip
            v = getattr(self, f)
            if not isinstance(v, int) or v <= 0:
                raise ValueError(f"{self.name}: {f} must be a positive integer, got {v!r}")
        if self.num_heads % self.num_kv_heads:
            raise ValueError(
                f"{self.name}: num_attention_heads ({self.num_heads}) is not a multiple of "
                f"num_key_value_heads ({self.num_kv_heads})"
            )
        if self.default_attn not in ATTNS:
            raise ValueError(f"{self.name}: default_attn {self.default_attn!r} not in {tuple(ATTNS)}")

    # ---- derived shapes -------------------------------------------------------------------------

    @property
    def q_size(self) -> int:
        return self.num_heads * self.head_dim

    @property
    def kv_size(self) -> int:
        return self.num_kv_heads * self.head_dim

    @cached_property
    def layer_linears(self) -> tuple[LinearModule, ...]:
        """The ``nn.Linear`` modules of one decoder layer, in forward order."""
        if self.inventory is not None:
            return tuple(
                LinearModule(
                    m.leaf,
                    m.in_features,
                    m.out_features,
                    m.bias,
                    "attention" if m.kind == "attention" else "mlp",
                )
                for m in self.inventory.layer_linears(0)
            )
        h, i, q, kv = self.hidden_size, self.intermediate_size, self.q_size, self.kv_size
        ab, ob, mb = self.attention_bias, self.o_bias, self.mlp_bias
        mods: list[LinearModule] = []
        if self.fused_qkv:
            mods.append(LinearModule("qkv_proj", h, q + 2 * kv, ab, "attention"))
        else:
            mods += [
                LinearModule("q_proj", h, q, ab, "attention"),
                LinearModule("k_proj", h, kv, ab, "attention"),
                LinearModule("v_proj", h, kv, ab, "attention"),
            ]
        mods.append(LinearModule("o_proj", q, h, ob, "attention"))
        if self.fused_gate_up:
            mods.append(LinearModule("gate_up_proj", h, 2 * i, mb, "mlp"))
        elif self.gated_mlp:
            mods += [LinearModule("gate_proj", h, i, mb, "mlp"), LinearModule("up_proj", h, i, mb, "mlp")]
        else:
            mods.append(LinearModule("up_proj", h, i, mb, "mlp"))
        mods.append(LinearModule("down_proj", i, h, mb, "mlp"))
        return tuple(mods)

    @cached_property
    def linear_by_name(self) -> dict[str, LinearModule]:
        return {m.name: m for m in self.layer_linears}

    @property
    def lora_target_names(self) -> tuple[str, ...]:
        """Every name ``--targets`` accepts for this model (module names, then groups)."""
        return tuple(m.name for m in self.layer_linears) + TARGET_GROUPS

    # ---- parameter counts (exact; checked against transformers in tests) ---------------------------

    @property
    def embedding_params(self) -> int:
        return self.vocab_size * self.hidden_size

    @property
    def lm_head_params(self) -> int:
        """Parameters of the output layer that are not shared with the embedding."""
        return 0 if self.tie_word_embeddings else self.vocab_size * self.hidden_size

    @property
    def layer_norm_params(self) -> int:
        """Norm weights of one decoder layer (RMSNorm: one vector, no bias)."""
        return self.norms_per_layer * self.hidden_size + (2 * self.head_dim if self.qk_norm else 0)

    @cached_property
    def layer_linear_weight_params(self) -> int:
        return sum(m.weight_numel for m in self.layer_linears)

    @cached_property
    def layer_linear_bias_params(self) -> int:
        return sum(m.out_features for m in self.layer_linears if m.bias)

    @property
    def layer_params(self) -> int:
        return self.layer_linear_weight_params + self.layer_linear_bias_params + self.layer_norm_params

    @property
    def quantizable_params(self) -> int:
        """Weights of the decoder layers' nn.Linear modules: what bitsandbytes quantizes.

        transformers keeps ``lm_head`` (and anything tied to it) unquantized
        (``integrations/bitsandbytes.py`` / ``get_keys_to_not_convert``); biases stay in the load dtype.
        """
        if self.inventory is not None:
            return self.inventory.quantized_params
        return self.num_layers * self.layer_linear_weight_params

    @property
    def total_params(self) -> int:
        """What ``sum(p.numel() for p in model.parameters())`` gives (tied weights counted once)."""
        if self.inventory is not None:
            return self.inventory.total_params
        return (
            self.embedding_params
            + self.lm_head_params
            + self.num_layers * self.layer_params
            + self.hidden_size  # final norm
        )

    @property
    def unquantized_params(self) -> int:
        """Parameters that stay in the load dtype under 4/8-bit quantization: embeddings, lm_head,
        norms and linear biases."""
        return self.total_params - self.quantizable_params

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "family": self.family,
            "model_type": self.model_type,
            "source": self.source,
            "total_params": self.total_params,
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_layers": self.num_layers,
            "num_heads": self.num_heads,
            "num_kv_heads": self.num_kv_heads,
            "head_dim": self.head_dim,
            "tie_word_embeddings": self.tie_word_embeddings,
            "default_attn": self.default_attn,
            "lora_targets": [m.name for m in self.layer_linears],
        }
