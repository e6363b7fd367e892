"""Read one version folder: model.json parsed and checked, every file against its sha256.

A model repository is written by other people's tools, so nothing in it is trusted: only regular
files are opened (a FIFO would block, a link to /dev/zero never ends), their sizes are capped
before they are read, model.json's integers have at most MAX_INT_DIGITS digits and its nesting
at most MAX_JSON_DEPTH levels, and every file of the folder must be in model.json's integrity
record (a graph's `onnx_sha256`, or `files` for anything else, such as external weights).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import stat
from pathlib import Path
from typing import Any

from modelrepo.errors import ModelRepositoryError
from modelrepo.folders import ModelRepository
from modelrepo.spec import DESCRIPTION_FILE, FILES, ModelSpec, parse_document

MAX_DESCRIPTION_BYTES = 1 << 20  # model.json; the shipped ones are ~3 kB
MAX_VERSION_BYTES = 1 << 30  # all files of a version together (cvae serve --max-model-bytes)
MAX_INT_DIGITS = 20  # any integer model.json needs fits an int64
MAX_JSON_DEPTH = 32  # the shipped model.json nests 5 levels deep


def read_spec(folder: Path, max_bytes: int = MAX_VERSION_BYTES) -> ModelSpec:
    """The checked spec of the version in `folder`; ModelRepositoryError names what is wrong.

    `max_bytes` caps the version's files together (model.json is capped on its own).
    """
    json_path = folder / DESCRIPTION_FILE
    data = _read_regular(
        json_path,
        MAX_DESCRIPTION_BYTES,
        f"model.json may have at most {MAX_DESCRIPTION_BYTES} bytes",
    )
    document = parse_json(data, json_path)
    spec = parse_document(document, folder)
    if spec.version != folder.name:
        raise ModelRepositoryError(
            f"{json_path}: version {spec.version!r} does not match its folder {folder.name!r}"
        )
    if spec.name != folder.parent.name:
        raise ModelRepositoryError(
            f"{json_path}: name {spec.name[:60]!r} does not match its model folder "
            f"{folder.parent.name!r}"
        )
    budget = max_bytes - len(data)
    for graph in spec.graphs:
        path = spec.path_of(graph)
        actual, size = _digest(path, budget, max_bytes)
        budget -= size
        if actual != graph.sha256:
            raise ModelRepositoryError(
                f"{path}: sha256 {actual} does not match onnx_sha256 {graph.sha256} "
                f"in {json_path.name} (truncated or replaced file?)"
            )
    for file, expected in sorted(spec.files.items()):
        path = folder / file
        actual, size = _digest(path, budget, max_bytes)
        budget -= size
        if actual != expected:
            raise ModelRepositoryError(
                f"{path}: sha256 {actual} does not match {expected} in {json_path.name}'s "
                f"{FILES!r} (truncated or replaced file?)"
            )
    _check_unlisted(spec, json_path)
    return spec


def newest_spec(root: Path, model_name: str = "") -> ModelSpec:
    """The checked spec of the highest version of `model_name` (or of the only model)."""
    return read_spec(ModelRepository(root, model_name).newest().path)


def newest_readable_spec(root: Path, model_name: str = "") -> ModelSpec:
    """The checked spec of the highest version that reads (the one a new server would serve
    unless it fails to load); when none reads, the newest version's error."""
    versions = ModelRepository(root, model_name).versions()
    if not versions:
        ModelRepository(root, model_name).newest()  # raises the "no version folder" error
    errors = []
    for folder in reversed(versions):
        try:
            return read_spec(folder.path)
        except ModelRepositoryError as error:
            errors.append(error)
    raise errors[0]


def sha256_of(path: Path) -> str:
    return _digest(path, MAX_VERSION_BYTES, MAX_VERSION_BYTES)[0]


