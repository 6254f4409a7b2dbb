"""The GPU database: what each card has, what it can run, and what it keeps for itself.

How a card's memory is spent before training allocates anything (all ``int`` bytes)::

    memory_bytes (nvidia-smi "Total"; the marketed size in GiB unless noted per card)
    ┌──────────────┬───────────────┬──────────────┬─────────────────────────────────────────┐
    │ driver       │ display       │ CUDA context │ what PyTorch's allocator (and paged     │
    │ reservation  │ (desktop,     │ (this        │ optimizer state) can use                │
    │ (invisible   │ other         │ process,     │                                         │
    │ to CUDA)     │ processes)    │ non-torch)   │                                         │
    └──────────────┴───────────────┴──────────────┴─────────────────────────────────────────┘
    usable_bytes = memory - driver reservation - display reserve      (Card.usable_bytes)
    a run fits  <=>  required_vram_bytes (allocator + context + paged) <= usable_bytes

- **Driver reservation**: the driver keeps part of the memory for itself; nvidia-smi -q lists it as
  "Reserved" and ``torch.cuda.get_device_properties().total_memory`` (PyTorch's "total capacity" in
  out-of-memory messages) is the total minus it. Measured with driver 580.159.04: H100 80GB HBM3 480 MiB
  (total_memory 81080 MiB of 81559 MiB), H200 616 MiB. Other values below are read off public out-of-memory
  messages ("GPU 0; 11.75 GiB total capacity" on a 12 GiB RTX 3060: 256 MiB, +-5 MiB from the rounding);
  cards without a report get :func:`assumed_driver_reserve_bytes`. It grows with newer drivers.
- **CUDA context**: see :func:`assumed_cuda_context_bytes`; an assumption per card until measured
  (``scripts/measure_cuda_context.py``), except where ``context_measured`` says otherwise.
- **Display reserve**: what the desktop and other programs hold on the card. An assumption, overridable
  with ``--display-reserve``: 0 for datacenter cards (headless) and laptops (hybrid graphics drive the
  desktop from the integrated GPU), :data:`DESKTOP_DISPLAY_RESERVE_BYTES` for desktop and workstation cards.

Compute capabilities are NVIDIA's (https://developer.nvidia.com/cuda-gpus); what follows from them:
bf16 and FlashAttention-2 need 8.0+ (Ampere), bitsandbytes nf4/fp4 needs 6.0+ (Pascal) and LLM.int8
needs 7.5+ (Turing: its int8 matmul uses the int8 tensor cores). SM counts are NVIDIA's spec sheets.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from functools import cache

from vramfit.catalog import ATTNS, DTYPES, QUANTS
from vramfit.catalog.card import meets
from vramfit.errors import InputError, close_matches, did_you_mean
from vramfit.units import GiB, MiB, format_bytes, parse_size

FORMS = ("desktop", "laptop", "workstation", "datacenter")

# Maximum resident threads per SM, per compute capability: CUDA C++ Programming Guide, "Technical
# Specifications per Compute Capability".
MAX_THREADS_PER_SM = {
    (6, 0): 2048, (6, 1): 2048, (7, 0): 2048, (7, 5): 1024, (8, 0): 2048, (8, 6): 1536, (8, 9): 1536,
    (9, 0): 2048, (10, 0): 2048, (12, 0): 1536,
}  # fmt: skip

# NOTE: CUDA reserves local memory (the per-thread stack, cudaLimitStackSize, 1 KiB by default) for every
# thread that can be resident at once: SMs x max threads per SM x 1 KiB. Measured on an H100 (132 SMs x
# 2048 threads): the process's memory moved by exactly 132 x 2048 bytes per byte of stack limit
# (322 MiB at 256 B, 520 MiB at 1 KiB, 1312 MiB at 4 KiB), so this part scales with the card.
STACK_BYTES_PER_THREAD = 1024

# NOTE: the rest of the context: driver state + the kernels PyTorch, cuBLAS and bitsandbytes load lazily
# (CUDA_MODULE_LOADING=LAZY, the default since CUDA 12.2). An assumption: a public out-of-memory message
# of an A100 40GB with CUDA 12 (github.com/TianheWu/CoSeR/issues/10: 14.25 GiB in use, 12.87 GiB
# allocated, 0.89 GiB cached) leaves 0.49 GiB outside PyTorch, 216 MiB of it stack: about 290 MiB.
# Measured on an H100 and an H200 with CUDA 13.0 / torch 2.11 / bitsandbytes 0.50.2: 494 MiB (758 MiB -
# 264 MiB stack); newer CUDA may need more than this.
CONTEXT_BASE_BYTES = 300 * MiB

# NOTE: a desktop session (Xorg / Wayland compositor / Windows DWM, a browser) typically holds 150-500 MiB
# on the card that drives the display, as nvidia-smi's process list shows. An assumption; headless
# machines should pass --display-reserve 0.
DESKTOP_DISPLAY_RESERVE_BYTES = 300 * MiB

# NOTE: driver reservation for cards without a report: a line through the reported points of the
# table below (195 MiB at 4 GiB, 225 MiB at 8-10 GiB, 256 MiB at 12 GiB, 307-357 MiB at 24 GiB,
# 512 MiB at 40 GiB), within about 100 MiB of each.
DRIVER_RESERVE_BASE_BYTES = 170 * MiB
DRIVER_RESERVE_FRACTION = 0.0075

# A bare --vram assumes a recent consumer card: Ampere, compute capability 8.6, as large as the biggest
# GA102 cards (84 SMs): 300 MiB + 84 x 1536 x 1 KiB = 426 MiB.
ASSUMED_CC = (8, 6)
ASSUMED_SMS = 84


def assumed_cuda_context_bytes(compute_capability: tuple[int, int], sms: int) -> int:
    """CUDA context of a training process on this card: driver + lazily loaded kernels + stack reservation."""
    threads = MAX_THREADS_PER_SM.get(compute_capability, 2048)
    return CONTEXT_BASE_BYTES + sms * threads * STACK_BYTES_PER_THREAD


def assumed_driver_reserve_bytes(memory_bytes: int) -> int:
    """The driver's own reservation (nvidia-smi "Reserved") for a card without a report."""
    return DRIVER_RESERVE_BASE_BYTES + round(memory_bytes * DRIVER_RESERVE_FRACTION / MiB) * MiB


