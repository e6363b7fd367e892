"""Dataset writers (npz, png-dir, idx): deterministic bytes, streamed chunk by chunk.

Each writer fills a temporary name and returns {relative file name: sha256}; the caller
publishes it with a rename. Nothing here depends on time, so the same images give the same files.
"""

from __future__ import annotations

import csv
import hashlib
import io
import zipfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from cvae.jobs.atomic import sha256_file

_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)  # fixed timestamps: np.savez would stamp the current time
IDX_PREFIX = "train"
_IDX_IMAGES_MAGIC = 0x00000803  # uint8, 3 dimensions
_IDX_LABELS_MAGIC = 0x00000801  # uint8, 1 dimension

Chunks = Iterable[np.ndarray]  # uint8 [n, H, W] per chunk, in dataset order
Writer = Callable[[Path, Chunks, np.ndarray], dict[str, str]]


def idx_names(prefix: str = IDX_PREFIX) -> tuple[str, str]:
    return f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte"


def _zip_member(archive: zipfile.ZipFile, name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=_ZIP_EPOCH)
    info.compress_type = zipfile.ZIP_STORED
    info.external_attr = 0o644 << 16
    return info


def _write_npy_header(stream: Any, descr: str, shape: tuple[int, ...]) -> None:
    header = {"descr": descr, "fortran_order": False, "shape": shape}
    np.lib.format.write_array_header_1_0(stream, header)


def write_npz(path: Path, chunks: Chunks, labels: np.ndarray) -> dict[str, str]:
    """`images` uint8 [N, H, W] and `labels` int64 [N] in an uncompressed .npz."""
    chunk_list = iter(chunks)
    first = next(chunk_list)
    shape = (int(labels.shape[0]), *first.shape[1:])
    with zipfile.ZipFile(path, "w", allowZip64=True) as archive:
        with archive.open(_zip_member(archive, "images.npy"), "w", force_zip64=True) as member:
            _write_npy_header(member, "|u1", shape)
            written = 0
            for chunk in (first, *chunk_list):
                member.write(np.ascontiguousarray(chunk, dtype=np.uint8).tobytes())
                written += chunk.shape[0]
            if written != shape[0]:
                raise ValueError(f"chunks hold {written} images, labels {shape[0]}")
        with archive.open(_zip_member(archive, "labels.npy"), "w", force_zip64=True) as member:
            _write_npy_header(member, "<i8", (shape[0],))
            member.write(labels.astype("<i8").tobytes())
    return {path.name: sha256_file(path)}


def write_idx(folder: Path, chunks: Chunks, labels: np.ndarray) -> dict[str, str]:
    """The MNIST IDX pair (big-endian headers, uint8 data) inside `folder`."""
    if labels.size and (labels.min() < 0 or labels.max() > 255):
        raise ValueError("the idx format stores labels as uint8: labels must be in [0, 255]")
    images_name, labels_name = idx_names()
    count = int(labels.shape[0])
    with open(folder / images_name, "wb") as stream:
        header_written = False
        for chunk in chunks:
            if not header_written:
                height, width = chunk.shape[1:]
                stream.write(np.array([_IDX_IMAGES_MAGIC, count, height, width], ">u4").tobytes())
                header_written = True
            stream.write(np.ascontiguousarray(chunk, dtype=np.uint8).tobytes())
    with open(folder / labels_name, "wb") as stream:
        stream.write(np.array([_IDX_LABELS_MAGIC, count], ">u4").tobytes())
        stream.write(labels.astype(np.uint8).tobytes())
    return {name: sha256_file(folder / name) for name in (images_name, labels_name)}


def png_name(index: int, label: int, count: int) -> str:
    width = max(6, len(str(count - 1)))
    return f"{label}/{index:0{width}d}.png"


def write_png_dir(folder: Path, chunks: Chunks, labels: np.ndarray) -> dict[str, str]:
    """`folder/<label>/<index>.png` (grayscale) plus `labels.csv` (file,label in dataset order)."""
    from PIL import Image

    count = int(labels.shape[0])
    for label in np.unique(labels):
        (folder / str(int(label))).mkdir()
    hashes: dict[str, str] = {}
    index = 0
    for chunk in chunks:
        for image in chunk:
            name = png_name(index, int(labels[index]), count)
            buffer = io.BytesIO()
            Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8), mode="L").save(
                buffer, format="PNG"
            )
            data = buffer.getvalue()
            (folder / name).write_bytes(data)
            hashes[name] = hashlib.sha256(data).hexdigest()
            index += 1
    table = io.StringIO()
    rows = csv.writer(table, lineterminator="\n")
    rows.writerow(["file", "label"])
    rows.writerows([png_name(i, int(label), count), int(label)] for i, label in enumerate(labels))
    data = table.getvalue().encode()
    (folder / "labels.csv").write_bytes(data)
    hashes["labels.csv"] = hashlib.sha256(data).hexdigest()
    return hashes


WRITERS: dict[str, Writer] = {"npz": write_npz, "png-dir": write_png_dir, "idx": write_idx}
