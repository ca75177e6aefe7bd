"""Safe readers for files that may come from someone else: size and nesting limits, no code.

JSON is parsed with the standard library (never ``pickle``), after checking its size, and its
nesting depth is checked before anything walks it recursively; what JSON leaves ambiguous is
refused (a key given twice, ``NaN``/``Infinity``, a number too large for a float). GraphML is
XML: documents with a DOCTYPE or entity declarations (the "billion laughs" family) are refused
before parsing.

Files of an export folder are opened only as regular files inside it (:func:`open_regular_file`:
no symbolic link, FIFO or device), so a folder cannot make a reader hang or read elsewhere.
``.npz`` archives are read member by member (:class:`NpzReader`): every member's ``.npy``
header is checked against its declared size before any data is read, so a header claiming a
huge shape, a member that would inflate far beyond its compressed size, object arrays (which
need pickle) and non-zip files are refused in bounded time and memory.

Example:
    >>> load_json_text('{"a": [1, 2]}', what="graph")
    {'a': [1, 2]}
"""

from __future__ import annotations

import json
import math
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from mtlsearch.errors import UnsafeInputError

__all__ = ["MAX_JSON_BYTES", "MAX_DEPTH", "is_json_int", "MAX_NPZ_MEMBERS", "MAX_INFLATE_RATIO",
           "INFLATE_FLOOR_BYTES", "load_json_text", "read_json", "check_depth", "read_graphml",
           "open_regular_file", "read_regular_file", "NpzMember", "NpzReader"]

MAX_JSON_BYTES = 50 * 1024 * 1024  # an architecture is kilobytes; a huge file is refused
MAX_DEPTH = 64  # a graph record nests about 5 levels deep
MAX_NPZ_MEMBERS = 10_000  # arrays in one .npz (a dataset has one per task, plus the inputs)
# A member may inflate at most this many times its compressed size once it is above the floor:
# real arrays compress a few times; a deflate "bomb" inflates about a thousand times.
MAX_INFLATE_RATIO = 100
INFLATE_FLOOR_BYTES = 256 * 2**20
_NPY_MAGIC = b"\x93NUMPY"


def is_json_int(value: Any) -> bool:
    """An integer of JSON: not a boolean (``true`` is an ``int`` in Python), not a float."""
    return isinstance(value, int) and not isinstance(value, bool)


def check_depth(value: Any, *, what: str, max_depth: int = MAX_DEPTH) -> None:
    """Raise :class:`UnsafeInputError` when ``value`` nests deeper than ``max_depth``.

    Iterative, so a hostile document cannot exhaust the interpreter's stack.
    """
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children = list(item.values())
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > max_depth:
            raise UnsafeInputError(f"{what} nests deeper than {max_depth} levels; it is not a "
                                   "file written by mtlsearch")
        stack.extend((c, depth + 1) for c in children)


def load_json_text(text: str | bytes, *, what: str, max_bytes: int = MAX_JSON_BYTES,
                   max_depth: int = MAX_DEPTH) -> Any:
    """Parse JSON text with size and depth limits.

    Raises:
        UnsafeInputError: too large, too deep, not UTF-8 or not JSON (naming ``what``).
    """
    if len(text) > max_bytes:
        raise UnsafeInputError(f"{what} is {len(text):,} bytes, above the {max_bytes:,}-byte "
                               "limit; it cannot be an mtlsearch file")
    try:
        data = json.loads(text, object_pairs_hook=_unique_keys, parse_constant=_no_constant,
                          parse_float=_finite_float)
    except _Ambiguous as exc:
        raise UnsafeInputError(f"{what} is ambiguous JSON: {exc}") from None
    except RecursionError:
        raise UnsafeInputError(f"{what} nests too deeply to parse") from None
    except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError is a ValueError
        raise UnsafeInputError(f"{what} is not valid JSON: {exc}") from None
    check_depth(data, what=what, max_depth=max_depth)
    return data


class _Ambiguous(Exception):
    """Raised by the JSON hooks (not a ValueError, so it is told apart from bad syntax)."""


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        twice = next(k for k, _ in pairs if k in seen or seen.add(k))  # type: ignore[func-returns-value]
        raise _Ambiguous(f"key {twice!r} appears twice in one object (which one counts?)")
    return out