DEFAULT_CUDA_CONTEXT_BYTES = assumed_cuda_context_bytes(ASSUMED_CC, ASSUMED_SMS)


def architecture_of(cc: tuple[int, int]) -> str:
    major, minor = cc
    if major == 6:
        return "Pascal"
    if major == 7:
        return "Volta" if minor == 0 else "Turing"
    if major == 8:
        return "Ada" if minor == 9 else "Ampere"
    if major == 9:
        return "Hopper"
    if major in (10, 12):
        return "Blackwell"
    return f"cc {major}.{minor}"


def capabilities(cc: tuple[int, int]) -> dict[str, bool]:
    """What a card of compute capability ``cc`` can run, for display and JSON: read from the catalog's
    rows (the rule estimate, plan and probe apply is ``catalog.card``, which reads the same rows)."""
    return {
        "supports_bf16": meets(DTYPES["bf16"].compute_min_cc, cc),  # computing in bf16
        "supports_4bit": meets(QUANTS["nf4"].min_cc, cc),
        "supports_int8": meets(QUANTS["int8"].min_cc, cc),
        "supports_flash_attention_2": meets(ATTNS["flash_attention_2"].min_cc, cc),
    }


@dataclass(frozen=True)
class GpuSpec:
    """One card of the database."""

    name: str  # key, kebab-case: "rtx-3060"
    display_name: str  # what nvidia-smi / torch.cuda.get_device_name() print
    marketed_gb: int  # the size on the box
    memory_bytes: int  # nvidia-smi "Total": marketed_gb GiB unless ``memory_note`` says otherwise
    compute_capability: tuple[int, int]
    form: str  # desktop, laptop, workstation, datacenter
    sms: int  # streaming multiprocessors (the CUDA context's stack reservation scales with them)
    aliases: tuple[str, ...] = ()
    cuda_context_bytes: int = 0
    display_reserve_bytes: int = 0
    driver_reserve_bytes: int = 0
    context_measured: str = ""  # where the context was measured; "" = assumed
    driver_reserve_source: str = ""  # where the driver reservation comes from; "" = assumed
    memory_note: str = ""  # why memory_bytes differs from marketed_gb, with its source

    @property
    def supports_bf16(self) -> bool:  # computing in bf16
        return capabilities(self.compute_capability)["supports_bf16"]

    @property
    def supports_4bit(self) -> bool:  # bitsandbytes nf4 / fp4
        return capabilities(self.compute_capability)["supports_4bit"]

    @property
    def supports_int8(self) -> bool:  # bitsandbytes LLM.int8
        return capabilities(self.compute_capability)["supports_int8"]

    @property
    def supports_flash_attention_2(self) -> bool:
        return capabilities(self.compute_capability)["supports_flash_attention_2"]

    @property
    def architecture(self) -> str:
        return architecture_of(self.compute_capability)

    @property
    def usable_bytes(self) -> int:
        return self.memory_bytes - self.driver_reserve_bytes - self.display_reserve_bytes

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "display_name": self.display_name,
            "marketed_gb": self.marketed_gb,
            "memory_bytes": self.memory_bytes,
            "memory_note": self.memory_note,
            "compute_capability": list(self.compute_capability),
            "architecture": self.architecture,
            "form": self.form,
            "sms": self.sms,
            "aliases": list(self.aliases),
            "supports_bf16": self.supports_bf16,
            "supports_4bit": self.supports_4bit,
            "supports_int8": self.supports_int8,
            "supports_flash_attention_2": self.supports_flash_attention_2,
            "cuda_context_bytes": self.cuda_context_bytes,
            "cuda_context_measured": self.context_measured or None,
            "driver_reserve_bytes": self.driver_reserve_bytes,
            "driver_reserve_source": self.driver_reserve_source or None,
            "display_reserve_bytes": self.display_reserve_bytes,
            "usable_bytes": self.usable_bytes,
        }


def _gpu(
    name: str,
    display: str,
    gb: int,
    cc: tuple[int, int],
    form: str,
    sms: int,
    *aliases: str,
    mib: int | None = None,
    note: str = "",
    reserve_mib: int | None = None,
    reserve_source: str = "",
    context_bytes: int | None = None,
    context_source: str = "",
) -> GpuSpec:
    memory = mib * MiB if mib is not None else gb * GiB
    return GpuSpec(
        name=name,
        display_name=display,
        marketed_gb=gb,
        memory_bytes=memory,
        compute_capability=cc,
        form=form,
        sms=sms,
        aliases=aliases,
        cuda_context_bytes=context_bytes
        if context_bytes is not None
        else assumed_cuda_context_bytes(cc, sms),
        display_reserve_bytes=DESKTOP_DISPLAY_RESERVE_BYTES if form in ("desktop", "workstation") else 0,
        driver_reserve_bytes=reserve_mib * MiB
        if reserve_mib is not None
        else assumed_driver_reserve_bytes(memory),
        context_measured=context_source,
        driver_reserve_source=reserve_source,
        memory_note=note,
    )