def parse_json(data: bytes, path: Path) -> dict[str, Any]:
    """model.json's object; bounded integers and nesting, or ModelRepositoryError."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ModelRepositoryError(f"{path}: cannot be read ({error})") from None
    try:
        document = json.loads(text, parse_int=_bounded_int)
    except _TooManyDigits as error:
        raise ModelRepositoryError(f"{path}: {error}") from None
    except RecursionError:
        raise ModelRepositoryError(f"{path}: nested deeper than {MAX_JSON_DEPTH} levels") from None
    except json.JSONDecodeError as error:
        raise ModelRepositoryError(f"{path}: not valid JSON ({error})") from None
    except ValueError as error:  # e.g. a float the parser cannot convert
        raise ModelRepositoryError(f"{path}: not valid JSON ({error})") from None
    if not isinstance(document, dict):
        raise ModelRepositoryError(f"{path}: must hold a JSON object")
    if _deeper_than(document, MAX_JSON_DEPTH):
        raise ModelRepositoryError(f"{path}: nested deeper than {MAX_JSON_DEPTH} levels")
    return document


class _TooManyDigits(ValueError):
    pass


def _bounded_int(text: str) -> int:
    digits = len(text.lstrip("-"))
    if digits > MAX_INT_DIGITS:
        raise _TooManyDigits(f"an integer of {digits} digits (at most {MAX_INT_DIGITS})")
    return int(text)


def _deeper_than(document: Any, limit: int) -> bool:
    stack = [(document, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            children = list(value.values())
        elif isinstance(value, list):
            children = value
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def _open_regular(path: Path, limit: int, allowed: str) -> tuple[io.BufferedReader, int]:
    """`path` opened for reading if it is a regular file of at most `limit` bytes (`allowed`
    says how many it may have, for the message).

    Checked before opening (opening a device can have effects of its own) and again on the
    open descriptor (the entry may be replaced in between); O_NONBLOCK: a FIFO never blocks.
    """
    try:
        before = os.stat(path)
        if not stat.S_ISREG(before.st_mode):
            raise ModelRepositoryError(f"{path}: not a regular file ({_kind(before.st_mode)})")
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise ModelRepositoryError(f"{path}: file is missing") from None
    except OSError as error:
        raise ModelRepositoryError(f"{path}: cannot be read ({error.strerror})") from None
    status = os.fstat(descriptor)
    if not stat.S_ISREG(status.st_mode) or status.st_size > limit:
        os.close(descriptor)
        if not stat.S_ISREG(status.st_mode):
            raise ModelRepositoryError(f"{path}: not a regular file ({_kind(status.st_mode)})")
        raise ModelRepositoryError(f"{path}: {status.st_size} bytes, too big ({allowed})")
    return io.BufferedReader(io.FileIO(descriptor, "r")), status.st_size


def _read_regular(path: Path, limit: int, allowed: str) -> bytes:
    stream, _ = _open_regular(path, limit, allowed)
    try:
        with stream:
            data = stream.read(limit + 1)
    except OSError as error:
        raise ModelRepositoryError(f"{path}: cannot be read ({error.strerror})") from None
    if len(data) > limit:  # it grew while being read
        raise ModelRepositoryError(f"{path}: grew while read, too big ({allowed})")
    return data


def _digest(path: Path, budget: int, max_bytes: int) -> tuple[str, int]:
    """sha256 and size of a regular file that fits the remaining `budget` of its version."""
    allowed = f"a version's files may have at most {max_bytes} bytes in all, --max-model-bytes"
    stream, size = _open_regular(path, max(budget, 0), allowed)
    try:
        with stream:
            digest = hashlib.file_digest(stream, "sha256")
    except OSError as error:
        raise ModelRepositoryError(f"{path}: cannot be read ({error.strerror})") from None
    return digest.hexdigest(), size


def _check_unlisted(spec: ModelSpec, json_path: Path) -> None:
    """Every entry of the folder is model.json, a graph or listed in `files`."""
    known = {DESCRIPTION_FILE, *(graph.file for graph in spec.graphs), *spec.files}
    try:
        names = sorted(os.listdir(spec.folder))
    except OSError as error:
        raise ModelRepositoryError(f"{spec.folder}: cannot be listed ({error.strerror})") from None
    for name in names:
        if name not in known:
            raise ModelRepositoryError(
                f"{spec.folder / name}: not in {json_path.name}'s integrity record; list it "
                f"under {FILES!r} with its sha256, or remove it"
            )


def _kind(mode: int) -> str:
    kinds = {
        stat.S_IFDIR: "a folder",
        stat.S_IFIFO: "a FIFO",
        stat.S_IFCHR: "a character device",
        stat.S_IFBLK: "a block device",
        stat.S_IFSOCK: "a socket",
    }
    return kinds.get(stat.S_IFMT(mode), "not a plain file")
