"""The GPU database's host link and compute rate: how fast offloaded memory moves, and how fast a step runs.

``PCIE[name] = (generation, lanes)`` of each card in :data:`vramfit.gpus.GPUS`, from NVIDIA's product
spec pages (sources below, per family). One lane carries 0.985 GB/s at PCIe 3.0 (8 GT/s, 128b/130b),
1.969 at 4.0 and 3.938 at 5.0 (PCI-SIG), per direction. Laptop GPUs are wired by the laptop maker; their
entries give the chip's maximum (NVIDIA's laptop spec pages) and are marked assumed.

``DENSE_FLOP_PER_CLOCK_PER_SM``: 16-bit tensor-core math with fp32 accumulation, dense, as NVIDIA's
architecture whitepapers give it (GeForce cards run fp32 accumulation at half the workstation rate):
e.g. RTX 4090 165 TFLOPS = 128 SMs x 2.52 GHz x 512; H100 SXM 989 TFLOPS = 132 x 1.83 GHz x 4096.
Pascal has no tensor cores: its fp32 FMA rate (128 per SM per clock).
"""

from __future__ import annotations

# Sources (NVIDIA product spec pages, "Bus Support" / "PCI Express" rows):
SOURCES = {
    "geforce-10": "nvidia.com/en-us/geforce/10-series/ (PCIe 3.0 x16)",
    "geforce-16-20": "nvidia.com/en-us/geforce/graphics-cards/compare/?section=compare-20 (PCIe 3.0 x16)",
    "geforce-30": "nvidia.com/en-us/geforce/graphics-cards/30-series/ (PCIe 4.0 x16; RTX 3050 x8)",
    "geforce-40": "nvidia.com/en-us/geforce/graphics-cards/40-series/ (PCIe 4.0; RTX 4060 / 4060 Ti x8)",
    "geforce-50": "nvidia.com/en-us/geforce/graphics-cards/50-series/ (PCIe 5.0; RTX 5060 / 5060 Ti x8)",
    "laptop": "nvidia.com/en-us/geforce/laptops/ (chip maximum; the laptop maker decides the wiring)",
    "workstation": "nvidia.com/en-us/design-visualization/ product data sheets",
    "datacenter": "nvidia.com/en-us/data-center/ product data sheets (PCIe form factors; SXM hosts link "
    "at the same generation)",
}

_G3, _G4, _G5 = 3, 4, 5
PCIE: dict[str, tuple[int, int, str]] = {}


def _put(names: str, gen: int, lanes: int, source: str) -> None:
    for n in names.split():
        PCIE[n] = (gen, lanes, source)


_put("gtx-1060-6gb gtx-1070 gtx-1080 gtx-1080-ti", _G3, 16, "geforce-10")
_put("gtx-1650 gtx-1650-super gtx-1660 gtx-1660-super gtx-1660-ti rtx-2060 rtx-2060-12gb rtx-2060-super "
     "rtx-2070 rtx-2070-super rtx-2080 rtx-2080-super rtx-2080-ti titan-rtx", _G3, 16, "geforce-16-20")  # fmt: skip
_put("gtx-1650-laptop rtx-2060-laptop", _G3, 16, "laptop")
_put("rtx-3050 rtx-3050-6gb", _G4, 8, "geforce-30")
_put("rtx-3060 rtx-3060-8gb rtx-3060-ti rtx-3070 rtx-3070-ti rtx-3080 rtx-3080-12gb rtx-3080-ti rtx-3090 "
     "rtx-3090-ti", _G4, 16, "geforce-30")  # fmt: skip
_put("rtx-3050-laptop rtx-3050-laptop-6gb rtx-3050-ti-laptop rtx-4050-laptop rtx-4060-laptop "
     "rtx-4070-laptop", _G4, 8, "laptop")  # fmt: skip
_put("rtx-3060-laptop rtx-3070-laptop rtx-3070-ti-laptop rtx-3080-laptop-8gb rtx-3080-laptop-16gb "
     "rtx-3080-ti-laptop rtx-4080-laptop rtx-4090-laptop", _G4, 16, "laptop")  # fmt: skip