# Measured with scripts/measure_cuda_context.py (reports/cuda_context/*.json): non-PyTorch memory of the
# process after two QLoRA steps of the reference recipe on a tiny Llama (NVML per-process used - PyTorch
# reserved), driver 580.159.04, CUDA 13.0, torch 2.11.0, bitsandbytes 0.50.2, transformers 5.17.0, peft
# 0.21.0. The H100 80GB HBM3 and the H200 (the same GH100 chip, 132 SMs) gave the same bytes.
HOPPER_CONTEXT_BYTES = 794_820_608
_MEASURED = "measured: reports/cuda_context/{}.json (driver 580.159.04, CUDA 13.0, torch 2.11.0)"

# Sources of the driver reservations (PyTorch's "total capacity" on Linux vs the card's total):
_OOM = "PyTorch out-of-memory message: "
_SRC_1650 = _OOM + "3.81 GiB total capacity, github.com/ultralytics/yolov5/issues/285"
_SRC_1660TI = _OOM + "5.81 GiB total capacity, github.com/zhou13/lcnn/issues/23"
_SRC_2060 = _OOM + "5.79 GiB total capacity, github.com/facebookresearch/meshrcnn/issues/92"
_SRC_3060 = _OOM + "11.75 GiB total capacity, github.com/Kunhao-Liu/StyleGaussian/issues/12"
_SRC_3070 = _OOM + "7.78 GiB total capacity, github.com/akshitac8/OW-DETR/issues/46"
_SRC_3080 = _OOM + "9.78 GiB total capacity, github.com/zai-org/CogVideo/issues/34"
_SRC_3090 = _OOM + "23.70 GiB total capacity, github.com/clovaai/deep-text-recognition-benchmark/issues/386"
_SRC_4090 = _OOM + "23.64 GiB total capacity, github.com/ali-vilab/VGen/issues/104"
_SRC_A4000 = _OOM + "15.61 GiB total capacity, github.com/DengKaiCQ/VGGT-Long/issues/6"
_SRC_T4 = _OOM + "14.74-14.75 GiB total capacity (Colab), github.com/yifanlu0227/MIT-6.5940/issues/1"
_SRC_A100_40 = _OOM + "39.50 GiB total capacity, github.com/TianheWu/CoSeR/issues/10"
_SRC_A100_80 = "torch total 81050 MiB of nvidia-smi 81920 MiB, github.com/meta-pytorch/torchrec/pull/3580"
_SRC_H100 = "nvidia-smi Reserved 480 MiB, " + _MEASURED.format("h100-80gb")
_SRC_H200 = "nvidia-smi Reserved 616 MiB, " + _MEASURED.format("h200")
# nvidia-smi totals of datacenter cards with ECC on: github.com/modal-labs/modal-client/pull/2797
_SMI = "nvidia-smi total (ECC on), github.com/modal-labs/modal-client/pull/2797"

P, V, T, A80, A86, ADA, H, BW = (6, 1), (7, 0), (7, 5), (8, 0), (8, 6), (8, 9), (9, 0), (12, 0)
D, L, W, DC = "desktop", "laptop", "workstation", "datacenter"

