"""The results directory's tables: written compactly, read back exactly."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from stacking.results import write_table


def test_write_table_reads_back_equal_with_dictionaries_only_for_non_floats(tmp_path):
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "id": np.arange(1000),
            "fold": rng.integers(0, 5, 1000),
            "label": rng.choice(["cat", "dog"], 1000),
            "cnn__cat": rng.random(1000),
            "cnn__dog": rng.random(1000).astype(np.float32),
        }
    )
    write_table(frame, tmp_path / "oof.parquet")
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "oof.parquet"), frame)
    group = pq.ParquetFile(tmp_path / "oof.parquet").metadata.row_group(0)
    dictionary = {
        group.column(i).path_in_schema: "RLE_DICTIONARY" in group.column(i).encodings
        for i in range(group.num_columns)
    }
    assert dictionary == {
        "id": True,
        "fold": True,
        "label": True,
        "cnn__cat": False,
        "cnn__dog": False,
    }
