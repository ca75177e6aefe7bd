"""Trial weights in Optuna's artifact store: uploaded after a trial, found and checked for export.

The study storage records, for each trial, the artifact's id, size and SHA-256 (trial user
attribute ``weights_artifact``; Optuna's own ``artifacts:<id>`` system attribute is set too),
so any machine that opens the storage and reaches the artifact store exports the trial
without retraining it. The default store is a folder, ``OUT/artifacts``; any
``optuna.artifacts`` store works (S3, GCS, a user's own).

Example:
    >>> store = open_artifact_store(None, out="runs")  # doctest: +SKIP
    >>> store = open_artifact_store("s3://my-bucket")  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.artifacts import FileSystemArtifactStore, get_all_artifact_meta, upload_artifact
from optuna.artifacts.exceptions import ArtifactNotFound
from optuna.trial import FrozenTrial

from mtlsearch.errors import ExportError, MTLSearchError

__all__ = [
    "ARTIFACT_ATTR",
    "DEFAULT_FOLDER",
    "ArtifactRecord",
    "describe_store",
    "download_weights",
    "fetch_weights",
    "open_artifact_store",
    "upload_weights",
]

log = logging.getLogger(__name__)

#: Trial user attribute with the weights artifact's record (see :class:`ArtifactRecord`).
ARTIFACT_ATTR = "weights_artifact"
#: The default file-system store's folder under a search's ``out``.
DEFAULT_FOLDER = "artifacts"
_CHUNK = 1 << 20


def open_artifact_store(spec: Any, *, out: str | Path | None = None, create: bool = True) -> Any:
    """An Optuna artifact store from ``spec``.

    Args:
        spec: ``None`` (the folder ``out/artifacts``, or no store without ``out``), an
            artifact store object (anything with ``open_reader``, ``write`` and ``remove``,
            e.g. ``optuna.artifacts.Boto3ArtifactStore``), ``"s3://BUCKET"``,
            ``"gs://BUCKET"``, ``"file:FOLDER"`` or a folder path.
        out: The search's output folder, for the default store.
        create: Create a missing folder (a search); ``False`` for reading (an export).

    Raises:
        MTLSearchError: An unknown kind of ``spec``, a missing folder with ``create=False``,
            or a cloud store whose client library is not installed.
    """
    if spec is None:
        return open_artifact_store(Path(out) / DEFAULT_FOLDER, create=create) if out else None
    if all(hasattr(spec, m) for m in ("open_reader", "write", "remove")):
        return spec
    if not isinstance(spec, (str, Path)):
        raise MTLSearchError(
            f"artifact_store must be a folder, 'file:FOLDER', 's3://BUCKET', 'gs://BUCKET' or an "
            f"optuna.artifacts store, got {type(spec).__name__}")
    text = str(spec)
    for scheme, cls_name, module in (("s3://", "Boto3ArtifactStore", "boto3"),
                                     ("gs://", "GCSArtifactStore", "google-cloud-storage")):
        if text.startswith(scheme):
            bucket = text[len(scheme):].strip("/")
            if not bucket or "/" in bucket:
                raise MTLSearchError(f"artifact store {text!r}: give a bucket name only, "
                                     f"as {scheme}BUCKET (Optuna's store has no prefix)")
            try:
                return getattr(optuna.artifacts, cls_name)(bucket)
            except ImportError as exc:
                raise MTLSearchError(f"artifact store {text!r} needs {module}: pip install "
                                     f"{module} ({exc})") from None
    return FileSystemArtifactStore(_folder(Path(text.removeprefix("file:")), create))


def _folder(path: Path, create: bool) -> Path:
    if path.exists() and not path.is_dir():
        raise MTLSearchError(f"artifact store folder {path} exists and is not a folder; "
                             "pick another artifact store")
    if not create and not path.is_dir():
        raise MTLSearchError(f"artifact store folder {path} does not exist; give the folder "
                             "the search wrote its artifacts to (OUT/artifacts)")
    path.mkdir(parents=True, exist_ok=True)
    return path.resolve()


def describe_store(store: Any) -> str | None:
    """``file:FOLDER``, ``s3://BUCKET`` or ``gs://BUCKET`` for Optuna's stores; else ``None``.

    This is what :func:`open_artifact_store` reopens, so an export finds the store the trial
    was uploaded to without being told (a folder must be reachable at the same path).
    """
    store = getattr(store, "_backend", store)  # optuna.artifacts.Backoff wraps a store
    if isinstance(store, FileSystemArtifactStore):
        return f"file:{Path(store._base_path).resolve()}"  # Optuna keeps no public name
    if type(store).__name__ == "Boto3ArtifactStore":
        return f"s3://{store.bucket}"
    if type(store).__name__ == "GCSArtifactStore":
        return f"gs://{store.bucket_name}"
    return None


@dataclass(frozen=True)
class ArtifactRecord:
    """What the storage records about a trial's weights artifact.

    Attributes:
        id: The artifact id in the store; sha256, size: of the safetensors file;
        store: :func:`describe_store` of the store it went to (``None`` for a custom store).
    """

    id: str
    sha256: str
    size: int
    store: str | None

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "sha256": self.sha256, "bytes": self.size, "store": self.store}

    @classmethod
    def from_trial(cls, trial: FrozenTrial) -> ArtifactRecord | None:
        """The record of ``trial``, ``None`` when it has none.

        Raises:
            ExportError: The record is not what :func:`upload_weights` writes.
        """
        raw = trial.user_attrs.get(ARTIFACT_ATTR)
        if raw is None:
            return None
        ok = (isinstance(raw, dict) and isinstance(raw.get("id"), str)
              and isinstance(raw.get("sha256"), str) and len(raw["sha256"]) == 64
              and isinstance(raw.get("bytes"), int) and not isinstance(raw["bytes"], bool)
              and raw["bytes"] > 0 and isinstance(raw.get("store"), (str, type(None))))
        if not ok:
            raise ExportError(f"trial {trial.number}'s {ARTIFACT_ATTR!r} attribute is damaged "
                              f"({str(raw)[:120]}); the storage was edited: re-run the trial")
        return cls(raw["id"], raw["sha256"], raw["bytes"], raw["store"])


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def upload_weights(trial: optuna.Trial, file_path: Path, store: Any) -> ArtifactRecord:
    """Upload ``file_path`` to ``store`` as ``trial``'s weights and record it in the storage."""
    record_sha, size = _sha256(file_path), file_path.stat().st_size
    before = {m.artifact_id for m in get_all_artifact_meta(trial)}
    try:
        artifact_id = upload_artifact(artifact_store=store, file_path=str(file_path),
                                      study_or_trial=trial, mimetype="application/octet-stream")
    except BaseException:
        # Optuna records the artifact before writing it: a write cut short (a full disk)
        # leaves part of a file in the store; remove it so it does not keep the disk full.
        with contextlib.suppress(Exception):
            for meta in get_all_artifact_meta(trial):
                if meta.artifact_id not in before:
                    with contextlib.suppress(ArtifactNotFound, OSError):
                        store.remove(meta.artifact_id)
        raise
    record = ArtifactRecord(artifact_id, record_sha, size, describe_store(store))
    trial.set_user_attr(ARTIFACT_ATTR, record.to_dict())
    return record