# fmt: off
GPUS: tuple[GpuSpec, ...] = (
    # Pascal (cc 6.x): no tensor cores; 4-bit bitsandbytes runs, LLM.int8 does not.
    _gpu("gtx-1060-6gb", "NVIDIA GeForce GTX 1060 6GB", 6, P, D, 10),
    _gpu("gtx-1070", "NVIDIA GeForce GTX 1070", 8, P, D, 15),
    _gpu("gtx-1080", "NVIDIA GeForce GTX 1080", 8, P, D, 20),
    _gpu("gtx-1080-ti", "NVIDIA GeForce GTX 1080 Ti", 11, P, D, 28),
    _gpu("p100", "Tesla P100-PCIE-16GB", 16, (6, 0), DC, 56, "p100-16gb"),
    # Volta (cc 7.0): tensor cores, no bf16, no LLM.int8.
    _gpu("v100-16gb", "Tesla V100-SXM2-16GB", 16, V, DC, 80, "Tesla V100-PCIE-16GB", mib=16160,
         note="nvidia-smi total 16160 MiB (ECC on), github.com/4paradigm/k8s-vgpu-scheduler/issues/7"),
    _gpu("v100-32gb", "Tesla V100-SXM2-32GB", 32, V, DC, 80, "Tesla V100-PCIE-32GB"),
    # Turing (cc 7.5): fp16 tensor cores, no bf16; LLM.int8 runs.
    _gpu("gtx-1650", "NVIDIA GeForce GTX 1650", 4, T, D, 14, reserve_mib=195, reserve_source=_SRC_1650),
    _gpu("gtx-1650-laptop", "NVIDIA GeForce GTX 1650 Laptop GPU", 4, T, L, 16, "gtx-1650-mobile"),
    _gpu("gtx-1650-super", "NVIDIA GeForce GTX 1650 SUPER", 4, T, D, 20),
    _gpu("gtx-1660", "NVIDIA GeForce GTX 1660", 6, T, D, 22),
    _gpu("gtx-1660-super", "NVIDIA GeForce GTX 1660 SUPER", 6, T, D, 22),
    _gpu("gtx-1660-ti", "NVIDIA GeForce GTX 1660 Ti", 6, T, D, 24, reserve_mib=195, reserve_source=_SRC_1660TI),
    _gpu("rtx-2060", "NVIDIA GeForce RTX 2060", 6, T, D, 30, "rtx-2060-6gb",
         reserve_mib=215, reserve_source=_SRC_2060),
    _gpu("rtx-2060-12gb", "NVIDIA GeForce RTX 2060", 12, T, D, 34),
    _gpu("rtx-2060-super", "NVIDIA GeForce RTX 2060 SUPER", 8, T, D, 34),
    _gpu("rtx-2060-laptop", "NVIDIA GeForce RTX 2060 Laptop GPU", 6, T, L, 30, "rtx-2060-mobile"),
    _gpu("rtx-2070", "NVIDIA GeForce RTX 2070", 8, T, D, 36),
    _gpu("rtx-2070-super", "NVIDIA GeForce RTX 2070 SUPER", 8, T, D, 40),
    _gpu("rtx-2080", "NVIDIA GeForce RTX 2080", 8, T, D, 46),
    _gpu("rtx-2080-super", "NVIDIA GeForce RTX 2080 SUPER", 8, T, D, 48),
    _gpu("rtx-2080-ti", "NVIDIA GeForce RTX 2080 Ti", 11, T, D, 68),
    _gpu("titan-rtx", "NVIDIA TITAN RTX", 24, T, D, 72),
    _gpu("quadro-rtx-4000", "Quadro RTX 4000", 8, T, W, 36),
    _gpu("quadro-rtx-5000", "Quadro RTX 5000", 16, T, W, 48),
    _gpu("t4", "Tesla T4", 16, T, DC, 40, "nvidia-t4", mib=15360, note=_SMI,
         reserve_mib=261, reserve_source=_SRC_T4),
    # Ampere (cc 8.0 / 8.6): bf16.
    _gpu("rtx-3050", "NVIDIA GeForce RTX 3050", 8, A86, D, 20, "rtx-3050-8gb"),
    _gpu("rtx-3050-6gb", "NVIDIA GeForce RTX 3050", 6, A86, D, 18),
    _gpu("rtx-3050-laptop", "NVIDIA GeForce RTX 3050 Laptop GPU", 4, A86, L, 16, "rtx-3050-laptop-4gb",
         "rtx-3050-mobile"),
    _gpu("rtx-3050-laptop-6gb", "NVIDIA GeForce RTX 3050 6GB Laptop GPU", 6, A86, L, 16),
    _gpu("rtx-3050-ti-laptop", "NVIDIA GeForce RTX 3050 Ti Laptop GPU", 4, A86, L, 20, "rtx-3050-ti-mobile"),
    _gpu("rtx-3060", "NVIDIA GeForce RTX 3060", 12, A86, D, 28, "rtx-3060-12gb",
         reserve_mib=256, reserve_source=_SRC_3060),
    _gpu("rtx-3060-8gb", "NVIDIA GeForce RTX 3060", 8, A86, D, 28),
    _gpu("rtx-3060-laptop", "NVIDIA GeForce RTX 3060 Laptop GPU", 6, A86, L, 30, "rtx-3060-mobile"),
    _gpu("rtx-3060-ti", "NVIDIA GeForce RTX 3060 Ti", 8, A86, D, 38),
    _gpu("rtx-3070", "NVIDIA GeForce RTX 3070", 8, A86, D, 46, reserve_mib=225, reserve_source=_SRC_3070),
    _gpu("rtx-3070-laptop", "NVIDIA GeForce RTX 3070 Laptop GPU", 8, A86, L, 40, "rtx-3070-mobile"),
    _gpu("rtx-3070-ti", "NVIDIA GeForce RTX 3070 Ti", 8, A86, D, 48),
    _gpu("rtx-3070-ti-laptop", "NVIDIA GeForce RTX 3070 Ti Laptop GPU", 8, A86, L, 46),
    _gpu("rtx-3080", "NVIDIA GeForce RTX 3080", 10, A86, D, 68, "rtx-3080-10gb",
         reserve_mib=225, reserve_source=_SRC_3080),
    _gpu("rtx-3080-12gb", "NVIDIA GeForce RTX 3080", 12, A86, D, 70),
    _gpu("rtx-3080-laptop-8gb", "NVIDIA GeForce RTX 3080 Laptop GPU", 8, A86, L, 48),
    _gpu("rtx-3080-laptop-16gb", "NVIDIA GeForce RTX 3080 Laptop GPU", 16, A86, L, 48),
    _gpu("rtx-3080-ti", "NVIDIA GeForce RTX 3080 Ti", 12, A86, D, 80),
    _gpu("rtx-3080-ti-laptop", "NVIDIA GeForce RTX 3080 Ti Laptop GPU", 16, A86, L, 58),
    _gpu("rtx-3090", "NVIDIA GeForce RTX 3090", 24, A86, D, 82, reserve_mib=307, reserve_source=_SRC_3090),
    _gpu("rtx-3090-ti", "NVIDIA GeForce RTX 3090 Ti", 24, A86, D, 84),
    _gpu("rtx-a2000", "NVIDIA RTX A2000", 6, A86, W, 26, "rtx-a2000-6gb"),
    _gpu("rtx-a2000-12gb", "NVIDIA RTX A2000 12GB", 12, A86, W, 26),
    _gpu("rtx-a4000", "NVIDIA RTX A4000", 16, A86, W, 48, reserve_mib=399, reserve_source=_SRC_A4000),
    _gpu("rtx-a4500", "NVIDIA RTX A4500", 20, A86, W, 56),
    _gpu("rtx-a5000", "NVIDIA RTX A5000", 24, A86, W, 64),
    _gpu("rtx-a6000", "NVIDIA RTX A6000", 48, A86, W, 84),
    _gpu("a10", "NVIDIA A10", 24, A86, DC, 72, mib=23028,
         note="nvidia-smi / NVML total 24146608128 B (ECC on), github.com/mayooot/detect-gpu/issues/3"),
    _gpu("a10g", "NVIDIA A10G", 24, A86, DC, 80, mib=23028,
         note="nvidia-smi total 23028 MiB (ECC on), github.com/NVIDIA/DCGM/issues/232"),
    _gpu("a40", "NVIDIA A40", 48, A86, DC, 84),
    _gpu("a100-40gb", "NVIDIA A100-SXM4-40GB", 40, A80, DC, 108, "NVIDIA A100-PCIE-40GB", mib=40960,
         note=_SMI, reserve_mib=512, reserve_source=_SRC_A100_40),
    _gpu("a100-80gb", "NVIDIA A100-SXM4-80GB", 80, A80, DC, 108, "NVIDIA A100 80GB PCIe", mib=81920,
         note=_SMI, reserve_mib=870, reserve_source=_SRC_A100_80),
    # Ada Lovelace (cc 8.9).
    _gpu("rtx-4050-laptop", "NVIDIA GeForce RTX 4050 Laptop GPU", 6, ADA, L, 20, "rtx-4050-mobile"),
    _gpu("rtx-4060", "NVIDIA GeForce RTX 4060", 8, ADA, D, 24),
    _gpu("rtx-4060-laptop", "NVIDIA GeForce RTX 4060 Laptop GPU", 8, ADA, L, 24, "rtx-4060-mobile"),
    _gpu("rtx-4060-ti-8gb", "NVIDIA GeForce RTX 4060 Ti", 8, ADA, D, 34),
    _gpu("rtx-4060-ti-16gb", "NVIDIA GeForce RTX 4060 Ti", 16, ADA, D, 34),
    _gpu("rtx-4070", "NVIDIA GeForce RTX 4070", 12, ADA, D, 46),
    _gpu("rtx-4070-laptop", "NVIDIA GeForce RTX 4070 Laptop GPU", 8, ADA, L, 36, "rtx-4070-mobile"),
    _gpu("rtx-4070-super", "NVIDIA GeForce RTX 4070 SUPER", 12, ADA, D, 56),
    _gpu("rtx-4070-ti", "NVIDIA GeForce RTX 4070 Ti", 12, ADA, D, 60),
    _gpu("rtx-4070-ti-super", "NVIDIA GeForce RTX 4070 Ti SUPER", 16, ADA, D, 66),
    _gpu("rtx-4080", "NVIDIA GeForce RTX 4080", 16, ADA, D, 76),
    _gpu("rtx-4080-laptop", "NVIDIA GeForce RTX 4080 Laptop GPU", 12, ADA, L, 58, "rtx-4080-mobile"),
    _gpu("rtx-4080-super", "NVIDIA GeForce RTX 4080 SUPER", 16, ADA, D, 80),
    _gpu("rtx-4090", "NVIDIA GeForce RTX 4090", 24, ADA, D, 128, mib=24564,
         note="nvidia-smi total 24564 MiB, github.com/RLinf/RLinf/issues/255",
         reserve_mib=357, reserve_source=_SRC_4090),
    _gpu("rtx-4090-laptop", "NVIDIA GeForce RTX 4090 Laptop GPU", 16, ADA, L, 76, "rtx-4090-mobile"),
    _gpu("rtx-4000-ada", "NVIDIA RTX 4000 Ada Generation", 20, ADA, W, 48),
    _gpu("rtx-6000-ada", "NVIDIA RTX 6000 Ada Generation", 48, ADA, W, 142),
    _gpu("l4", "NVIDIA L4", 24, ADA, DC, 58, mib=23034, note=_SMI),
    _gpu("l40s", "NVIDIA L40S", 48, ADA, DC, 142, mib=46068, note=_SMI),
    # Hopper (cc 9.0).
    _gpu("h100-80gb", "NVIDIA H100 80GB HBM3", 80, H, DC, 132, "h100", "h100-sxm", mib=81559,
         note="nvidia-smi total 81559 MiB (measured; also github.com/modal-labs/modal-client/pull/2797)",
         reserve_mib=480, reserve_source=_SRC_H100,
         context_bytes=HOPPER_CONTEXT_BYTES, context_source=_MEASURED.format("h100-80gb")),
    _gpu("h200", "NVIDIA H200", 141, H, DC, 132, "h200-141gb", mib=143771,
         note="nvidia-smi total 143771 MiB (measured)", reserve_mib=616, reserve_source=_SRC_H200,
         context_bytes=HOPPER_CONTEXT_BYTES, context_source=_MEASURED.format("h200")),
    # Blackwell consumer cards (cc 12.0).
    _gpu("rtx-5060", "NVIDIA GeForce RTX 5060", 8, BW, D, 30),
    _gpu("rtx-5060-ti-8gb", "NVIDIA GeForce RTX 5060 Ti", 8, BW, D, 36),
    _gpu("rtx-5060-ti-16gb", "NVIDIA GeForce RTX 5060 Ti", 16, BW, D, 36),
    _gpu("rtx-5070", "NVIDIA GeForce RTX 5070", 12, BW, D, 48),
    _gpu("rtx-5070-ti", "NVIDIA GeForce RTX 5070 Ti", 16, BW, D, 70),
    _gpu("rtx-5080", "NVIDIA GeForce RTX 5080", 16, BW, D, 84),
    _gpu("rtx-5090", "NVIDIA GeForce RTX 5090", 32, BW, D, 170),
)
# fmt: on

