"""The configuration flags shared by ``estimate``, ``probe`` and ``plan`` (exact names: scripts use them).

Every flag defaults to ``None`` so that ``plan`` can tell what the user fixed from what it may search;
:func:`config_from_args` fills the recipe defaults from :class:`~vramfit.config.TrainConfig`.
"""

from __future__ import annotations

import argparse
import ast
import inspect

from vramfit.catalog import ATTNS, DTYPES, METHODS, QUANTS
from vramfit.config import TrainConfig
from vramfit.inputs import TRAIN_RANGES, number_flag
from vramfit.trainers import LOSS_NAMES, TRAINER_NAMES

# flag dest -> TrainConfig field (same names except where noted)
TRAIN_FIELDS = (
    "method", "quant", "double_quant", "load_dtype", "compute_dtype", "rank", "alpha", "dropout",
    "targets", "seq_len", "batch_size", "grad_accum", "gradient_checkpointing", "optimizer", "attn",
    "kbit_upcast", "trainer", "loss", "padding_free",
)  # fmt: skip


def _field_docs() -> dict[str, str]:
    """Attribute docstrings of TrainConfig (litgpt-style: the docstring under a field is its help)."""
    try:
        tree = ast.parse(inspect.getsource(TrainConfig))
    except (OSError, TypeError):  # no source (frozen app): help without docs
        return {}
    docs: dict[str, str] = {}
    body = tree.body[0].body  # type: ignore[attr-defined]
    for a, b in zip(body, body[1:], strict=False):
        if isinstance(a, ast.AnnAssign) and isinstance(b, ast.Expr) and isinstance(b.value, ast.Constant):
            docs[a.target.id] = " ".join(str(b.value.value).split())  # type: ignore[union-attr]
    return docs


def _targets(text: str) -> tuple[str, ...]:
    names = tuple(t.strip() for t in text.split(",") if t.strip())
    if not names:
        raise argparse.ArgumentTypeError(
            "expected a comma-separated list of module names, e.g. q_proj,v_proj or all-linear"
        )
    return names


def add_model_flag(p: argparse.ArgumentParser, required: bool = True) -> None:
    p.add_argument(
        "--model",
        required=required,
        help="registry name (vramfit models), a local config.json or model folder, or a Hugging Face hub id",
    )


def add_train_flags(p: argparse.ArgumentParser) -> None:
    """Register every configuration flag on ``p`` (defaults None: see module docstring)."""
    d = _field_docs()
    dflt = TrainConfig()
    g = p.add_argument_group("training configuration (defaults: the reference QLoRA recipe)")

    def h(name: str, extra: str = "") -> str:
        default = getattr(dflt, name)
        if isinstance(default, tuple):
            default = ",".join(default)
        shown = "" if default is None else f" [default: {default}]"
        return f"{d.get(name, '')}{extra}{shown}"

    g.add_argument("--method", choices=tuple(METHODS), help=h("method"))
    g.add_argument("--quant", choices=tuple(QUANTS), help=h("quant"))
    g.add_argument(
        "--double-quant", dest="double_quant", action=argparse.BooleanOptionalAction, help=h("double_quant")
    )
    g.add_argument("--load-dtype", choices=tuple(DTYPES), help=h("load_dtype"))
    g.add_argument("--compute-dtype", choices=tuple(DTYPES), help=h("compute_dtype"))
    g.add_argument("--rank", type=number_flag(TRAIN_RANGES["rank"]), help=h("rank"))
    g.add_argument("--alpha", type=number_flag(TRAIN_RANGES["alpha"]), help=h("alpha"))
    g.add_argument("--dropout", type=number_flag(TRAIN_RANGES["dropout"]), help=h("dropout"))
    g.add_argument("--targets", type=_targets, help=h("targets"))
    g.add_argument("--seq-len", type=number_flag(TRAIN_RANGES["seq_len"]), help=h("seq_len"))
    g.add_argument("--batch-size", type=number_flag(TRAIN_RANGES["batch_size"]), help=h("batch_size"))
    g.add_argument("--grad-accum", type=number_flag(TRAIN_RANGES["grad_accum"]), help=h("grad_accum"))
    g.add_argument(
        "--gradient-checkpointing", dest="gradient_checkpointing", action=argparse.BooleanOptionalAction,
        help=h("gradient_checkpointing"),
    )  # fmt: skip
    from vramfit.catalog import OPTIMIZERS  # a table, no heavy import

    g.add_argument("--optimizer", metavar="NAME", help=h("optimizer", f" One of: {', '.join(OPTIMIZERS)}."))
    g.add_argument("--attn", choices=tuple(ATTNS), help=h("attn"))
    g.add_argument(
        "--kbit-upcast", dest="kbit_upcast", action=argparse.BooleanOptionalAction, help=h("kbit_upcast")
    )
    g.add_argument("--trainer", choices=TRAINER_NAMES, help=h("trainer"))
    g.add_argument("--loss", choices=LOSS_NAMES, help=h("loss"))
    g.add_argument(
        "--padding-free", dest="padding_free", action=argparse.BooleanOptionalAction, help=h("padding_free")
    )


def add_card_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("the card")
    g.add_argument(
        "--vram", help="card memory, e.g. 4GB, 6g, 4096MiB (binary units: GB = GiB); assumes a recent card"
    )
    g.add_argument(
        "--gpu",
        help="card name from `vramfit gpus`, e.g. rtx-3060; sets memory, bf16 support and context size",
    )
    g.add_argument("--cuda-context", help="override the assumed CUDA context size, e.g. 500MiB")
    g.add_argument(
        "--display-reserve", help="memory other programs (the desktop) hold on the card, e.g. 300MiB"
    )


def add_verbose_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "-v", "--verbose", action="store_true",
        help="print the estimator's notes about itself in full (its fitted constants and measured error)",
    )  # fmt: skip


def explicit_fields(args: argparse.Namespace) -> set[str]:
    """The TrainConfig fields the user gave on the command line."""
    return {f for f in TRAIN_FIELDS if getattr(args, f, None) is not None}


def config_from_args(args: argparse.Namespace, base: TrainConfig | None = None) -> TrainConfig:
    """A TrainConfig from parsed flags; flags not given keep ``base`` (the recipe defaults)."""
    base = base or TrainConfig()
    return base.with_(**{f: getattr(args, f) for f in explicit_fields(args)})
