"""Measure the GPU memory a training process holds *outside* PyTorch's allocator (the CUDA context).

vramfit's GPU database (``vramfit/gpus.py``) assumes a CUDA context size per architecture; this script
measures it on the card you run it on, in stages, so the number can replace the assumption:

    stage                what is loaded by then
    init                 CUDA context (driver state, lazy module loading) + torch's first kernel
    cublas               + cuBLAS / cuBLASLt handles (bf16 and fp32 GEMM)
    kernels              + the elementwise / softmax / norm / SDPA / cross-entropy kernels a step uses
    bitsandbytes         + bitsandbytes NF4 matmul (forward + backward) and an 8-bit Adam step
    qlora_step           + two steps of the reference recipe (tiny random Llama, 4-bit, LoRA, HF Trainer,
                           paged_adamw_8bit) -- optional, needs transformers + peft + accelerate

At each stage: ``non_torch = process_used - torch.cuda.memory_reserved()``, where ``process_used`` is what
NVML reports for this process (``nvmlDeviceGetComputeRunningProcesses``) or, where NVML cannot see the
process (some containers), device-wide used memory minus what was used before the process started.

Also recorded: nvidia-smi's total and "Reserved" (the driver's own share, invisible to CUDA), PyTorch's
total_memory, and how the context grows with the per-thread stack limit (needs cuda-python).

Usage:  python scripts/measure_cuda_context.py --out cuda_context.json [--skip-bnb] [--skip-trainer]
Prints one JSON object (also written to --out) with the card, the versions and every stage in bytes.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile


def _smi(query: str) -> str:
    out = subprocess.run(
        ["nvidia-smi", f"--query-gpu={query}", "--format=csv,noheader,nounits", "-i", "0"],
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip().splitlines()[0]


def _smi_used_mib() -> int:
    return int(_smi("memory.used"))


def _nvml_process_used() -> int | None:
    try:
        import pynvml

        pynvml.nvmlInit()
        handle = pynvml.nvmlDeviceGetHandleByIndex(0)
        for p in pynvml.nvmlDeviceGetComputeRunningProcesses(handle):
            if p.pid == os.getpid() and p.usedGpuMemory is not None:
                return int(p.usedGpuMemory)
    except Exception:  # NVML missing, or the process is not visible from here
        return None
    return None


def _stack_scaling(torch, process_used) -> dict | None:
    """How the context grows with the per-thread stack limit (cudaLimitStackSize): CUDA reserves local
    memory for every thread that can be resident, so bytes per stack byte = SMs x max threads per SM.
    Measured last (it changes the context) and only where cuda-python and NVML are available."""
    try:
        from cuda.bindings import runtime as rt
    except ImportError:
        return None
    limit = rt.cudaLimit.cudaLimitStackSize
    default = rt.cudaDeviceGetLimit(limit)[1]
    points = {}
    for size in (default, 4 * default):
        rt.cudaDeviceSetLimit(limit, size)
        torch.cuda.synchronize()
        used = process_used()
        if used is None:
            return None
        points[size] = used
    rt.cudaDeviceSetLimit(limit, default)
    (s0, u0), (s1, u1) = points.items()
    return {"default_stack_bytes": s0, "used_bytes": {str(k): v for k, v in points.items()},
            "bytes_per_stack_byte": (u1 - u0) / (s1 - s0)}  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="cuda_context.json")
    ap.add_argument("--skip-bnb", action="store_true")
    ap.add_argument("--skip-trainer", action="store_true")
    args = ap.parse_args()

    baseline_used_mib = _smi_used_mib()  # before this process creates a context
    import torch

    stages: list[dict] = []

    def record(name: str) -> None:
        torch.cuda.synchronize()
        free, total = torch.cuda.mem_get_info()
        reserved = torch.cuda.memory_reserved()
        nvml = _nvml_process_used()
        device_delta = (total - free) - baseline_used_mib * 2**20
        process_used = nvml if nvml is not None else device_delta
        stages.append(
            {
                "stage": name,
                "process_used_bytes": process_used,
                "process_used_source": "nvml" if nvml is not None else "device_used_minus_baseline",
                "device_used_minus_baseline_bytes": device_delta,
                "torch_reserved_bytes": reserved,
                "torch_allocated_bytes": torch.cuda.memory_allocated(),
                "non_torch_bytes": process_used - reserved,
            }
        )

    torch.empty(1, device="cuda")
    record("init")

    for dtype in (torch.bfloat16, torch.float32):
        a = torch.randn(1024, 1024, device="cuda", dtype=dtype, requires_grad=True)
        (a @ a).sum().backward()
    del a
    record("cublas")

    x = torch.randn(2, 8, 256, 64, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    y = torch.nn.functional.scaled_dot_product_attention(x, x, x, is_causal=True)
    h = torch.nn.functional.silu(y) * y
    h = torch.nn.functional.rms_norm(h, (64,)) if hasattr(torch.nn.functional, "rms_norm") else h
    logits = h.float().reshape(-1, 64).softmax(-1)
    loss = torch.nn.functional.cross_entropy(
        logits, torch.zeros(logits.shape[0], dtype=torch.long, device="cuda")
    )
    loss.backward()
    del x, y, h, logits, loss
    record("kernels")

    versions = {"torch": torch.__version__, "cuda": torch.version.cuda, "python": platform.python_version()}
    if not args.skip_bnb:
        import bitsandbytes as bnb

        versions["bitsandbytes"] = bnb.__version__
        lin = bnb.nn.Linear4bit(1024, 1024, bias=False, compute_dtype=torch.bfloat16, quant_type="nf4")
        lin = lin.cuda()
        inp = torch.randn(4, 1024, device="cuda", dtype=torch.bfloat16, requires_grad=True)
        lin(inp).sum().backward()
        p = torch.nn.Parameter(torch.randn(256, 256, device="cuda"))  # 65536 < 1e5 elements: not paged
        opt = bnb.optim.AdamW8bit([p])
        p.grad = torch.randn_like(p)
        opt.step()
        del lin, inp, p, opt
        record("bitsandbytes")

    if not args.skip_bnb and not args.skip_trainer:
        import peft
        import transformers
        from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
        from transformers import (
            AutoModelForCausalLM,
            BitsAndBytesConfig,
            LlamaConfig,
            Trainer,
            TrainingArguments,
        )

        versions["transformers"] = transformers.__version__
        versions["peft"] = peft.__version__
        tmp = tempfile.mkdtemp()
        cfg = LlamaConfig(
            hidden_size=256, intermediate_size=688, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, vocab_size=1024, max_position_embeddings=512,
        )  # fmt: skip
        AutoModelForCausalLM.from_config(cfg).save_pretrained(tmp)
        model = AutoModelForCausalLM.from_pretrained(
            tmp,
            quantization_config=BitsAndBytesConfig(
                load_in_4bit=True,
                bnb_4bit_quant_type="nf4",
                bnb_4bit_compute_dtype=torch.bfloat16,
                bnb_4bit_use_double_quant=True,
            ),  # fmt: skip
            dtype=torch.bfloat16,
            device_map={"": 0},
        )
        model.config.use_cache = False
        model = prepare_model_for_kbit_training(model)
        model = get_peft_model(
            model, LoraConfig(r=16, lora_alpha=32, target_modules=["q_proj", "v_proj"], lora_dropout=0.05,
                              bias="none", task_type="CAUSAL_LM"),
        )  # fmt: skip
        ids = torch.randint(0, 1024, (8, 128))
        data = [{"input_ids": r, "labels": r} for r in ids]
        targs = TrainingArguments(
            output_dir=tmp, per_device_train_batch_size=1, max_steps=2, bf16=True, optim="paged_adamw_8bit",
            gradient_checkpointing=True, report_to=[], save_strategy="no", logging_strategy="no",
        )  # fmt: skip
        Trainer(model=model, args=targs, train_dataset=data).train()
        record("qlora_step")

    stack = _stack_scaling(torch, _nvml_process_used)
    props = torch.cuda.get_device_properties(0)
    result = {
        "gpu": props.name,
        "compute_capability": [props.major, props.minor],
        "torch_total_memory_bytes": props.total_memory,
        "smi_memory_total_mib": int(_smi("memory.total")),
        "smi_memory_reserved_mib": int(_smi("memory.reserved")),
        "multiprocessors": props.multi_processor_count,
        "max_threads_per_multiprocessor": props.max_threads_per_multi_processor,
        "stack_scaling": stack,
        "driver": _smi("driver_version"),
        "baseline_used_mib": baseline_used_mib,
        "cuda_module_loading": os.environ.get(
            "CUDA_MODULE_LOADING", "(unset: LAZY by default since CUDA 12.2)"
        ),
        "versions": versions,
        "command": " ".join(["python", "scripts/measure_cuda_context.py", *sys.argv[1:]]).replace(
            args.out, os.path.basename(args.out)
        ),
        "stages": stages,
    }
    text = json.dumps(result, indent=2)
    with open(args.out, "w") as f:
        f.write(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