# Cards sold in several memory sizes under one name. Where one variant is the default (the launch model,
# by far the most common), it carries the bare name and a lookup of the bare name picks it with a note;
# otherwise the bare name is ambiguous and the lookup lists the variants.
DEFAULT_VARIANTS = {
    "rtx-2060": "the 6 GB launch model (a 12 GB model came in 2021: rtx-2060-12gb)",
    "rtx-3050": "the 8 GB model (a 6 GB model came in 2024: rtx-3050-6gb)",
    "rtx-3050-laptop": "the 4 GB model (a 6 GB model came in 2023: rtx-3050-laptop-6gb)",
    "rtx-3060": "the 12 GB launch model (an 8 GB model came in 2022: rtx-3060-8gb)",
    "rtx-3080": "the 10 GB launch model (a 12 GB model came in 2022: rtx-3080-12gb)",
    "rtx-a2000": "the 6 GB model (also sold with 12 GB: rtx-a2000-12gb)",
    "p100": "the 16 GB model (as on Kaggle; a 12 GB PCIe model exists)",
}

_BY_NAME = {g.name: g for g in GPUS}
_DROP_WORDS = re.compile(r"\b(nvidia|geforce|tesla|generation)\b")
_SIZE_SUFFIX = re.compile(r"-\d+gb$")


