"""What every emitter shares: the model's hub id, the LoRA targets, the model-loading lines and a small
YAML writer (scalars, lists and one level of mappings: all the emitted configurations need)."""

from __future__ import annotations

from vramfit.config import TrainConfig
from vramfit.models.spec import ArchSpec
from vramfit.plan.codegen import load_lines, lora_target_modules, model_id

__all__ = ["lora_target_modules", "model_id", "load_lines", "lora_lines", "num", "yaml_text"]


def num(x: float) -> str:
    return repr(int(x)) if float(x).is_integer() else repr(float(x))


def lora_lines(arch: ArchSpec, cfg: TrainConfig, name: str = "lora_config") -> list[str]:
    return [
        f"{name} = LoraConfig(",
        f"    r={cfg.rank!r},",
        f"    lora_alpha={num(cfg.resolved_alpha)},",
        f"    target_modules={lora_target_modules(arch, cfg)!r},",
        f"    lora_dropout={cfg.dropout!r},",
        '    bias="none",',
        '    task_type="CAUSAL_LM",',
        ")",
    ]


def _scalar(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    s = str(v)
    plain = s and all(c.isalnum() or c in "._-/" for c in s) and s.lower() not in ("true", "false", "null")
    return s if plain and not s[0].isdigit() else '"' + s.replace('"', '\\"') + '"'


def yaml_text(sections: list[tuple[str, dict]]) -> str:
    """``# section`` blocks of ``key: value`` lines; lists as ``- item``, dicts one level deep."""
    out: list[str] = []
    for title, items in sections:
        out.append(f"### {title}")
        for key, value in items.items():
            if key.startswith("#"):
                out.append(f"# {value}")
            elif isinstance(value, list):
                out.append(f"{key}:")
                for v in value:
                    if isinstance(v, dict):  # a list of mappings: "- k: v" then "  k: v"
                        pairs = [f"{k}: {_scalar(x)}" for k, x in v.items()]
                        out += [f"  - {pairs[0]}", *(f"    {p}" for p in pairs[1:])]
                    else:
                        out.append(f"  - {_scalar(v)}")
            elif isinstance(value, dict):
                out.append(f"{key}:")
                out += [f"  {k}: {_scalar(v)}" for k, v in value.items()]
            else:
                out.append(f"{key}: {_scalar(value)}")
        out.append("")
    return "\n".join(out)