def _no_constant(name: str) -> Any:
    raise _Ambiguous(f"{name} is not a JSON number; write a finite number or null")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _Ambiguous(f"the number {text[:40]} is too large for a float")
    return value


def read_json(path: str | Path, *, max_bytes: int = MAX_JSON_BYTES,
              max_depth: int = MAX_DEPTH) -> Any:
    """Read a JSON file, checking its size before reading it.

    Example:
        >>> read_json("runs/best/architecture.json")  # doctest: +SKIP
    """
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise UnsafeInputError(f"cannot read {path}: {exc.strerror}") from None
    if size > max_bytes:
        raise UnsafeInputError(f"{path} is {size:,} bytes, above the {max_bytes:,}-byte limit")
    return load_json_text(path.read_bytes(), what=str(path), max_bytes=max_bytes,
                          max_depth=max_depth)


def read_graphml(path: str | Path, *, max_bytes: int = MAX_JSON_BYTES) -> Any:
    """Read a GraphML file into a ``networkx`` graph, refusing DOCTYPE/entity declarations.

    Raises:
        UnsafeInputError: too large, declares entities, or is not valid GraphML.

    Example:
        >>> g = read_graphml("runs/best/architecture.graphml")  # doctest: +SKIP
    """
    import networkx as nx

    path = Path(path)
    try:
        data = path.read_bytes() if path.stat().st_size <= max_bytes else None
    except OSError as exc:
        raise UnsafeInputError(f"cannot read {path}: {exc.strerror}") from None
    if data is None:
        raise UnsafeInputError(f"{path} is above the {max_bytes:,}-byte limit")
    if b"<!DOCTYPE" in data.upper() or b"<!ENTITY" in data.upper():
        raise UnsafeInputError(f"{path} declares a DOCTYPE or entities; GraphML written by "
                               "mtlsearch never does, so it is refused")
    try:
        return nx.parse_graphml(data.decode("utf-8"))
    except RecursionError:
        raise UnsafeInputError(f"{path} nests too deeply to parse") from None
    except Exception as exc:  # ParseError, NetworkXError, KeyError, ValueError...
        raise UnsafeInputError(f"{path} is not valid GraphML: {type(exc).__name__}: {exc}") \
            from None


# ------------------------------------------------------------------------------ regular files
def _plain_name(name: Any, where: Path) -> str:
    if not isinstance(name, str) or name in ("", ".", "..") or Path(name).name != name or (
        "/" in name or "\\" in name or "\x00" in name
    ):
        raise UnsafeInputError(
            f"{where}: {name!r} must be a plain file name inside the folder"
        )
    return name