def _norm(text: str) -> str:
    """'NVIDIA GeForce RTX 3060 Laptop GPU' -> 'rtx3060laptop'; 'RTX-3060' -> 'rtx3060'."""
    t = text.lower().replace("mobile", "laptop")
    t = re.sub(r"[^a-z0-9]+", "", _DROP_WORDS.sub(" ", t))
    return t[:-3] if t.endswith("gpu") and len(t) > 3 else t


def _short(key: str) -> str:
    """Without the product-line prefix: 'rtx3060' -> '3060', 'rtxa4000' -> 'a4000'."""
    for prefix in ("quadro", "rtx", "gtx"):
        if key.startswith(prefix) and len(key) > len(prefix):
            return key[len(prefix) :]
    return key


def _keys(g: GpuSpec) -> set[str]:
    full = {_norm(g.name), _norm(g.display_name), *(_norm(a) for a in g.aliases)}
    return full | {_short(k) for k in full}


def _family_keys(g: GpuSpec) -> set[str]:
    """The keys of the name without its memory-size suffix ('a100-40gb' -> 'a100'), for sized variants."""
    family = _SIZE_SUFFIX.sub("", g.name)
    return {_norm(family), _short(_norm(family))} if family != g.name else set()


@cache
def _index() -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """Lookup keys and family keys of every card (built on first use: imports stay fast)."""
    return {g.name: _keys(g) for g in GPUS}, {g.name: _family_keys(g) for g in GPUS}


def _variant_note(text: str, g: GpuSpec) -> str:
    """Says which variant a name sold with several memory sizes was taken to mean."""
    why = DEFAULT_VARIANTS.get(g.name, f"the only variant of {text!r} in the database")
    return f"{g.name} is {why}" if text == g.name else f"--gpu {text} means {g.name}: {why}"


def _lookup(text: str) -> tuple[GpuSpec, str | None]:
    """The card named by ``text`` and, when a variant was picked for the user, a note saying which."""
    q = _norm(text)
    if not q:
        raise InputError("--gpu", "empty card name; `vramfit gpus` lists the accepted names")
    keys, families = _index()
    # Keys are unique but for display names shared by memory variants ("NVIDIA GeForce RTX 3060" is
    # printed by the 12 GB and the 8 GB card): those match every variant.
    matches = [g for g in GPUS if q in keys[g.name]]
    if len(matches) == 1:
        g = matches[0]
        bare = q in {_norm(g.name), _short(_norm(g.name))}
        return g, _variant_note(text, g) if bare and g.name in DEFAULT_VARIANTS else None
    if not matches:  # 'a100' names no card, but is the family of a100-40gb and a100-80gb
        matches = [g for g in GPUS if q in families[g.name]]
        if len(matches) == 1:
            return matches[0], _variant_note(text, matches[0])
    defaults = [g for g in matches if g.name in DEFAULT_VARIANTS]
    if len(defaults) == 1:
        return defaults[0], _variant_note(text, defaults[0])
    if matches:
        names = ", ".join(f"{g.name} ({g.marketed_gb} GB)" for g in matches)
        raise InputError("--gpu", f"{text!r} is sold with several memory sizes; name one: {names}")
    all_keys = {k: name for name, ks in keys.items() for k in ks}
    names = list(dict.fromkeys(all_keys[k] for k in close_matches(q, all_keys, n=8, cutoff=0.6)))[:4]
    raise InputError(
        "--gpu", f"unknown card {text!r}{did_you_mean(names)}; `vramfit gpus` lists the accepted names"
    )


