"""The catalog's tables: their closed-set Literal types, and the facts other modules derive from them."""

from __future__ import annotations

from typing import get_args

from vramfit.catalog import (
    ATTNS,
    DEFAULT_ATTN,
    DTYPES,
    METHODS,
    OPTIMIZERS,
    QUANTS,
    Attn,
    Dtype,
    Method,
    Quant,
)
from vramfit.catalog.quants import bnb_kwargs
from vramfit.config import TrainConfig


def test_literal_types_are_the_tables_keys():
    for literal, table in ((Method, METHODS), (Quant, QUANTS), (Dtype, DTYPES), (Attn, ATTNS)):
        assert get_args(literal) == tuple(table)
    assert (
        get_args(TrainConfig.__annotations__["method"]) or TrainConfig.__annotations__["method"] == "Method"
    )


def test_rows_point_at_rows():
    for m in METHODS.values():
        assert m.quants and all(q in QUANTS for q in m.quants)
    assert {q for m in METHODS.values() for q in m.quants} == set(QUANTS)  # every quantization has a method
    for table in (QUANTS, ATTNS, OPTIMIZERS):
        for row in table.values():
            assert row.dominated_by is None or row.dominated_by in table
    assert DEFAULT_ATTN in ATTNS and ATTNS[DEFAULT_ATTN].searched
    for o in OPTIMIZERS.values():
        assert o.paged <= (o.library == "bitsandbytes") and (o.bits == 8) <= (o.library == "bitsandbytes")


def test_the_recipe_is_made_of_rows():
    cfg = TrainConfig()
    assert cfg.method in METHODS and cfg.resolved_quant in QUANTS and cfg.optimizer in OPTIMIZERS
    assert bnb_kwargs("nf4", "torch.bfloat16", True) == {
        "load_in_4bit": True, "bnb_4bit_quant_type": "nf4", "bnb_4bit_compute_dtype": "torch.bfloat16",
        "bnb_4bit_use_double_quant": True,
    }  # fmt: skip
    assert bnb_kwargs("int8", "x", True) == {"load_in_8bit": True} and bnb_kwargs("none", "x", True) == {}


def test_bnb_rows_are_accepted_by_transformers():
    import pytest

    transformers = pytest.importorskip("transformers")
    for q in QUANTS:
        kwargs = bnb_kwargs(q, "float16", True)
        if kwargs:  # transformers ignores unknown keys with a warning: read every one back
            config = transformers.BitsAndBytesConfig(**kwargs).to_dict()
            assert {k: config.get(k, "missing") for k in kwargs} == kwargs