def open_regular_file(folder: str | Path, name: str) -> BinaryIO:
    """Open ``folder/name`` for reading, only if it is a regular file inside ``folder``.

    ``name`` must be a plain file name; a symbolic link (even one pointing inside), a FIFO,
    a socket, a device or a folder is refused. The file is opened without following a link
    and without blocking, then checked on the open descriptor, so nothing can be swapped in
    between the check and the read.

    Raises:
        UnsafeInputError: naming the file and what it is instead.
    """
    folder = Path(folder)
    path = folder / _plain_name(name, folder)
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(
        os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
    try:
        if not hasattr(os, "O_NOFOLLOW") and path.is_symlink():  # no O_NOFOLLOW (Windows)
            raise OSError(40, "is a symbolic link")
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise UnsafeInputError(f"{path} is missing") from None
    except OSError as exc:
        if path.is_symlink():
            raise UnsafeInputError(
                f"{path} is a symbolic link; files of this folder are read only as regular "
                "files inside it: replace the link by a copy of the file"
            ) from None
        raise UnsafeInputError(f"cannot open {path}: {exc.strerror or exc}") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        kind = ("a folder" if stat.S_ISDIR(info.st_mode) else "a FIFO" if stat.S_ISFIFO(
            info.st_mode) else "a device" if stat.S_ISCHR(info.st_mode) or stat.S_ISBLK(
            info.st_mode) else "a socket" if stat.S_ISSOCK(info.st_mode) else "not a file")
        raise UnsafeInputError(f"{path} is {kind}, not a regular file; replace it by the file")
    return os.fdopen(fd, "rb")


def read_regular_file(folder: str | Path, name: str, *, max_bytes: int) -> bytes:
    """The bytes of ``folder/name`` (see :func:`open_regular_file`), at most ``max_bytes``.

    The size is checked on the open file before anything is read.
    """
    with open_regular_file(folder, name) as fh:
        size = os.fstat(fh.fileno()).st_size
        if size > max_bytes:
            raise UnsafeInputError(
                f"{Path(folder) / name} is {size:,} bytes, above the {max_bytes:,}-byte limit"
            )
        data = fh.read(size + 1)
    if len(data) > size:
        raise UnsafeInputError(f"{Path(folder) / name} grew while it was read")
    return data


# ------------------------------------------------------------------------------------ .npz
@dataclass(frozen=True)
class NpzMember:
    """One array of an ``.npz`` archive, as its ``.npy`` header declares it (nothing read).

    Attributes:
        name: The key (member name without ``.npy``).
        shape: The declared shape.
        dtype: The declared dtype.
        nbytes: Bytes of data the shape and dtype imply (checked against the member's size).
    """

    name: str
    shape: tuple[int, ...]
    dtype: Any
    fortran_order: bool
    nbytes: int
    header_bytes: int
    member: str


class NpzReader:
    """Read an ``.npz`` archive member by member, checking every header before any data.

    Opening lists the members and reads each one's ``.npy`` header (a few hundred bytes):
    a file that is not a zip archive (a ``.npy``, text, junk), members that are not ``.npy``
    arrays, object arrays, a header whose shape disagrees with the member's size, and a
    member that would inflate more than :data:`MAX_INFLATE_RATIO` times its compressed size
    (once above :data:`INFLATE_FLOOR_BYTES`) are refused with an :class:`UnsafeInputError`.
    :meth:`read` then reads one array, into memory of exactly its declared size.

    Example:
        >>> with NpzReader("data.npz") as npz:  # doctest: +SKIP
        ...     x = npz.read("X") if npz.members["X"].dtype.kind == "f" else None
    """

    def __init__(self, path: str | Path, *, what: str | None = None):
        import zipfile

        self.path = Path(path)
        self.what = what or str(self.path)
        real = self.path.resolve()  # a link to your own data file is fine; a FIFO is not
        try:
            fh = open_regular_file(real.parent, real.name)
        except UnsafeInputError as exc:
            raise UnsafeInputError(f"{exc}; give an .npz file (np.savez)") from None
        self._fh = fh
        self._size = os.fstat(fh.fileno()).st_size
        try:
            head = fh.read(len(_NPY_MAGIC))
            fh.seek(0)
            if head == _NPY_MAGIC:
                raise UnsafeInputError(
                    f"{self.what} is a .npy file (one array), not an .npz archive of named "
                    "arrays; save it with np.savez(path, X=array)"
                )
            if head[:2] != b"PK":
                raise UnsafeInputError(
                    f"{self.what} is not an .npz file (not a zip archive); write it with "
                    "np.savez(path, X=array, ...)"
                )
            try:
                self._zip = zipfile.ZipFile(fh)
                infos = self._zip.infolist()
            except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError,
                    NotImplementedError, RuntimeError) as exc:
                raise UnsafeInputError(
                    f"{self.what} is not a readable .npz file ({_short(exc)}); it is truncated "
                    "or corrupt: write it again with np.savez"
                ) from None
            if len(infos) > MAX_NPZ_MEMBERS:
                raise UnsafeInputError(f"{self.what} holds {len(infos):,} members, above the "
                                       f"limit of {MAX_NPZ_MEMBERS:,}")
            self.members: dict[str, NpzMember] = {}
            for info in infos:
                member = self._header(info)
                if member.name in self.members:
                    raise UnsafeInputError(
                        f"{self.what} holds the array {member.name!r} twice (which one counts?); "
                        "write it again with np.savez"
                    )
                self.members[member.name] = member
        except BaseException:
            self.close()
            raise

    @property
    def files(self) -> list[str]:
        """The array names, in archive order (as ``np.load(...).files``)."""
        return list(self.members)

    def _header(self, info: Any) -> NpzMember:
        import zipfile

        from numpy.lib import format as npy

        where = f"{self.what}: member {info.filename!r}"
        if info.is_dir() or not info.filename.endswith(".npy"):
            raise UnsafeInputError(f"{where} is not a numpy array (.npy); an .npz written by "
                                   "np.savez holds only arrays")
        if info.flag_bits & 0x1:
            raise UnsafeInputError(f"{where} is encrypted")
        if info.compress_size > self._size:
            raise UnsafeInputError(f"{where} claims {info.compress_size:,} compressed bytes in a "
                                   f"file of {self._size:,}; the file is truncated or forged")
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise UnsafeInputError(f"{where} uses a compression numpy never writes; write the "
                                   "file with np.savez or np.savez_compressed")
        if info.file_size > INFLATE_FLOOR_BYTES and (
            info.file_size > MAX_INFLATE_RATIO * max(info.compress_size, 1)
        ):
            raise UnsafeInputError(
                f"{where} would inflate from {info.compress_size:,} to {info.file_size:,} bytes "
                f"(more than {MAX_INFLATE_RATIO}x): refused as a decompression bomb; save real "
                "data with np.savez (uncompressed)"
            )
        try:
            with self._zip.open(info) as fp:
                version = npy.read_magic(fp)
                if version == (1, 0):
                    shape, fortran, dtype = npy.read_array_header_1_0(fp)
                elif version == (2, 0):
                    shape, fortran, dtype = npy.read_array_header_2_0(fp)
                else:
                    raise ValueError(f"unsupported .npy format version {version}")
                header_bytes = fp.tell()
        except (ValueError, OSError, EOFError, SyntaxError, TypeError, RuntimeError) as exc:
            raise UnsafeInputError(f"{where} has no readable .npy header ({_short(exc)})") \
                from None
        except Exception as exc:  # zlib.error, BadZipFile: a corrupt member
            raise UnsafeInputError(f"{where} is corrupt ({_short(exc)})") from None
        if dtype.hasobject:
            raise UnsafeInputError(
                f"{where} holds Python objects (dtype {dtype}), which cannot be read without "
                "pickle (refused: unpickling can run code); save numbers instead"
            )
        count = math.prod(int(n) for n in shape)
        nbytes = count * dtype.itemsize
        if header_bytes + nbytes != info.file_size:
            raise UnsafeInputError(
                f"{where}: its header declares shape {tuple(shape)} of {dtype} ({nbytes:,} bytes) "
                f"but the member holds {info.file_size - header_bytes:,} bytes of data; the "
                "file is corrupt or forged"
            )
        return NpzMember(info.filename[:-4], tuple(int(n) for n in shape), dtype, bool(fortran),
                         nbytes, header_bytes, info.filename)

    def read(self, name: str) -> Any:
        """The array ``name`` (declared size checked on opening; read in 1 MiB pieces)."""
        import numpy as np

        member = self.members[name]
        out = np.empty(member.shape[::-1] if member.fortran_order else member.shape,
                       dtype=member.dtype)
        view = memoryview(out.reshape(-1).view(np.uint8)) if out.size else memoryview(b"")
        try:
            with self._zip.open(member.member) as fp:
                fp.read(member.header_bytes)
                filled = 0
                while filled < member.nbytes:
                    got = fp.readinto(view[filled: filled + (1 << 20)])
                    if not got:
                        break
                    filled += got
        except Exception as exc:  # zlib.error, BadZipFile (CRC), OSError: a corrupt member
            raise UnsafeInputError(
                f"{self.what}: member {member.member!r} is corrupt ({_short(exc)})"
            ) from None
        if filled != member.nbytes:
            raise UnsafeInputError(f"{self.what}: member {member.member!r} is truncated")
        return out.T if member.fortran_order else out

    def close(self) -> None:
        """Close the archive and the file."""
        zf = getattr(self, "_zip", None)
        if zf is not None:
            zf.close()
        self._fh.close()

    def __enter__(self) -> NpzReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __iter__(self) -> Iterator[str]:
        return iter(self.members)


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:200]