def download_weights(record: ArtifactRecord, store: Any, folder: Path, *,
                     trial: int) -> Path | None:
    """Copy the artifact into ``folder`` and check its size and SHA-256; ``None`` if absent.

    Raises:
        ExportError: The store holds something else under the id (another size or hash).
    """
    target = folder / f"trial_{trial}.safetensors"
    digest, size = hashlib.sha256(), 0
    try:
        reader = store.open_reader(record.id)
    except (ArtifactNotFound, FileNotFoundError):
        return None
    where = f"artifact {record.id} of trial {trial} in {describe_store(store) or store!r}"
    with contextlib.closing(reader), open(target, "wb") as out:
        while True:  # never more than the recorded size: a store cannot fill the disk
            chunk = reader.read(min(_CHUNK, record.size + 1 - size))
            if not chunk:
                break
            size += len(chunk)
            digest.update(chunk)
            out.write(chunk)
            if size > record.size:
                break
    if size != record.size or digest.hexdigest() != record.sha256:
        target.unlink()
        got = f"more than {record.size}" if size > record.size else str(size)
        raise ExportError(
            f"{where} is damaged: the storage records {record.size} bytes with SHA-256 "
            f"{record.sha256[:12]}..., the store holds {got} bytes"
            + ("" if size != record.size else f" with SHA-256 {digest.hexdigest()[:12]}...")
            + "; restore the artifact store or retrain (delete the trial's artifact)")
    return target


def fetch_weights(trial: FrozenTrial, folder: Path, *, store: Any = None,
                  out: str | Path | None = None) -> tuple[Path | None, list[str]]:
    """Download ``trial``'s weights artifact into ``folder``: ``(path or None, where looked)``.

    ``store`` (a store or a spec for :func:`open_artifact_store`) overrides the recorded
    one; without it the recorded store is tried, then ``out/artifacts`` (a search folder
    copied to another machine).

    Raises:
        ExportError: A damaged record or artifact.
        MTLSearchError: ``store`` names a folder that does not exist.
    """
    record = ArtifactRecord.from_trial(trial)
    if record is None:
        return None, []
    looked: list[str] = []
    if store is not None:
        candidates = [open_artifact_store(store, create=False)]
    else:
        candidates = []
        for spec in (record.store, Path(out) / DEFAULT_FOLDER if out else None):
            if spec is None:
                continue
            if str(spec).startswith("file:") and not Path(str(spec)[5:]).is_dir():
                looked.append(f"artifact {record.id}: store folder {str(spec)[5:]} not found")
                continue
            try:
                candidates.append(open_artifact_store(spec, create=False))
            except MTLSearchError as exc:
                looked.append(f"artifact {record.id}: {exc}")
        if record.store is None and not candidates:
            looked.append(f"artifact {record.id} went to a store the storage cannot name: "
                          "pass artifact_store=")
    for candidate in candidates:
        path = download_weights(record, candidate, folder, trial=trial.number)
        if path is not None:
            return path, looked
        looked.append(f"artifact {record.id}: not in {describe_store(candidate) or candidate!r}")
    return None, looked


@contextlib.contextmanager
def scratch_folder() -> Any:
    """A temporary folder for downloaded weights, removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="mtlsearch-weights-") as name:
        yield Path(name)
