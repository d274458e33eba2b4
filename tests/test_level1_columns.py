"""Which columns level 1 names and which it refuses: block names per task, and
passthrough/FWLS columns that would carry the target to the meta-model."""

from __future__ import annotations

import pytest
from test_level1 import _dataset

from stacking.config import FeaturesConfig
from stacking.errors import LeakageError
from stacking.level1 import block_names, check_meta_columns


@pytest.mark.parametrize(
    ("task", "drop", "expected"),
    [
        ("binary", True, ["m__yes"]),
        ("binary", False, ["m__no", "m__yes"]),
        ("multiclass", True, ["m__cat", "m__dog", "m__emu"]),
        ("multilabel", True, ["m__red", "m__big"]),
    ],
)
def test_block_names_per_task(tmp_path, task, drop, expected):
    assert block_names("m", _dataset(tmp_path, task), drop_redundant=drop) == expected


def test_block_names_drop_the_redundant_binary_column_by_default(tmp_path):
    assert block_names("m", _dataset(tmp_path, "binary")) == ["m__yes"]


@pytest.mark.parametrize("key", ["passthrough", "fwls"])
def test_check_meta_columns_refuses_reserved_columns_by_key(tmp_path, key):
    data = _dataset(tmp_path, "binary")
    check_meta_columns(data, FeaturesConfig(**{key: ["age", "dose"]}), {"label"})  # fine
    with pytest.raises(LeakageError) as info:
        check_meta_columns(data, FeaturesConfig(**{key: ["age", "label"]}), {"label", "w"})
    message = str(info.value)
    assert message.startswith(f"meta.features.{key} selects ['label']: the target")
    assert f"Received: {key}=['age', 'label']" in message