def find_gpu(name: str) -> GpuSpec:
    """The card called ``name``: its key, an alias, or a loose form ("RTX 3060", "rtx3060", "3060",
    "NVIDIA GeForce RTX 3060"), case-insensitive. A name sold in several memory sizes picks the default
    variant where :data:`DEFAULT_VARIANTS` documents one, else raises InputError listing the variants."""
    return _lookup(name)[0]


def match_device(device_name: str, total_memory_bytes: int | None = None) -> GpuSpec | None:
    """The database card of a device as PyTorch / nvidia-smi name it, or None when it is not in the
    database. ``total_memory_bytes`` (``torch.cuda.get_device_properties().total_memory`` or nvidia-smi's
    total) picks among memory variants that print the same name: the variant closest in size."""
    q = _norm(device_name)
    keys = _index()[0]
    matches = [g for g in GPUS if q in keys[g.name]]
    if len(matches) > 1 and total_memory_bytes is not None:
        return min(matches, key=lambda g: abs(g.memory_bytes - total_memory_bytes))
    if len(matches) > 1:
        defaults = [g for g in matches if g.name in DEFAULT_VARIANTS]
        return defaults[0] if len(defaults) == 1 else None
    return matches[0] if matches else None


def list_gpus(min_bytes: int | None = None, max_bytes: int | None = None) -> list[GpuSpec]:
    """The database sorted by memory, filtered by the size on the box: min <= marketed_gb GiB <= max (an
    "80 GB" H100 has 79.6 GiB in nvidia-smi's total, but is what asking for 80 GB cards means)."""
    rows = [
        g
        for g in GPUS
        if (min_bytes is None or g.marketed_gb * GiB >= min_bytes)
        and (max_bytes is None or g.marketed_gb * GiB <= max_bytes)
    ]
    return sorted(rows, key=lambda g: (g.memory_bytes, g.compute_capability, g.name))


@dataclass(frozen=True)
class Card:
    """What the estimator needs to know about the card a run is for (see the module docstring's picture).

    ``assumed`` lists, in words, every value that was assumed rather than known or given; the estimator
    shows them as warnings. ``name`` is None for a card given by ``--vram`` alone.
    """

    name: str | None
    capacity_bytes: int  # the card's memory (nvidia-smi total, or --vram)
    display_reserve_bytes: int  # held by the desktop / other processes
    cuda_context_bytes: int  # this process's CUDA context (non-PyTorch)
    supports_bf16: bool
    supports_4bit: bool
    supports_int8: bool
    compute_capability: tuple[int, int] | None
    assumed: tuple[str, ...] = ()
    driver_reserve_bytes: int = 0  # kept by the driver, invisible to CUDA (nvidia-smi -q "Reserved")
    architecture: str | None = None
    supports_flash_attention_2: bool = False

    @property
    def usable_bytes(self) -> int:
        """What this process can use: capacity - driver reservation - display reserve."""
        return self.capacity_bytes - self.driver_reserve_bytes - self.display_reserve_bytes

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "capacity_bytes": self.capacity_bytes,
            "driver_reserve_bytes": self.driver_reserve_bytes,
            "display_reserve_bytes": self.display_reserve_bytes,
            "usable_bytes": self.usable_bytes,
            "cuda_context_bytes": self.cuda_context_bytes,
            "compute_capability": list(self.compute_capability) if self.compute_capability else None,
            "architecture": self.architecture,
            "supports_bf16": self.supports_bf16,
            "supports_4bit": self.supports_4bit,
            "supports_int8": self.supports_int8,
            "supports_flash_attention_2": self.supports_flash_attention_2,
            "assumed": list(self.assumed),
        }


# Sizes vramfit accepts for --vram: anything smaller or larger is a typo ("4MB", "4000GB").
MIN_VRAM_BYTES = 512 * MiB
MAX_VRAM_BYTES = 1024 * GiB

_ZERO = re.compile(r"^\s*0*(?:\.0*)?\s*([a-zA-Z]*)\s*$")


