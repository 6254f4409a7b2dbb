"""Built-in models, as data (litgpt ``config.py`` style): one entry per model, offline.

Each entry keeps the memory-relevant keys of the model's Hugging Face ``config.json`` verbatim (the
keys that decide parameter shapes, plus those the estimator reads: attention window, soft-capping,
dtype), with the public URL of that file in a comment above it. ``config`` is enough for
``transformers.AutoConfig.for_model(**config)`` to build the same parameter shapes; a CPU test builds
every entry on the meta device and checks the counts derived by vramfit against transformers'.

Keys that do not change memory (token ids, initializer range, dropout 0.0, transformers_version) are
left out. Where the checked-in variant is the instruct/chat release, the base model has the same
shapes (fine-tuning does not change the architecture); ``hf_id`` names the file the values come from.

Published total parameter counts (tied weights counted once), for reference: Mistral-7B 7,241,732,096;
Llama-3-8B 8,030,261,248; Qwen2.5-0.5B 494,032,768; Phi-3-mini 3,821,079,552; Gemma-2-2b 2,614,341,888;
TinyLlama-1.1B 1,100,048,384; SmolLM2-135M 134,515,008 (see ``tests/test_models.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class RegistryEntry:
    """One built-in model: short name, where its config comes from, and the config itself."""

    name: str  # short alias, what --model accepts: "mistral-7b"
    hf_id: str  # the Hugging Face repository the config was read from
    family: str  # display family: "Llama 3.2"
    config: dict = field(compare=False, hash=False)  # memory-relevant config.json keys, verbatim
    aliases: tuple[str, ...] = ()  # other names --model accepts (the hub id is always accepted)

    @property
    def source(self) -> str:
        return f"https://huggingface.co/{self.hf_id}/blob/main/config.json"


# fmt: off
ENTRIES: tuple[RegistryEntry, ...] = (
    # ------------------------------------------------------------------------------------ Mistral
    # https://huggingface.co/mistralai/Mistral-7B-v0.1/blob/main/config.json
    RegistryEntry("mistral-7b", "mistralai/Mistral-7B-v0.1", "Mistral", aliases=("mistral-7b-v0.1",), config={
        "model_type": "mistral", "vocab_size": 32000, "hidden_size": 4096, "intermediate_size": 14336,
        "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8,
        "tie_word_embeddings": False, "rms_norm_eps": 1e-05, "rope_theta": 10000.0,
        "max_position_embeddings": 32768, "sliding_window": 4096, "hidden_act": "silu",
        "torch_dtype": "bfloat16",
    }),
    # https://huggingface.co/mistralai/Mistral-7B-Instruct-v0.3/blob/main/config.json
    # v0.3 extends the vocabulary to 32768 and drops the sliding window.
    RegistryEntry("mistral-7b-v0.3", "mistralai/Mistral-7B-Instruct-v0.3", "Mistral",
                  aliases=("mistral-7b-instruct-v0.3",), config={
        "model_type": "mistral", "vocab_size": 32768, "hidden_size": 4096, "intermediate_size": 14336,
        "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8,
        "tie_word_embeddings": False, "rms_norm_eps": 1e-05, "rope_theta": 1000000.0,
        "max_position_embeddings": 32768, "sliding_window": None, "hidden_act": "silu",
        "torch_dtype": "bfloat16",
    }),
    # ------------------------------------------------------------------------------------ Llama 2
    # https://huggingface.co/meta-llama/Llama-2-7b-hf/blob/main/config.json
    RegistryEntry("llama-2-7b", "meta-llama/Llama-2-7b-hf", "Llama 2", aliases=("llama-2-7b-hf",), config={
        "model_type": "llama", "vocab_size": 32000, "hidden_size": 4096, "intermediate_size": 11008,
        "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 32,
        "tie_word_embeddings": False, "rms_norm_eps": 1e-05, "rope_scaling": None,
        "max_position_embeddings": 4096, "hidden_act": "silu", "torch_dtype": "float16",
    }),
    # https://huggingface.co/meta-llama/Llama-2-13b-hf/blob/main/config.json
    RegistryEntry("llama-2-13b", "meta-llama/Llama-2-13b-hf", "Llama 2", aliases=("llama-2-13b-hf",), config={
        "model_type": "llama", "vocab_size": 32000, "hidden_size": 5120, "intermediate_size": 13824,
        "num_hidden_layers": 40, "num_attention_heads": 40, "num_key_value_heads": 40,
        "tie_word_embeddings": False, "rms_norm_eps": 1e-05, "rope_scaling": None,
        "max_position_embeddings": 4096, "hidden_act": "silu", "torch_dtype": "float16",
    }),
    # ------------------------------------------------------------------------------------ Llama 3
    # https://huggingface.co/meta-llama/Meta-Llama-3-8B/blob/main/config.json
    RegistryEntry("llama-3-8b", "meta-llama/Meta-Llama-3-8B", "Llama 3", aliases=("meta-llama-3-8b",), config={
        "model_type": "llama", "vocab_size": 128256, "hidden_size": 4096, "intermediate_size": 14336,
        "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8,
        "tie_word_embeddings": False, "rms_norm_eps": 1e-05, "rope_theta": 500000.0,
        "max_position_embeddings": 8192, "hidden_act": "silu", "torch_dtype": "bfloat16",
    }),
    # https://huggingface.co/meta-llama/Llama-3.1-8B/blob/main/config.json
    RegistryEntry("llama-3.1-8b", "meta-llama/Llama-3.1-8B", "Llama 3.1", aliases=("meta-llama-3.1-8b",), config={
        "model_type": "llama", "vocab_size": 128256, "hidden_size": 4096, "intermediate_size": 14336,
        "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8,
        "attention_bias": False, "mlp_bias": False, "tie_word_embeddings": False, "rms_norm_eps": 1e-05,
        "rope_theta": 500000.0, "rope_scaling": {
            "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
            "original_max_position_embeddings": 8192, "rope_type": "llama3",
        },
        "max_position_embeddings": 131072, "hidden_act": "silu", "torch_dtype": "bfloat16",
    }),
    # https://huggingface.co/meta-llama/Llama-3.2-1B/blob/main/config.json
    RegistryEntry("llama-3.2-1b", "meta-llama/Llama-3.2-1B", "Llama 3.2", config={
        "model_type": "llama", "vocab_size": 128256, "hidden_size": 2048, "intermediate_size": 8192,
        "num_hidden_layers": 16, "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 64,
        "attention_bias": False, "mlp_bias": False, "tie_word_embeddings": True, "rms_norm_eps": 1e-05,
        "rope_theta": 500000.0, "rope_scaling": {
            "factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
            "original_max_position_embeddings": 8192, "rope_type": "llama3",
        },
        "max_position_embeddings": 131072, "hidden_act": "silu", "torch_dtype": "bfloat16",
    }),
    # https://huggingface.co/meta-llama/Llama-3.2-3B/blob/main/config.json
    RegistryEntry("llama-3.2-3b", "meta-llama/Llama-3.2-3B", "Llama 3.2", config={
        "model_type": "llama", "vocab_size": 128256, "hidden_size": 3072, "intermediate_size": 8192,
        "num_hidden_layers": 28, "num_attention_heads": 24, "num_key_value_heads": 8, "head_dim": 128,
        "attention_bias": False, "mlp_bias": False, "tie_word_embeddings": True, "rms_norm_eps": 1e-05,
        "rope_theta": 500000.0, "rope_scaling": {
            "factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
            "original_max_position_embeddings": 8192, "rope_type": "llama3",
        },
        "max_position_embeddings": 131072, "hidden_act": "silu", "torch_dtype": "bfloat16",
    }),
    # ------------------------------------------------------------------------------------ Qwen2.5
    # Qwen2 puts a bias on q, k and v (not o); use_sliding_window is false, so no window applies.
    # https://huggingface.co/Qwen/Qwen2.5-0.5B/blob/main/config.json
    RegistryEntry("qwen2.5-0.5b", "Qwen/Qwen2.5-0.5B", "Qwen2.5", config={
        "model_type": "qwen2", "vocab_size": 151936, "hidden_size": 896, "intermediate_size": 4864,
        "num_hidden_layers": 24, "num_attention_heads": 14, "num_key_value_heads": 2,
        "tie_word_embeddings": True, "rms_norm_eps": 1e-06, "rope_theta": 1000000.0,
        "max_position_embeddings": 32768, "sliding_window": 32768, "use_sliding_window": False,
        "max_window_layers": 24, "hidden_act": "silu", "torch_dtype": "bfloat16",
    }),
    # https://huggingface.co/Qwen/Qwen2.5-1.5B-Instruct/blob/main/config.json
    RegistryEntry("qwen2.5-1.5b", "Qwen/Qwen2.5-1.5B-Instruct", "Qwen2.5", aliases=("qwen2.5-1.5b-instruct",),
                  config={
        "model_type": "qwen2", "vocab_size": 151936, "hidden_size": 1536, "intermediate_size": 8960,
        "num_hidden_layers": 28, "num_attention_heads": 12, "num_key_value_heads": 2,
        "tie_word_embeddings": True, "rms_norm_eps": 1e-06, "rope_theta": 1000000.0,
        "max_position_embeddings": 32768, "sliding_window": 32768, "use_sliding_window": False,
        "max_window_layers": 21, "hidden_act": "silu", "torch_dtype": "bfloat16",
    }),
    # https://huggingface.co/Qwen/Qwen2.5-3B/blob/main/config.json
    RegistryEntry("qwen2.5-3b", "Qwen/Qwen2.5-3B", "Qwen2.5", config={
        "model_type": "qwen2", "vocab_size": 151936, "hidden_size": 2048, "intermediate_size": 11008,
        "num_hidden_layers": 36, "num_attention_heads": 16, "num_key_value_heads": 2,
        "tie_word_embeddings": True, "rms_norm_eps": 1e-06, "rope_theta": 1000000.0,
        "max_position_embeddings": 32768, "sliding_window": 32768, "use_sliding_window": False,
        "max_window_layers": 36, "hidden_act": "silu", "torch_dtype": "bfloat16",
    }),
    # https://huggingface.co/Qwen/Qwen2.5-7B/blob/main/config.json
    RegistryEntry("qwen2.5-7b", "Qwen/Qwen2.5-7B", "Qwen2.5", config={
        "model_type": "qwen2", "vocab_size": 152064, "hidden_size": 3584, "intermediate_size": 18944,
        "num_hidden_layers": 28, "num_attention_heads": 28, "num_key_value_heads": 4,
        "tie_word_embeddings": False, "rms_norm_eps": 1e-06, "rope_theta": 1000000.0,
        "max_position_embeddings": 131072, "sliding_window": 131072, "use_sliding_window": False,
        "max_window_layers": 28, "hidden_act": "silu", "torch_dtype": "bfloat16",
    }),
    # ------------------------------------------------------------------------------------ Qwen3
    # Qwen3: head_dim 128 independent of hidden_size, RMSNorm on q and k (qk-norm), no biases.
    # https://huggingface.co/Qwen/Qwen3-0.6B/blob/main/config.json
    RegistryEntry("qwen3-0.6b", "Qwen/Qwen3-0.6B", "Qwen3", config={
        "model_type": "qwen3", "vocab_size": 151936, "hidden_size": 1024, "intermediate_size": 3072,
        "num_hidden_layers": 28, "num_attention_heads": 16, "num_key_value_heads": 8, "head_dim": 128,
        "attention_bias": False, "tie_word_embeddings": True, "rms_norm_eps": 1e-06,
        "rope_theta": 1000000.0, "rope_scaling": None, "max_position_embeddings": 40960,
        "sliding_window": None, "use_sliding_window": False, "max_window_layers": 28,
        "hidden_act": "silu", "torch_dtype": "bfloat16",
    }),
    # https://huggingface.co/Qwen/Qwen3-1.7B/blob/main/config.json
    RegistryEntry("qwen3-1.7b", "Qwen/Qwen3-1.7B", "Qwen3", config={
        "model_type": "qwen3", "vocab_size": 151936, "hidden_size": 2048, "intermediate_size": 6144,
        "num_hidden_layers": 28, "num_attention_heads": 16, "num_key_value_heads": 8, "head_dim": 128,
        "attention_bias": False, "tie_word_embeddings": True, "rms_norm_eps": 1e-06,
        "rope_theta": 1000000, "rope_scaling": None, "max_position_embeddings": 40960,
        "sliding_window": None, "use_sliding_window": False, "max_window_layers": 28,
        "hidden_act": "silu", "torch_dtype": "bfloat16",
    }),
    # https://huggingface.co/Qwen/Qwen3-4B/blob/main/config.json
    RegistryEntry("qwen3-4b", "Qwen/Qwen3-4B", "Qwen3", config={
        "model_type": "qwen3", "vocab_size": 151936, "hidden_size": 2560, "intermediate_size": 9728,
        "num_hidden_layers": 36, "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 128,
        "attention_bias": False, "tie_word_embeddings": True, "rms_norm_eps": 0.000001,
        "rope_theta": 1000000, "rope_scaling": None, "max_position_embeddings": 40960,
        "sliding_window": None, "use_sliding_window": False, "max_window_layers": 36,
        "hidden_act": "silu", "torch_dtype": "bfloat16",
    }),
    # https://huggingface.co/Qwen/Qwen3-8B/blob/main/config.json
    RegistryEntry("qwen3-8b", "Qwen/Qwen3-8B", "Qwen3", config={
        "model_type": "qwen3", "vocab_size": 151936, "hidden_size": 4096, "intermediate_size": 12288,
        "num_hidden_layers": 36, "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 128,
        "attention_bias": False, "tie_word_embeddings": False, "rms_norm_eps": 1e-06,
        "rope_theta": 1000000, "rope_scaling": None, "max_position_embeddings": 40960,
        "sliding_window": None, "use_sliding_window": False, "max_window_layers": 36,
        "hidden_act": "silu", "torch_dtype": "bfloat16",
    }),
    # ------------------------------------------------------------------------------------ Phi-3
    # Phi-3: fused qkv_proj and gate_up_proj (LoRA targets them by these names), no biases.
    # https://huggingface.co/microsoft/Phi-3-mini-4k-instruct/blob/main/config.json
    RegistryEntry("phi-3-mini", "microsoft/Phi-3-mini-4k-instruct", "Phi-3",
                  aliases=("phi-3-mini-4k", "phi-3-mini-4k-instruct"), config={
        "model_type": "phi3", "vocab_size": 32064, "hidden_size": 3072, "intermediate_size": 8192,
        "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 32,
        "attention_bias": False, "tie_word_embeddings": False, "rms_norm_eps": 1e-05,
        "rope_theta": 10000.0, "rope_scaling": None, "max_position_embeddings": 4096,
        "original_max_position_embeddings": 4096, "sliding_window": 2047, "hidden_act": "silu",
        "torch_dtype": "bfloat16",
    }),
    # https://huggingface.co/microsoft/Phi-3.5-mini-instruct/blob/main/config.json
    # Its rope_scaling (type "longrope", two lists of 48 factors) is left out: RoPE factors are
    # buffers, not parameters, and do not change memory.
    RegistryEntry("phi-3.5-mini", "microsoft/Phi-3.5-mini-instruct", "Phi-3.5",
                  aliases=("phi-3.5-mini-instruct",), config={
        "model_type": "phi3", "vocab_size": 32064, "hidden_size": 3072, "intermediate_size": 8192,
        "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 32,
        "attention_bias": False, "tie_word_embeddings": False, "rms_norm_eps": 1e-05,
        "rope_theta": 10000.0, "max_position_embeddings": 131072,
        "original_max_position_embeddings": 4096, "sliding_window": 262144, "hidden_act": "silu",
        "torch_dtype": "bfloat16",
    }),
    # ------------------------------------------------------------------------------------ Gemma 2
    # Gemma-2: 4 RMSNorms per layer, GeGLU MLP, tied embeddings (the config class default: the file
    # has no tie_word_embeddings key), tanh soft-capping of attention scores and of the logits.
    # https://huggingface.co/google/gemma-2-2b/blob/main/config.json
    RegistryEntry("gemma-2-2b", "google/gemma-2-2b", "Gemma 2", config={
        "model_type": "gemma2", "vocab_size": 256000, "hidden_size": 2304, "intermediate_size": 9216,
        "num_hidden_layers": 26, "num_attention_heads": 8, "num_key_value_heads": 4, "head_dim": 256,
        "attention_bias": False, "rms_norm_eps": 1e-06, "rope_theta": 10000.0,
        "max_position_embeddings": 8192, "sliding_window": 4096, "query_pre_attn_scalar": 256,
        "attn_logit_softcapping": 50.0, "final_logit_softcapping": 30.0,
        "hidden_act": "gelu_pytorch_tanh", "hidden_activation": "gelu_pytorch_tanh", "torch_dtype": "float32",
    }),
    # https://huggingface.co/google/gemma-2-9b-it/blob/main/config.json
    RegistryEntry("gemma-2-9b", "google/gemma-2-9b-it", "Gemma 2", aliases=("gemma-2-9b-it",), config={
        "model_type": "gemma2", "vocab_size": 256000, "hidden_size": 3584, "intermediate_size": 14336,
        "num_hidden_layers": 42, "num_attention_heads": 16, "num_key_value_heads": 8, "head_dim": 256,
        "attention_bias": False, "rms_norm_eps": 1e-06, "rope_theta": 10000.0,
        "max_position_embeddings": 8192, "sliding_window": 4096, "query_pre_attn_scalar": 256,
        "attn_logit_softcapping": 50.0, "final_logit_softcapping": 30.0,
        "hidden_act": "gelu_pytorch_tanh", "hidden_activation": "gelu_pytorch_tanh", "torch_dtype": "bfloat16",
    }),
    # ------------------------------------------------------------------------------------ TinyLlama
    # https://huggingface.co/TinyLlama/TinyLlama-1.1B-Chat-v1.0/blob/main/config.json
    RegistryEntry("tinyllama-1.1b", "TinyLlama/TinyLlama-1.1B-Chat-v1.0", "TinyLlama",
                  aliases=("tinyllama", "tinyllama-1.1b-chat"), config={
        "model_type": "llama", "vocab_size": 32000, "hidden_size": 2048, "intermediate_size": 5632,
        "num_hidden_layers": 22, "num_attention_heads": 32, "num_key_value_heads": 4,
        "attention_bias": False, "tie_word_embeddings": False, "rms_norm_eps": 1e-05,
        "rope_theta": 10000.0, "rope_scaling": None, "max_position_embeddings": 2048,
        "hidden_act": "silu", "torch_dtype": "bfloat16",
    }),
    # ------------------------------------------------------------------------------------ SmolLM2
    # https://huggingface.co/HuggingFaceTB/SmolLM2-135M/blob/main/config.json
    RegistryEntry("smollm2-135m", "HuggingFaceTB/SmolLM2-135M", "SmolLM2", config={
        "model_type": "llama", "vocab_size": 49152, "hidden_size": 576, "intermediate_size": 1536,
        "num_hidden_layers": 30, "num_attention_heads": 9, "num_key_value_heads": 3,
        "attention_bias": False, "tie_word_embeddings": True, "rms_norm_eps": 1e-05,
        "rope_theta": 100000, "rope_scaling": None, "max_position_embeddings": 8192,
        "hidden_act": "silu", "torch_dtype": "bfloat16",
    }),
    # https://huggingface.co/HuggingFaceTB/SmolLM2-360M/blob/main/config.json
    RegistryEntry("smollm2-360m", "HuggingFaceTB/SmolLM2-360M", "SmolLM2", config={
        "model_type": "llama", "vocab_size": 49152, "hidden_size": 960, "intermediate_size": 2560,
        "num_hidden_layers": 32, "num_attention_heads": 15, "num_key_value_heads": 5,
        "tie_word_embeddings": True, "rms_norm_eps": 1e-05, "rope_theta": 100000,
        "max_position_embeddings": 8192, "hidden_act": "silu", "torch_dtype": "bfloat16",
    }),
    # https://huggingface.co/HuggingFaceTB/SmolLM2-1.7B-Instruct/blob/main/config.json
    RegistryEntry("smollm2-1.7b", "HuggingFaceTB/SmolLM2-1.7B-Instruct", "SmolLM2",
                  aliases=("smollm2-1.7b-instruct",), config={
        "model_type": "llama", "vocab_size": 49152, "hidden_size": 2048, "intermediate_size": 8192,
        "num_hidden_layers": 24, "num_attention_heads": 32, "num_key_value_heads": 32,
        "attention_bias": False, "mlp_bias": False, "tie_word_embeddings": True, "rms_norm_eps": 1e-05,
        "rope_theta": 130000, "rope_scaling": None, "max_position_embeddings": 8192,
        "hidden_act": "silu", "torch_dtype": "bfloat16",
    }),
    # ------------------------------------------------------------------------------------ Phi-4
    # Phi-4-mini is a phi3 model: 24 query heads over 8 KV heads, tied embeddings, partial RoPE (0.75).
    # Its longrope rope_scaling (48-entry factor lists) is left out: buffers, no parameters.
    # https://huggingface.co/microsoft/Phi-4-mini-instruct/blob/main/config.json
    RegistryEntry("phi-4-mini", "microsoft/Phi-4-mini-instruct", "Phi-4", aliases=("phi-4-mini-instruct",),
                  config={
        "model_type": "phi3", "vocab_size": 200064, "hidden_size": 3072, "intermediate_size": 8192,
        "num_hidden_layers": 32, "num_attention_heads": 24, "num_key_value_heads": 8,
        "attention_bias": False, "tie_word_embeddings": True, "rms_norm_eps": 1e-05,
        "rope_theta": 10000.0, "partial_rotary_factor": 0.75, "max_position_embeddings": 131072,
        "original_max_position_embeddings": 4096, "sliding_window": 262144, "hidden_act": "silu",
        "torch_dtype": "bfloat16",
    }),
    # ---------------------------------------------------------------- not built-in families (data)
    # The entries below are model types the hand-written formulas do not know: their tensors and traced
    # layer terms ship in vramfit/data/derived_models.json (benchmarks/derive_models.py writes it), so
    # they are estimated offline and without torch.
    # ------------------------------------------------------------------------------------ Gemma 3
    # Gemma-3 text: 5 sliding-window layers (window 512 / 1024) per global layer, qk-norm, 4 norms per
    # layer, head_dim 256 independent of hidden_size, tied embeddings.
    # https://huggingface.co/google/gemma-3-270m/blob/main/config.json
    RegistryEntry("gemma-3-270m", "google/gemma-3-270m", "Gemma 3", config={
        "model_type": "gemma3_text", "vocab_size": 262144, "hidden_size": 640, "intermediate_size": 2048,
        "num_hidden_layers": 18, "num_attention_heads": 4, "num_key_value_heads": 1, "head_dim": 256,
        "attention_bias": False, "tie_word_embeddings": True, "rms_norm_eps": 1e-06,
        "rope_theta": 1000000.0, "rope_local_base_freq": 10000.0, "max_position_embeddings": 32768,
        "sliding_window": 512, "query_pre_attn_scalar": 256, "hidden_activation": "gelu_pytorch_tanh",
        "torch_dtype": "bfloat16",
    }),
    # https://huggingface.co/google/gemma-3-1b-pt/blob/main/config.json
    RegistryEntry("gemma-3-1b", "google/gemma-3-1b-pt", "Gemma 3", aliases=("gemma-3-1b-it",), config={
        "model_type": "gemma3_text", "vocab_size": 262144, "hidden_size": 1152, "intermediate_size": 6912,
        "num_hidden_layers": 26, "num_attention_heads": 4, "num_key_value_heads": 1, "head_dim": 256,
        "attention_bias": False, "tie_word_embeddings": True, "rms_norm_eps": 1e-06,
        "rope_theta": 1000000.0, "rope_local_base_freq": 10000.0, "max_position_embeddings": 32768,
        "sliding_window": 512, "query_pre_attn_scalar": 256, "hidden_activation": "gelu_pytorch_tanh",
        "torch_dtype": "bfloat16",
    }),
    # The text_config of the multimodal release (its vision tower is not estimated).
    # https://huggingface.co/google/gemma-3-4b-it/blob/main/config.json
    RegistryEntry("gemma-3-4b", "google/gemma-3-4b-it", "Gemma 3", aliases=("gemma-3-4b-text",), config={
        "model_type": "gemma3_text", "vocab_size": 262208, "hidden_size": 2560, "intermediate_size": 10240,
        "num_hidden_layers": 34, "num_attention_heads": 8, "num_key_value_heads": 4, "head_dim": 256,
        "attention_bias": False, "tie_word_embeddings": True, "rms_norm_eps": 1e-06,
        "rope_theta": 1000000.0, "rope_local_base_freq": 10000.0,
        "rope_scaling": {"factor": 8.0, "rope_type": "linear"}, "max_position_embeddings": 131072,
        "sliding_window": 1024, "query_pre_attn_scalar": 256, "hidden_activation": "gelu_pytorch_tanh",
        "torch_dtype": "bfloat16",
    }),
    # ------------------------------------------------------------------------------------ SmolLM3
    # SmolLM3: Llama-shaped, every 4th layer without RoPE (no_rope_layer_interval), tied embeddings.
    # https://huggingface.co/HuggingFaceTB/SmolLM3-3B/blob/main/config.json
    RegistryEntry("smollm3-3b", "HuggingFaceTB/SmolLM3-3B", "SmolLM3", config={
        "model_type": "smollm3", "vocab_size": 128256, "hidden_size": 2048, "intermediate_size": 11008,
        "num_hidden_layers": 36, "num_attention_heads": 16, "num_key_value_heads": 4,
        "attention_bias": False, "mlp_bias": False, "tie_word_embeddings": True, "rms_norm_eps": 1e-06,
        "rope_theta": 5000000.0, "no_rope_layer_interval": 4, "max_position_embeddings": 65536,
        "hidden_act": "silu", "torch_dtype": "bfloat16",
    }),
    # ------------------------------------------------------------------------------------ OLMo 2
    # OLMo 2: norms after attention and MLP (not before), qk-norm over the full q / k width.
    # https://huggingface.co/allenai/OLMo-2-0425-1B/blob/main/config.json
    RegistryEntry("olmo-2-1b", "allenai/OLMo-2-0425-1B", "OLMo 2", aliases=("olmo-2-0425-1b",), config={
        "model_type": "olmo2", "vocab_size": 100352, "hidden_size": 2048, "intermediate_size": 8192,
        "num_hidden_layers": 16, "num_attention_heads": 16, "num_key_value_heads": 16,
        "attention_bias": False, "tie_word_embeddings": False, "rms_norm_eps": 1e-06,
        "rope_theta": 500000, "max_position_embeddings": 4096, "hidden_act": "silu",
        "torch_dtype": "bfloat16",
    }),
    # ------------------------------------------------------------------------------------ Granite MoE
    # GraniteMoE: every layer's MLP is top-8 of 32 (40) experts, stored as fused 3-D parameters
    # (not nn.Linear: bitsandbytes leaves them unquantized), 49155-entry vocabulary.
    # https://huggingface.co/ibm-granite/granite-3.0-1b-a400m-instruct/blob/main/config.json
    # tie_word_embeddings is not in the excerpt this entry was checked against; it is true in the file of
    # granite-3.1-3b-a800m below and in the other Granite 3 releases.
    RegistryEntry("granite-3.0-1b-a400m", "ibm-granite/granite-3.0-1b-a400m-instruct", "Granite 3 MoE",
                  aliases=("granite-3.0-1b-a400m-instruct",), config={
        "model_type": "granitemoe", "vocab_size": 49155, "hidden_size": 1024, "intermediate_size": 512,
        "num_hidden_layers": 24, "num_attention_heads": 16, "num_key_value_heads": 8,
        "num_local_experts": 32, "num_experts_per_tok": 8, "tie_word_embeddings": True,
        "rope_theta": 10000, "hidden_act": "silu", "torch_dtype": "bfloat16",
    }),
    # https://huggingface.co/ibm-granite/granite-3.1-3b-a800m-instruct/blob/main/config.json
    RegistryEntry("granite-3.1-3b-a800m", "ibm-granite/granite-3.1-3b-a800m-instruct", "Granite 3 MoE",
                  aliases=("granite-3.1-3b-a800m-instruct",), config={
        "model_type": "granitemoe", "vocab_size": 49155, "hidden_size": 1536, "intermediate_size": 512,
        "num_hidden_layers": 32, "num_attention_heads": 24, "num_key_value_heads": 8,
        "num_local_experts": 40, "num_experts_per_tok": 8, "tie_word_embeddings": True,
        "rope_theta": 10000000.0, "max_position_embeddings": 131072, "hidden_act": "silu",
        "torch_dtype": "bfloat16",
    }),
    # ------------------------------------------------------------------------------------ Qwen3 MoE
    # Qwen3-30B-A3B: 128 experts (moe_intermediate_size 768), 8 per token, in every layer.
    # https://huggingface.co/Qwen/Qwen3-30B-A3B/blob/main/config.json
    RegistryEntry("qwen3-30b-a3b", "Qwen/Qwen3-30B-A3B", "Qwen3 MoE", config={
        "model_type": "qwen3_moe", "vocab_size": 151936, "hidden_size": 2048, "intermediate_size": 6144,
        "moe_intermediate_size": 768, "num_hidden_layers": 48, "num_attention_heads": 32,
        "num_key_value_heads": 4, "head_dim": 128, "num_experts": 128, "num_experts_per_tok": 8,
        "decoder_sparse_step": 1, "mlp_only_layers": [], "norm_topk_prob": True,
        "attention_bias": False, "tie_word_embeddings": False, "rms_norm_eps": 1e-06,
        "rope_theta": 1000000.0, "rope_scaling": None, "max_position_embeddings": 40960,
        "sliding_window": None, "use_sliding_window": False, "max_window_layers": 48,
        "hidden_act": "silu", "torch_dtype": "bfloat16",
    }),
)
# fmt: on

#: name -> entry, in registry order.
REGISTRY: dict[str, RegistryEntry] = {e.name: e for e in ENTRIES}


def _lookup_table() -> dict[str, RegistryEntry]:
    """Every accepted spelling (name, alias, hub id), lower-cased, -> entry."""
    table: dict[str, RegistryEntry] = {}
    for e in ENTRIES:
        for key in (e.name, *e.aliases, e.hf_id):
            k = key.lower()
            if k in table and table[k] is not e:
                raise RuntimeError(f"registry: {key!r} names both {table[k].name} and {e.name}")
            table[k] = e
    return table


LOOKUP: dict[str, RegistryEntry] = _lookup_table()


def find_entry(name: str) -> RegistryEntry | None:
    """The entry ``name`` refers to (registry name, alias or hub id; case-insensitive), or None."""
    return LOOKUP.get(name.strip().lower())
