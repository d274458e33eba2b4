"""Input views: columns by name, images as load_img gives them, text, arrays; digests."""

from __future__ import annotations

import io
import re

import numpy as np
import pandas as pd
import pytest

from stacking.config import ViewConfig
from stacking.errors import DataError, DataFileNotFoundError
from stacking.images import ImageAccess
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


# --- Images in the rows, paths confined to a root, bounded work (served models) -----------


def _data_uri(data: bytes, media: str = "image/png") -> str:
    import base64

    return f"data:{media};base64,{base64.b64encode(data).decode()}"


def _bomb_png(width: int, height: int, *, truncated: bool = False) -> bytes:
    """A 1-bit grayscale PNG of zeros: ``width`` x ``height`` pixels in a few KB (zlib);
    ``truncated`` cuts the pixel data off after a few bytes, so decoding it would fail."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    header = chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0))
    if truncated:
        return b"\x89PNG\r\n\x1a\n" + header + struct.pack(">I", 1000) + b"IDAT" + b"\x78\x9c"
    packer = zlib.compressobj(9)
    row = b"\0" * (1 + (width + 7) // 8)  # filter byte + packed bits
    idat = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    return b"\x89PNG\r\n\x1a\n" + header + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


@pytest.mark.parametrize("channels", [1, 3])
def test_images_sent_in_the_rows_equal_the_same_files_read_from_paths(images, channels):

    folder, names = images
    spec = ViewConfig(image="path", size=[8, 6], channels=channels)
    by_path = read_view(pd.DataFrame({"path": names}), spec, root=folder).to_numpy()
    content = [(folder / n).read_bytes() for n in names]
    cells = [
        _data_uri(content[0]),
        content[1],  # raw bytes (the Python API)
        _data_uri(content[2], "image/bmp"),
        _data_uri(content[3], ""),  # the media type is not trusted, nor needed
        "DATA:image/png;base64," + _data_uri(content[4]).split(",", 1)[1],
    ]
    for access in (None, ImageAccess.local(folder), ImageAccess.serving()):
        got = read_view(pd.DataFrame({"path": cells}), spec, access=access)
        np.testing.assert_array_equal(got.to_numpy(), by_path)
    assert (
        read_view(pd.DataFrame({"path": cells}), spec).digest()
        == read_view(pd.DataFrame({"path": names}), spec, root=folder).digest()
    )  # the cache sees the content, however it came


def test_served_rows_read_no_path_unless_a_root_is_chosen(images):

    folder, names = images
    spec = ViewConfig(image="path", size=[4, 4])
    for value in [names[0], str(folder / names[0]), "no/such/file.png"]:
        with pytest.raises(DataError) as info:
            read_view(pd.DataFrame({"path": [value]}), spec, access=ImageAccess.serving())
        assert str(info.value) == (
            "row 0 (id 0), column 'path': this model reads no files on the server; send the "
            "image itself as 'data:image/png;base64,<base64 bytes>'"
        )
    served = read_view(pd.DataFrame({"path": names}), spec, access=ImageAccess.serving(folder))
    expected = read_view(pd.DataFrame({"path": names}), spec, root=folder)
    np.testing.assert_array_equal(served.to_numpy(), expected.to_numpy())


@pytest.fixture
def rooted(images, tmp_path):
    """A root folder holding one image and a symlink to another outside it, plus a file
    outside the root and a non-image inside it."""
    import os

    folder, names = images
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "in.png").write_bytes((folder / names[0]).read_bytes())
    outside = tmp_path / "outside.png"
    outside.write_bytes((folder / names[0]).read_bytes())
    os.symlink(outside, root / "escape.png")
    os.symlink(root / "sub" / "in.png", root / "inside_link.png")
    (root / "notes.png").write_bytes(b"not an image at all")
    return root, outside


def test_paths_may_not_leave_the_chosen_root(rooted, tmp_path):

    root, outside = rooted
    spec = ViewConfig(image="path", size=[4, 4])
    served = ImageAccess.serving(root)
    ok = read_view(pd.DataFrame({"path": ["sub/in.png", "inside_link.png"]}), spec, access=served)
    assert ok.to_numpy().shape == (2, 4, 4, 3)
    refused = {
        str(outside): "absolute paths are refused",
        "sub/../../outside.png": "paths with '..' are refused",
        "..\\outside.png": "paths with '..' are refused",
    }
    for value, reason in refused.items():
        for access in (served, ImageAccess.local(root)):
            with pytest.raises(DataError, match=re.escape(reason)) as info:
                read_view(pd.DataFrame({"path": [value]}), spec, access=access)
            # A served row's answer names no server path; a local user is told the folder.
            shown = str(root) in str(info.value).replace(value, "")
            assert shown == (access is not served), str(info.value)
    # What only the file system can tell gets one answer: a symlink out of the root, a
    # missing file and a file that is not an image are indistinguishable to a client.
    answers = set()
    for value in ["escape.png", "missing.png", "sub", "notes.png"]:
        with pytest.raises(DataError) as info:
            read_view(
                pd.DataFrame({"id": ["x"], "path": [value]}), spec, access=served, ids=["x"]
            ).to_numpy()
        answers.add(str(info.value))
    assert answers == {
        "row 0 (id 'x'), column 'path': no readable image at that path in the server's image "
        "folder; send the image itself as 'data:image/png;base64,<base64 bytes>'"
    }
    # A local user is told which file and why.
    with pytest.raises(DataFileNotFoundError, match=r"'escape\.png'.* is not a file inside"):
        read_view(pd.DataFrame({"path": ["escape.png"]}), spec, access=ImageAccess.local(root))


def test_served_images_are_bounded_in_bytes_pixels_and_formats(images, rooted):
    from PIL import Image

    folder, names = images
    spec = ViewConfig(image="path", size=[4, 4])
    png = (folder / names[0]).read_bytes()  # 11 x 7 pixels

    def refusal(cell, access=None):
        access = access or ImageAccess.serving()
        with pytest.raises(DataError) as info:
            read_view(pd.DataFrame({"path": [cell]}), spec, access=access).to_numpy()
        return str(info.value).removeprefix("row 0 (id 0), column 'path': ")

    small = ImageAccess.serving(max_bytes=len(png) - 1, max_pixels=76)
    assert refusal(_data_uri(png), small) == (
        f"the image is {len(png)} bytes, more than the limit of {len(png) - 1}"
    )
    assert refusal(_data_uri(png), ImageAccess.serving(max_pixels=76)) == (
        "the image is 7x11 = 77 pixels, more than the limit of 76"
    )
    # Pixels are counted from the header: an image whose data is cut off after it would
    # fail to decode, so this answer proves that nothing was decoded.
    header_only = _bomb_png(6_000, 6_000, truncated=True)
    assert refusal(_data_uri(header_only)) == (
        "the image is 6000x6000 = 36000000 pixels, more than the limit of 25000000"
    )
    with pytest.raises(DataError, match="cannot read the image in"):  # nothing to decode
        read_view(pd.DataFrame({"path": [header_only]}), spec).to_numpy()
    bomb = _bomb_png(20_000, 20_000)
    assert len(bomb) < 100_000  # 400 million pixels in a request-sized cell
    assert refusal(bomb).startswith("the image has more pixels than the limit of 25000000")
    not_image = "the bytes sent are not a readable image (one of PNG, JPEG, GIF, BMP, WEBP)"
    assert refusal(_data_uri(b"GIF89a but not really")) == not_image
    tiff = io.BytesIO()
    Image.open(folder / names[0]).save(tiff, format="TIFF")
    assert refusal(tiff.getvalue()) == not_image  # a format the served model does not decode
    assert refusal("data:image/png;base64,@@@") == (
        "the data: URI is not valid base64 (standard alphabet, '=' padding, no spaces)"
    )
    assert refusal("data:image/png," + "x" * 10).startswith("a data: URI must be base64")
    bare = _data_uri(png).split(",", 1)[1] * 3
    assert refusal(bare).startswith("this looks like base64 image bytes without their prefix")
    # A file under the root larger than the limit gets the same answer as a missing one.
    root, _ = rooted
    answer = refusal("sub/in.png", ImageAccess.serving(root, max_bytes=10))
    assert answer == refusal("missing.png", ImageAccess.serving(root))


def test_image_data_sent_in_rows_pickles_for_ray_workers(images):
    import pickle

    folder, names = images
    spec = ViewConfig(image="path", size=[4, 4])
    frame = pd.DataFrame({"path": [(folder / n).read_bytes() for n in names]})
    data = read_view(frame, spec, access=ImageAccess.serving()).take(np.array([4, 0]))
    again = pickle.loads(pickle.dumps(data))
    np.testing.assert_array_equal(again.to_numpy(), data.to_numpy())
    assert again.rows == [4, 0]