def _size_or_zero(value: str | int | float, flag: str) -> int:
    """parse_size, but 0 is accepted (e.g. --display-reserve 0 for a headless card)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value == 0:
        return 0
    m = _ZERO.match(str(value)) if isinstance(value, str) else None
    if m and re.search(r"\d", str(value)):
        parse_size("1" + m.group(1), flag)  # the unit must still be one vramfit knows
        return 0
    return parse_size(value, flag)


def _named_card(gpu: str, capacity: int | None, cuda_context, display_reserve, assumed: list[str]) -> Card:
    """The database's card ``gpu`` (its memory replaced by ``capacity`` when given); appends what was
    assumed to ``assumed``."""
    spec, note = _lookup(gpu)
    if note:
        assumed.append(note)
    if capacity is not None and capacity != spec.memory_bytes:
        assumed.append(
            f"--vram {format_bytes(capacity)} replaces {spec.name}'s {format_bytes(spec.memory_bytes)}; "
            "driver reservation assumed for that size"
        )
        driver = assumed_driver_reserve_bytes(capacity)
    else:
        capacity = spec.memory_bytes
        driver = spec.driver_reserve_bytes
        if not spec.driver_reserve_source:
            assumed.append(f"driver reservation of {spec.name} assumed {format_bytes(driver)}")
    context = spec.cuda_context_bytes
    if cuda_context is None and not spec.context_measured:
        assumed.append(
            f"CUDA context of {spec.name} assumed {format_bytes(context)} ({spec.architecture}, "
            f"{spec.sms} SMs; not measured on this card)"
        )
    display = spec.display_reserve_bytes
    if display_reserve is None and display:
        assumed.append(
            f"{format_bytes(display)} assumed held by the desktop on this {spec.form} card "
            "(--display-reserve 0 if it runs headless)"
        )
    card = Card(
        name=spec.name,
        capacity_bytes=capacity,
        display_reserve_bytes=display,
        cuda_context_bytes=context,
        compute_capability=spec.compute_capability,
        driver_reserve_bytes=driver,
        architecture=spec.architecture,
        **capabilities(spec.compute_capability),
    )
    return card


def _assumed_card(capacity: int, cuda_context, display_reserve, assumed: list[str]) -> Card:
    """A card of ``capacity`` given by --vram alone: assumed recent; appends what was assumed."""
    driver = assumed_driver_reserve_bytes(capacity)
    assumed.append(
        "--vram alone: assumed a recent card (Ampere or newer, compute capability 8.6: bf16, nf4/fp4, "
        "int8); give --gpu for an older one"
    )
    if cuda_context is None:
        assumed.append(f"CUDA context assumed {format_bytes(DEFAULT_CUDA_CONTEXT_BYTES)} (unknown card)")
    assumed.append(f"driver reservation assumed {format_bytes(driver)}")
    if display_reserve is None:
        assumed.append("nothing else assumed on the card (--display-reserve SIZE if a desktop runs on it)")
    card = Card(
        name=None,
        capacity_bytes=capacity,
        display_reserve_bytes=0,
        cuda_context_bytes=DEFAULT_CUDA_CONTEXT_BYTES,
        compute_capability=ASSUMED_CC,
        driver_reserve_bytes=driver,
        architecture=architecture_of(ASSUMED_CC),
        **capabilities(ASSUMED_CC),
    )
    return card


def resolve_card(
    gpu: str | None = None,
    vram: str | int | None = None,
    cuda_context: str | int | None = None,
    display_reserve: str | int | None = None,
) -> Card | None:
    """The card of ``--gpu`` / ``--vram`` (None when neither is given).

    - ``gpu`` alone: the database's card.
    - ``vram`` alone: a card of that size assumed recent (Ampere, compute capability 8.6: bf16, nf4/fp4,
      int8), with :data:`DEFAULT_CUDA_CONTEXT_BYTES` of context, the driver reservation of
      :func:`assumed_driver_reserve_bytes` and no display reserve; every assumption is listed in ``assumed``.
    - both: the named card with its memory replaced by ``vram`` (a modified card, or a variant the
      database lacks); its capabilities and context stay the named card's.
    - ``cuda_context`` / ``display_reserve`` replace the assumed values (``display_reserve`` may be 0).

    Sizes are read by :func:`vramfit.units.parse_size` (binary units; a bare number is GiB). Errors name
    the flag: ``--gpu``, ``--vram``, ``--cuda-context``, ``--display-reserve``.
    """
    if gpu is None and vram is None:
        for flag, value in (("--cuda-context", cuda_context), ("--display-reserve", display_reserve)):
            if value is not None:
                raise InputError(flag, "needs a card: give --gpu NAME or --vram SIZE too")
        return None
    assumed: list[str] = []
    capacity = _vram_bytes(vram) if vram is not None else None
    if gpu is not None:
        card = _named_card(gpu, capacity, cuda_context, display_reserve, assumed)
    else:
        assert capacity is not None
        card = _assumed_card(capacity, cuda_context, display_reserve, assumed)

    changes: dict = {"assumed": tuple(assumed)}
    if cuda_context is not None:
        changes["cuda_context_bytes"] = parse_size(cuda_context, "--cuda-context")
    if display_reserve is not None:
        changes["display_reserve_bytes"] = _size_or_zero(display_reserve, "--display-reserve")
    card = replace(card, **changes)
    if card.usable_bytes - card.cuda_context_bytes <= 0:
        given = [
            f for f, v in (("--display-reserve", display_reserve), ("--cuda-context", cuda_context)) if v
        ]
        raise InputError(
            given[0] if given else ("--vram" if vram is not None else "--gpu"), _nothing_left(card)
        )
    return card


def _vram_bytes(vram: str | int) -> int:
    """``--vram`` in bytes, within what a GPU's memory can be."""
    capacity = parse_size(vram, "--vram")
    if not MIN_VRAM_BYTES <= capacity <= MAX_VRAM_BYTES:
        raise InputError(
            "--vram",
            f"{format_bytes(capacity)} is not a GPU's memory size; expected between "
            f"{format_bytes(MIN_VRAM_BYTES)} and {format_bytes(MAX_VRAM_BYTES, 'GiB', 0)}, e.g. 4GB, 12GB",
        )
    return capacity


def _nothing_left(card: Card) -> str:
    return (
        f"nothing left for training: {format_bytes(card.capacity_bytes)} card, "
        f"{format_bytes(card.driver_reserve_bytes)} driver reservation, "
        f"{format_bytes(card.display_reserve_bytes)} display reserve, "
        f"{format_bytes(card.cuda_context_bytes)} CUDA context"
    )