_put("rtx-4060 rtx-4060-ti-8gb rtx-4060-ti-16gb", _G4, 8, "geforce-40")
_put(
    "rtx-4070 rtx-4070-super rtx-4070-ti rtx-4070-ti-super rtx-4080 rtx-4080-super rtx-4090",
    _G4,
    16,
    "geforce-40",
)
_put("rtx-5060 rtx-5060-ti-8gb rtx-5060-ti-16gb", _G5, 8, "geforce-50")
_put("rtx-5070 rtx-5070-ti rtx-5080 rtx-5090", _G5, 16, "geforce-50")
_put("quadro-rtx-4000 quadro-rtx-5000", _G3, 16, "workstation")
_put(
    "rtx-a2000 rtx-a2000-12gb rtx-a4000 rtx-a4500 rtx-a5000 rtx-a6000 rtx-4000-ada rtx-6000-ada",
    _G4,
    16,
    "workstation",
)
_put("p100 v100-16gb v100-32gb t4", _G3, 16, "datacenter")
_put("a10 a10g a40 a100-40gb a100-80gb l4 l40s", _G4, 16, "datacenter")
_put("h100-80gb h200", _G5, 16, "datacenter")

GBPS_PER_LANE = {3: 0.985e9, 4: 1.969e9, 5: 3.938e9}  # bytes/s per lane and direction (PCI-SIG)
# NOTE: pinned host-to-device copies reach about 80 % of the link's rate (CUDA bandwidthTest on PCIe 4.0 x16
# cards shows ~25 of 31.5 GB/s); an assumption until the probe's step times are compared.
LINK_EFFICIENCY = 0.8
# NOTE: assumed until measured: a bare --vram card links like an RTX 30-series (PCIe 4.0 x16).
DEFAULT_LINK = (4, 16, "assumed (no card named)")

DENSE_FLOP_PER_CLOCK_PER_SM = {  # (architecture, consumer?) -> 16-bit tensor FLOP, fp32 accumulation
    ("Pascal", True): 256, ("Pascal", False): 256, ("Volta", False): 1024, ("Turing", True): 512,
    ("Turing", False): 1024, ("Ampere", True): 512, ("Ampere", False): 1024, ("Ada", True): 512,
    ("Ada", False): 1024, ("Hopper", False): 4096, ("Blackwell", True): 512,
}  # fmt: skip
ASSUMED_CLOCK_HZ = 1.5e9  # NOTE: a typical sustained boost clock; cards differ by +-30 %
ASSUMED_MFU = 0.35  # NOTE: the fraction of peak a LoRA fine-tuning step reaches; an assumption


def link_of(name: str | None) -> tuple[int, int, str]:
    """(PCIe generation, lanes, source) of the card called ``name`` (a database key)."""
    if name is None or name not in PCIE:
        return DEFAULT_LINK
    gen, lanes, src = PCIE[name]
    return gen, lanes, SOURCES[src] + (" (assumed: laptop wiring varies)" if src == "laptop" else "")


def link_bytes_per_second(name: str | None) -> float:
    gen, lanes, _ = link_of(name)
    return GBPS_PER_LANE[gen] * lanes * LINK_EFFICIENCY


def compute_flops(name: str | None) -> float:
    """Sustained 16-bit FLOP/s a training step reaches on the card (assumed clock and MFU)."""
    from vramfit.gpus import ASSUMED_CC, ASSUMED_SMS, GPUS, architecture_of

    spec = next((g for g in GPUS if g.name == name), None)
    if spec is None:
        arch, consumer, sms = architecture_of(ASSUMED_CC), True, ASSUMED_SMS
    else:
        arch, consumer, sms = spec.architecture, spec.form in ("desktop", "laptop"), spec.sms
    per_sm = DENSE_FLOP_PER_CLOCK_PER_SM.get(
        (arch, consumer), DENSE_FLOP_PER_CLOCK_PER_SM.get((arch, False), 512)
    )
    return sms * per_sm * ASSUMED_CLOCK_HZ * ASSUMED_MFU
