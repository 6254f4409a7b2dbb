"""The GPU database, card lookup and resolution, and ``vramfit gpus``."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from vramfit.cli.main import main
from vramfit.errors import InputError
from vramfit.gpus import (
    DEFAULT_CUDA_CONTEXT_BYTES,
    DEFAULT_VARIANTS,
    FORMS,
    GPUS,
    HOPPER_CONTEXT_BYTES,
    MAX_THREADS_PER_SM,
    Card,
    assumed_cuda_context_bytes,
    assumed_driver_reserve_bytes,
    find_gpu,
    list_gpus,
    match_device,
    resolve_card,
)
from vramfit.units import GiB, MiB

REPO = Path(__file__).resolve().parents[1]


# ---- lookups ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    ["rtx-3060", "RTX 3060", "rtx3060", "3060", "NVIDIA GeForce RTX 3060", "  Rtx_3060 ", "rtx-3060-12gb"],
)
def test_loose_forms_find_the_12gb_rtx_3060(text):
    g = find_gpu(text)
    assert g.name == "rtx-3060"
    assert g.memory_bytes == 12 * GiB


@pytest.mark.parametrize(
    "text, name",
    [
        ("rtx-3060-8gb", "rtx-3060-8gb"),
        ("3060 laptop", "rtx-3060-laptop"),
        ("NVIDIA GeForce RTX 3060 Laptop GPU", "rtx-3060-laptop"),
        ("rtx 3060 mobile", "rtx-3060-laptop"),
        ("Tesla T4", "t4"),
        ("T4", "t4"),
        ("h100", "h100-80gb"),
        ("NVIDIA H100 80GB HBM3", "h100-80gb"),
        ("NVIDIA A100-SXM4-40GB", "a100-40gb"),
        ("NVIDIA A100 80GB PCIe", "a100-80gb"),
        ("a10", "a10"),
        ("A10G", "a10g"),
        ("gtx1650", "gtx-1650"),
        ("GTX 1650 Laptop GPU", "gtx-1650-laptop"),
        ("a4000", "rtx-a4000"),
        ("RTX 4000 Ada Generation", "rtx-4000-ada"),
        ("4070 ti super", "rtx-4070-ti-super"),
        ("5090", "rtx-5090"),
    ],
)
def test_find_gpu_names_and_aliases(text, name):
    assert find_gpu(text).name == name


def test_every_name_and_alias_finds_its_own_card():
    for g in GPUS:
        assert find_gpu(g.name) is g
        for alias in g.aliases:
            assert find_gpu(alias) is g, alias


def test_display_names_find_the_card_its_default_variant_or_list_the_variants():
    # nvidia-smi prints the same name for memory variants (RTX 3060 12 GB and 8 GB): such a name picks
    # the documented default variant or asks which one is meant.
    for g in GPUS:
        try:
            found = find_gpu(g.display_name)
        except InputError as e:
            assert g.name in str(e) and "several memory sizes" in str(e)
            continue
        assert found is g or found.name in DEFAULT_VARIANTS, (g.display_name, found.name)


@pytest.mark.parametrize(
    "text, names",
    [
        ("a100", ["a100-40gb", "a100-80gb"]),
        ("rtx 4060 ti", ["rtx-4060-ti-8gb", "rtx-4060-ti-16gb"]),
        ("NVIDIA GeForce RTX 4060 Ti", ["rtx-4060-ti-8gb", "rtx-4060-ti-16gb"]),
        ("v100", ["v100-16gb", "v100-32gb"]),
        ("rtx 3080 laptop", ["rtx-3080-laptop-8gb", "rtx-3080-laptop-16gb"]),
        ("5060 ti", ["rtx-5060-ti-8gb", "rtx-5060-ti-16gb"]),
    ],
)
def test_ambiguous_names_list_the_variants(text, names):
    with pytest.raises(InputError, match="several memory sizes") as e:
        find_gpu(text)
    assert e.value.flag == "--gpu"
    for name in names:
        assert name in str(e.value)


def test_default_variant_is_picked_with_a_note():
    card = resolve_card(gpu="3060")
    assert card.name == "rtx-3060"
    assert any("--gpu 3060 means rtx-3060" in a and "rtx-3060-8gb" in a for a in card.assumed)
    assert not any("means" in a or "launch model" in a for a in resolve_card(gpu="rtx-3060-8gb").assumed)


def test_unknown_card_suggests_close_names():
    with pytest.raises(InputError, match=r"--gpu: unknown card 'rtx 3090x' \(did you mean: rtx-3090"):
        find_gpu("rtx 3090x")
    with pytest.raises(InputError, match="unknown card 'radeon 7900'; `vramfit gpus` lists"):
        find_gpu("radeon 7900")
    with pytest.raises(InputError, match="empty card name"):
        find_gpu("  ")


def test_match_device_uses_memory_to_pick_a_variant():
    assert match_device("NVIDIA GeForce RTX 4060 Ti", 16 * GiB).name == "rtx-4060-ti-16gb"
    assert match_device("NVIDIA GeForce RTX 4060 Ti", 8 * GiB - 300 * MiB).name == "rtx-4060-ti-8gb"
    assert match_device("NVIDIA GeForce RTX 4060 Ti") is None  # no default variant: unknown
    assert match_device("NVIDIA GeForce RTX 3060").name == "rtx-3060"
    assert match_device("NVIDIA H200", 150109880320).name == "h200"
    assert match_device("Some Other GPU") is None


# ---- capabilities ----------------------------------------------------------------------------------


def test_capability_rules():
    gtx1650 = find_gpu("gtx-1650")
    assert gtx1650.compute_capability == (7, 5) and gtx1650.architecture == "Turing"
    assert not gtx1650.supports_bf16 and gtx1650.supports_int8 and gtx1650.supports_4bit
    p = find_gpu("gtx-1080-ti")
    assert p.compute_capability == (6, 1) and p.architecture == "Pascal"
    assert p.supports_4bit and not p.supports_int8 and not p.supports_bf16
    t4 = find_gpu("t4")
    assert not t4.supports_bf16 and not t4.supports_flash_attention_2 and t4.supports_int8
    a100 = find_gpu("a100-80gb")
    assert a100.supports_bf16 and a100.supports_flash_attention_2 and a100.architecture == "Ampere"
    v100 = find_gpu("v100-16gb")
    assert v100.architecture == "Volta" and not v100.supports_bf16 and not v100.supports_int8
    assert find_gpu("rtx-4090").architecture == "Ada"
    assert find_gpu("h100").architecture == "Hopper"
    assert (
        find_gpu("rtx-5090").compute_capability == (12, 0)
        and find_gpu("rtx-5090").architecture == "Blackwell"
    )


@pytest.mark.parametrize(
    "name, gib",
    [("gtx-1650", 4), ("rtx-3060", 12), ("rtx-3060-laptop", 6), ("rtx-3080", 10), ("rtx-2080-ti", 11),
     ("gtx-1080-ti", 11), ("rtx-4060-ti-16gb", 16), ("rtx-4080-laptop", 12), ("rtx-3090", 24),
     ("rtx-a6000", 48), ("rtx-5090", 32), ("a100-80gb", 80)],
)  # fmt: skip
def test_memory_is_the_marketed_size_in_gib(name, gib):
    assert find_gpu(name).memory_bytes == gib * GiB
    assert find_gpu(name).marketed_gb == gib


@pytest.mark.parametrize(
    "name, mib", [("t4", 15360), ("l4", 23034), ("a10g", 23028), ("l40s", 46068), ("h100-80gb", 81559),
                  ("h200", 143771), ("rtx-4090", 24564), ("v100-16gb", 16160)],
)  # fmt: skip
def test_memory_exceptions_are_what_nvidia_smi_reports(name, mib):
    g = find_gpu(name)
    assert g.memory_bytes == mib * MiB
    assert g.memory_note  # every exception says where it comes from


# ---- the database's consistency --------------------------------------------------------------------


def test_names_and_aliases_are_unique_kebab_case():
    names = [g.name for g in GPUS]
    assert len(names) == len(set(names))
    for g in GPUS:
        assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", g.name), g.name
    spelled = [a.lower() for g in GPUS for a in (g.name, *g.aliases)]
    assert len(spelled) == len(set(spelled))


def test_sizes_forms_and_capabilities_are_plausible():
    for g in GPUS:
        assert 4 <= g.marketed_gb <= 141, g.name
        # nvidia-smi's total is the marketed GiB, or less (ECC, driver): never more, never 10% less
        assert 0.9 * g.marketed_gb * GiB <= g.memory_bytes <= g.marketed_gb * GiB, g.name
        assert g.form in FORMS, g.name
        assert g.compute_capability in MAX_THREADS_PER_SM, g.name
        assert 10 <= g.sms <= 200, g.name
        assert 300 * MiB <= g.cuda_context_bytes <= 800 * MiB, g.name
        assert 150 * MiB <= g.driver_reserve_bytes <= 1 * GiB, g.name
        assert g.display_reserve_bytes == (0 if g.form in ("laptop", "datacenter") else 300 * MiB), g.name
        assert g.usable_bytes == g.memory_bytes - g.driver_reserve_bytes - g.display_reserve_bytes
        assert g.supports_bf16 == g.supports_flash_attention_2 == (g.compute_capability >= (8, 0))
    assert {g.architecture for g in GPUS} == {
        "Pascal",
        "Volta",
        "Turing",
        "Ampere",
        "Ada",
        "Hopper",
        "Blackwell",
    }
    for default in DEFAULT_VARIANTS:
        assert find_gpu(default).name == default


def test_the_brief_cards_are_all_there():
    for name in ("gtx-1650", "gtx-1660", "gtx-1660-ti", "gtx-1660-super", "gtx-1080-ti", "rtx-2060",
                 "rtx-2060-12gb", "rtx-2070", "rtx-2080", "rtx-2080-ti", "rtx-3050", "rtx-3050-laptop",
                 "rtx-3050-laptop-6gb", "rtx-3060", "rtx-3060-8gb", "rtx-3060-laptop", "rtx-3060-ti", "rtx-3070",
                 "rtx-3070-laptop", "rtx-3070-ti", "rtx-3080", "rtx-3080-12gb", "rtx-3080-laptop-8gb",
                 "rtx-3080-laptop-16gb", "rtx-3080-ti", "rtx-3090", "rtx-3090-ti", "rtx-4060", "rtx-4060-laptop",
                 "rtx-4060-ti-8gb", "rtx-4060-ti-16gb", "rtx-4070", "rtx-4070-laptop", "rtx-4070-super",
                 "rtx-4070-ti", "rtx-4070-ti-super", "rtx-4080", "rtx-4080-laptop", "rtx-4080-super", "rtx-4090",
                 "rtx-4090-laptop", "rtx-5060-ti-16gb", "rtx-5070", "rtx-5080", "rtx-5090", "rtx-a2000",
                 "rtx-a4000", "rtx-a5000", "rtx-a6000", "rtx-4000-ada", "t4", "l4", "a10g", "a10", "v100-16gb",
                 "v100-32gb", "a100-40gb", "a100-80gb", "h100-80gb", "h200", "l40s"):  # fmt: skip
        assert find_gpu(name).name == name


def test_context_model_matches_the_measured_stack_scaling():
    # The H100 / H200 measurements: the context grows by SMs x threads/SM per byte of stack limit.
    for name in ("h100-80gb", "h200"):
        data = json.loads((REPO / "reports" / "cuda_context" / f"{name}.json").read_text())
        g = find_gpu(name)
        assert data["multiprocessors"] == g.sms
        assert data["max_threads_per_multiprocessor"] == MAX_THREADS_PER_SM[g.compute_capability]
        assert (
            data["stack_scaling"]["bytes_per_stack_byte"] == g.sms * MAX_THREADS_PER_SM[g.compute_capability]
        )
        step = next(s for s in data["stages"] if s["stage"] == "qlora_step")
        assert g.cuda_context_bytes == step["non_torch_bytes"] == HOPPER_CONTEXT_BYTES
        assert g.context_measured
        assert g.memory_bytes == data["smi_memory_total_mib"] * MiB
        assert g.driver_reserve_bytes == data["smi_memory_reserved_mib"] * MiB
        # PyTorch's total is nvidia-smi's total minus the driver's reservation (to the MiB)
        assert abs(g.memory_bytes - g.driver_reserve_bytes - data["torch_total_memory_bytes"]) <= MiB


def test_assumed_context_and_driver_reserve_formulas():
    # 300 MiB + SMs x threads/SM x 1 KiB: an RTX 3060 has 28 SMs of 1536 threads
    assert assumed_cuda_context_bytes((8, 6), 28) == 300 * MiB + 28 * 1536 * 1024
    assert assumed_cuda_context_bytes((7, 5), 14) == 300 * MiB + 14 * 1024 * 1024
    assert DEFAULT_CUDA_CONTEXT_BYTES == 300 * MiB + 84 * 1536 * 1024
    assert assumed_driver_reserve_bytes(4 * GiB) == 170 * MiB + 31 * MiB  # 0.75% of 4096 MiB = 30.7
    # the line stays within ~100 MiB of every reported reservation it was drawn through
    for g in GPUS:
        if g.driver_reserve_source and g.marketed_gb <= 40:
            assert abs(assumed_driver_reserve_bytes(g.memory_bytes) - g.driver_reserve_bytes) <= 110 * MiB, (
                g.name
            )


def test_list_gpus_filters_by_the_size_on_the_box():
    eighty = [g.name for g in list_gpus(80 * GiB, 80 * GiB)]
    assert eighty == ["h100-80gb", "a100-80gb"]  # sorted by nvidia-smi's total
    small = list_gpus(max_bytes=4 * GiB)
    assert small and all(g.marketed_gb == 4 for g in small)
    sizes = [g.memory_bytes for g in list_gpus()]
    assert sizes == sorted(sizes) and len(sizes) == len(GPUS)


# ---- resolve_card ------------------------------------------------------------------------------------


def test_resolve_card_nothing_given():
    assert resolve_card() is None
    with pytest.raises(InputError, match="--cuda-context: needs a card"):
        resolve_card(cuda_context="500MiB")
    with pytest.raises(InputError, match="--display-reserve: needs a card"):
        resolve_card(display_reserve="0")


def test_resolve_card_gpu_only():
    card = resolve_card(gpu="gtx-1650")
    g = find_gpu("gtx-1650")
    assert isinstance(card, Card)
    assert card.name == "gtx-1650" and card.capacity_bytes == 4 * GiB
    assert card.compute_capability == (7, 5) and not card.supports_bf16 and card.supports_int8
    assert card.cuda_context_bytes == g.cuda_context_bytes
    assert card.driver_reserve_bytes == 195 * MiB  # reported, not assumed
    assert card.display_reserve_bytes == 300 * MiB
    assert card.usable_bytes == 4 * GiB - 195 * MiB - 300 * MiB
    assert any("CUDA context of gtx-1650 assumed" in a for a in card.assumed)
    assert any("held by the desktop" in a for a in card.assumed)
    assert not any("driver reservation" in a for a in card.assumed)
    # a measured card assumes nothing
    assert resolve_card(gpu="h100").assumed == ()
    # laptops and datacenter cards: nothing held by a desktop
    assert resolve_card(gpu="rtx-4060-laptop").display_reserve_bytes == 0


def test_resolve_card_vram_only_assumes_a_recent_card():
    card = resolve_card(vram="4GB")
    assert card.name is None and card.capacity_bytes == 4 * GiB
    assert card.compute_capability == (8, 6)
    assert (
        card.supports_bf16 and card.supports_4bit and card.supports_int8 and card.supports_flash_attention_2
    )
    assert card.cuda_context_bytes == DEFAULT_CUDA_CONTEXT_BYTES
    assert card.display_reserve_bytes == 0
    assert card.driver_reserve_bytes == assumed_driver_reserve_bytes(4 * GiB)
    assert card.assumed[0].startswith("--vram alone: assumed a recent card (Ampere or newer")
    assert resolve_card(vram="4096MiB") == card
    assert resolve_card(vram="6g").capacity_bytes == 6 * GiB
    assert resolve_card(vram=8).capacity_bytes == 8 * GiB  # a bare number is GiB, as parse_size reads it


def test_resolve_card_gpu_and_vram_overrides_the_memory():
    card = resolve_card(gpu="rtx-3060", vram="16GB")  # e.g. a card with memory chips swapped
    assert card.name == "rtx-3060" and card.capacity_bytes == 16 * GiB
    assert (
        card.compute_capability == (8, 6)
        and card.cuda_context_bytes == find_gpu("rtx-3060").cuda_context_bytes
    )
    assert card.driver_reserve_bytes == assumed_driver_reserve_bytes(16 * GiB)
    assert any("--vram 16.00 GiB replaces rtx-3060's 12.00 GiB" in a for a in card.assumed)
    same = resolve_card(gpu="rtx-3060", vram="12GB")  # the card's own size: nothing replaced
    assert same.driver_reserve_bytes == 256 * MiB and not any("replaces" in a for a in same.assumed)


def test_resolve_card_overrides_context_and_display_reserve():
    card = resolve_card(gpu="rtx-3060", cuda_context="500MiB", display_reserve="0")
    assert card.cuda_context_bytes == 500 * MiB and card.display_reserve_bytes == 0
    assert not any("CUDA context" in a or "desktop" in a for a in card.assumed)
    assert resolve_card(gpu="t4", display_reserve="0 MiB").display_reserve_bytes == 0
    assert resolve_card(gpu="t4", display_reserve=0).display_reserve_bytes == 0
    assert resolve_card(vram="8GB", display_reserve="512MiB").usable_bytes == (
        8 * GiB - assumed_driver_reserve_bytes(8 * GiB) - 512 * MiB
    )


@pytest.mark.parametrize(
    "kwargs, pattern",
    [
        ({"vram": "4x"}, r"--vram: unknown unit 'x'"),
        ({"vram": "lots"}, r"--vram: cannot read 'lots' as a size"),
        ({"vram": "4MB"}, r"--vram: 4.0 MiB is not a GPU's memory size"),
        ({"vram": "4000GB"}, r"--vram: '4000GB' is too large; accepted: .* up to 1024 GiB"),
        ({"vram": "0"}, r"--vram: size must be positive"),
        ({"gpu": "t4", "cuda_context": "big"}, r"--cuda-context: cannot read 'big'"),
        ({"gpu": "t4", "cuda_context": "0"}, r"--cuda-context: size must be positive"),
        ({"gpu": "t4", "display_reserve": "-1GB"}, r"--display-reserve: cannot read '-1GB'"),
        ({"gpu": "t4", "display_reserve": "0 parsecs"}, r"--display-reserve: unknown unit 'parsecs'"),
        ({"gpu": "t4", "display_reserve": "15GB"}, r"--display-reserve: nothing left for training"),
        ({"vram": "1GB", "cuda_context": "1GB"}, r"--cuda-context: nothing left for training"),
        ({"gpu": "nope-9000"}, r"--gpu: unknown card 'nope-9000'"),
    ],
)
def test_resolve_card_bad_input_names_the_flag(kwargs, pattern):
    with pytest.raises(InputError, match=pattern):
        resolve_card(**kwargs)


def test_card_to_json():
    d = resolve_card(gpu="t4").to_json()
    assert d["name"] == "t4" and d["capacity_bytes"] == 15360 * MiB
    assert d["usable_bytes"] == d["capacity_bytes"] - d["driver_reserve_bytes"] - d["display_reserve_bytes"]
    assert d["compute_capability"] == [7, 5] and d["supports_bf16"] is False
    assert isinstance(d["assumed"], list)
    json.dumps(d)


def test_estimate_uses_the_card():
    from vramfit.estimate import estimate

    with pytest.raises(InputError, match="--compute-dtype: bf16 needs compute capability 8.0"):
        estimate("smollm2-135m", card=resolve_card(gpu="t4"))
    est = estimate("smollm2-135m", card=resolve_card(gpu="rtx-3060"))
    assert est.verdict.usable_bytes == resolve_card(gpu="rtx-3060").usable_bytes
    assert est.non_torch.cuda_context == find_gpu("rtx-3060").cuda_context_bytes
    assert any("CUDA context of rtx-3060 assumed" in w for w in est.warnings)


# ---- CLI -------------------------------------------------------------------------------------------


def test_cli_json(capsys):
    assert main(["gpus", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == len(GPUS)
    t4 = next(r for r in rows if r["name"] == "t4")
    assert t4["memory_bytes"] == 15360 * MiB and t4["compute_capability"] == [7, 5]
    assert t4["supports_bf16"] is False and t4["supports_int8"] is True
    assert t4["cuda_context_measured"] is None
    assert next(r for r in rows if r["name"] == "h100-80gb")["cuda_context_measured"].startswith("measured")


def test_cli_filters(capsys):
    assert main(["gpus", "--json", "--min-vram", "8GB", "--max-vram", "12GB"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows and {r["marketed_gb"] for r in rows} <= {8, 10, 11, 12}
    assert {"rtx-3060", "rtx-3060-8gb", "rtx-3080", "rtx-2080-ti"} <= {r["name"] for r in rows}


def test_cli_table_fits_80_columns(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    assert main(["gpus"]) == 0
    out = capsys.readouterr().out
    assert max(len(line) for line in out.splitlines()) <= 80
    for g in GPUS:
        assert re.search(rf"^{re.escape(g.name)}\s", out, re.M), g.name  # names are never cut
    assert "…" not in out
    line = next(x for x in out.splitlines() if x.startswith("gtx-1650 "))
    assert line.split()[1:4] == ["4.00", "7.5", "Turing"]


def test_cli_bad_sizes(capsys):
    assert main(["gpus", "--min-vram", "8x"]) == 2
    assert "vramfit gpus: error: --min-vram: unknown unit 'x'" in capsys.readouterr().err
    assert main(["gpus", "--min-vram", "16GB", "--max-vram", "8GB"]) == 2
    assert "--max-vram: 8.00 GiB is below --min-vram 16.00 GiB" in capsys.readouterr().err


def test_cli_no_match(capsys):
    assert main(["gpus", "--min-vram", "200GB"]) == 0
    assert "no card in the database matches" in capsys.readouterr().out


def test_help_has_an_example():
    out = subprocess.run(
        [sys.executable, "-m", "vramfit", "gpus", "--help"], capture_output=True, text=True, check=True
    ).stdout
    assert "vramfit gpus --min-vram 8GB --max-vram 12GB" in out


def test_importing_the_database_and_command_stays_light():
    code = (
        "import sys, vramfit.gpus, vramfit.cli.gpus_cmd; "
        "heavy = [m for m in ('torch', 'transformers', 'rich', 'matplotlib', 'pandas') if m in sys.modules]; "
        "print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
