"""Input views: columns by name, images as load_img gives them, text, arrays; digests."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from stacking.config import ViewConfig
from stacking.errors import DataError, DataFileNotFoundError
from stacking.views import ArrayData, ImageData, fix_columns, predict_in_batches, read_view


def _frame():
    return pd.DataFrame({"id": ["a", "b", "c"], "f_0": [1.0, 2.0, 3.0], "f_1": [4.0, 5.0, 6.0]})


def test_columns_glob_is_fixed_by_training_names_and_matched_by_name():
    train = _frame()
    view = fix_columns(ViewConfig(columns="f_*"), train, source="train.csv")
    assert view.columns == ["f_0", "f_1"]
    shuffled = train[["f_1", "id", "f_0"]]
    got = read_view(shuffled, view, source="test.csv").to_numpy()
    np.testing.assert_array_equal(got, train[["f_0", "f_1"]].to_numpy("float32"))
    with pytest.raises(DataError, match=r"test.csv has no column\(s\) \['f_1'\]"):
        read_view(train.drop(columns="f_1"), view, source="test.csv")


def test_text_view_is_a_string_column_of_shape_n_1():
    frame = pd.DataFrame({"t": ["good day", "bad day"]})
    data = read_view(frame, ViewConfig(text="t"))
    assert data.shape == (2, 1) and data.dtype == "string"
    assert data.to_numpy()[:, 0].tolist() == ["good day", "bad day"]
    with pytest.raises(DataError, match="text column 't' in the input rows is empty at row 1"):
        read_view(pd.DataFrame({"t": ["x", None]}), ViewConfig(text="t"))


def test_array_view_memory_maps_npy_and_reads_npz_keys(tmp_path):
    x = np.arange(24, dtype="float32").reshape(3, 2, 4)
    np.save(tmp_path / "x.npy", x)
    np.savez(tmp_path / "x.npz", emb=x)
    frame = _frame()
    mapped = read_view(frame, ViewConfig(array={"train": str(tmp_path / "x.npy")}), which="train")
    assert isinstance(mapped.array, np.memmap)
    np.testing.assert_array_equal(mapped.to_numpy(), x)
    spec = ViewConfig(array={"train": f"{tmp_path / 'x.npz'}:emb"})
    np.testing.assert_array_equal(read_view(frame, spec, which="train").to_numpy(), x)
    with pytest.raises(DataError, match="has no array 'nope'; it holds \\['emb'\\]"):
        read_view(frame, ViewConfig(array={"train": f"{tmp_path / 'x.npz'}:nope"}), which="train")
    with pytest.raises(DataError, match=r"has 3 rows but t\.csv has 2"):
        read_view(
            frame.iloc[:2],
            ViewConfig(array={"train": str(tmp_path / "x.npy")}),
            which="train",
            source="t.csv",
        )
    # New rows to serve carry the array in a column.
    rows = pd.DataFrame({"emb": list(x)})
    served = read_view(rows, ViewConfig(array={"train": "unused.npy", "column": "emb"}))
    np.testing.assert_array_equal(served.to_numpy(), x)


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    from PIL import Image

    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    names = []
    for i, fmt in enumerate(["png", "jpeg", "bmp", "gif", "png"]):
        pixels = rng.integers(0, 256, size=(11, 7, 3), dtype=np.uint8)
        name = f"img_{i}.{fmt}"
        Image.fromarray(pixels).save(folder / name)
        names.append(name)
    return folder, names


@pytest.mark.parametrize("channels", [1, 3])
def test_image_view_equals_load_img_in_every_format(images, channels):
    import keras

    folder, names = images
    frame = pd.DataFrame({"id": [f"r{i}" for i in range(len(names))], "path": names})
    spec = ViewConfig(image="path", size=[8, 6], channels=channels)
    data = read_view(frame, spec, root=folder, ids=frame["id"])
    assert data.shape == (5, 8, 6, channels) and data.dtype == "float32"
    mode = "grayscale" if channels == 1 else "rgb"
    expected = np.stack(
        [
            keras.utils.img_to_array(
                keras.utils.load_img(folder / n, color_mode=mode, target_size=(8, 6))
            )
            for n in names
        ]
    )
    # Batches smaller than the rows: the pipeline keeps row order.
    got = np.concatenate(list(data.batches(2)))
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(data.take(np.array([3, 1])).to_numpy(), expected[[3, 1]])


def test_image_view_errors_name_the_file_and_row(images, tmp_path):
    folder, names = images
    frame = pd.DataFrame({"id": ["r0", "r1"], "path": [names[0], "missing.png"]})
    spec = ViewConfig(image="path", size=[4, 4])
    with pytest.raises(DataFileNotFoundError, match=r"missing.png' \(row id 'r1', column 'path'"):
        read_view(frame, spec, root=folder, ids=frame["id"])
    (tmp_path / "broken.png").write_bytes(b"not an image")
    frame = pd.DataFrame({"id": ["ok", "bad"], "path": [str(folder / names[0]), "broken.png"]})
    data = read_view(frame, spec, root=tmp_path, ids=frame["id"])
    with pytest.raises(DataError, match=r"cannot read image '.*broken.png' \(row id 'bad'\)"):
        data.to_numpy()


def test_image_digest_follows_content_not_paths(images, tmp_path):
    import shutil

    folder, names = images
    spec = ViewConfig(image="path", size=[4, 4])
    frame = pd.DataFrame({"path": names[:2]})
    first = read_view(frame, spec, root=folder).digest()
    moved = tmp_path / "moved"
    shutil.copytree(folder, moved)
    assert read_view(frame, spec, root=moved).digest() == first  # a renamed folder
    (moved / names[1]).write_bytes((folder / names[0]).read_bytes())
    assert read_view(frame, spec, root=moved).digest() != first  # an edited image
    assert read_view(frame, ViewConfig(image="path", size=[5, 4]), root=folder).digest() != first


def test_predict_in_batches_reads_views_in_step_and_handles_zero_rows():
    class Sum:
        def predict(self, inputs, *, batch_size):
            assert all(len(x) <= batch_size for x in inputs)
            return inputs[0].sum(axis=1, keepdims=True) + inputs[1]

    a = ArrayData(np.arange(10, dtype="float32").reshape(5, 2))
    b = np.ones((5, 1), dtype="float32")
    out = predict_in_batches(Sum(), [a, b], batch_size=2)
    np.testing.assert_array_equal(out[:, 0], [2, 6, 10, 14, 18])
    empty = predict_in_batches(Sum(), [a.take(np.array([], dtype=int)), b[:0]], batch_size=2)
    assert empty.shape == (0, 1)


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ({}, "exactly one of `columns`, `image`, `text` or `array`. Received: none"),
        ({"columns": "a", "text": "t"}, r"Received: \['columns', 'text'\]"),
        ({"image": "p"}, r"needs `size: \[height, width\]`"),
        ({"text": "t", "shape": [2]}, "`shape` applies to column views only"),
        ({"columns": "a", "size": [2, 2]}, "`size` applies to image views only"),
    ],
)
def test_view_config_errors(spec, match):
    with pytest.raises(ValueError, match=match):
        ViewConfig(**spec)


def test_image_data_pickles_for_ray_workers(images):
    import pickle

    folder, names = images
    data = ImageData([str(folder / n) for n in names], list(range(5)), (4, 4), 3)
    again = pickle.loads(pickle.dumps(data))
    np.testing.assert_array_equal(again.to_numpy(), data.to_numpy())
