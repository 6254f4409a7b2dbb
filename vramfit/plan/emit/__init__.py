"""The recommendation as the configuration of the tool that trains it: ``vramfit plan --emit TARGET``.

One module per target, each writing the key names its tool uses in its current version (the module says
which version and file it read them from):

    transformers   Python: the reference recipe around transformers' Trainer
    trl            Python: the same around trl's SFTTrainer (SFTConfig, max_length)
    axolotl        YAML for ``axolotl train``
    llamafactory   YAML for ``llamafactory-cli train``
"""

from __future__ import annotations

from typing import Literal

from vramfit.config import TrainConfig
from vramfit.errors import one_of
from vramfit.models.spec import ArchSpec

Target = Literal["transformers", "trl", "axolotl", "llamafactory"]
TARGETS: tuple[str, ...] = ("transformers", "trl", "axolotl", "llamafactory")

# What each tool runs, as TrainConfig fields: the plan holds them unless the user gave them. axolotl and
# LLaMA-Factory train with transformers' Trainer; LLaMA-Factory does not call prepare_model_for_kbit_training
# (its upcast_layernorm is off by default: llamafactory.py).
TARGET_STACK: dict[str, dict] = {
    "transformers": {"trainer": "hf"},
    "trl": {"trainer": "trl"},
    "axolotl": {"trainer": "hf"},
    "llamafactory": {"trainer": "hf", "kbit_upcast": False},
}


def stack_fields(target: str, fixed: dict) -> dict:
    """``fixed`` with the fields ``target`` implies added where the user gave none."""
    return {**TARGET_STACK[target], **fixed}


def with_env(target: str, text: str, env_line: str | None) -> str:
    """``text`` with the allocator setting the plan is for in front: set in Python before torch is imported
    (``setdefault``: a value the user set wins), a shell comment on top of YAML."""
    if not env_line:
        return text
    var, value = env_line.split("=", 1)
    if target in ("transformers", "trl"):
        return (
            f'import os\n\nos.environ.setdefault("{var}", "{value}")  # the allocator the plan is for\n'
            + text
        )
    return f"# export {env_line}  (the allocator the plan is for, in the shell that runs this)\n" + text


def emit(
    target: str, arch: ArchSpec, cfg: TrainConfig, attn: str | None = None, env_line: str | None = None
) -> str:
    """The configuration of ``cfg`` for ``target`` (raises InputError naming --emit for an unknown one),
    with ``env_line`` (the allocator's variable, :func:`with_env`) when given."""
    return with_env(target, _body(target, arch, cfg, attn), env_line)


def _body(target: str, arch: ArchSpec, cfg: TrainConfig, attn: str | None) -> str:
    attn = attn or cfg.attn or arch.default_attn
    if target == "transformers":
        from vramfit.plan.emit.hf import hf_code

        return hf_code(arch, cfg, attn)
    if target == "trl":
        from vramfit.plan.emit.trl import trl_code

        return trl_code(arch, cfg, attn)
    if target == "axolotl":
        from vramfit.plan.emit.axolotl import axolotl_yaml

        return axolotl_yaml(arch, cfg, attn)
    if target == "llamafactory":
        from vramfit.plan.emit.llamafactory import llamafactory_yaml

        return llamafactory_yaml(arch, cfg, attn)
    raise one_of("--emit", target, TARGETS)
