"""A model on disk and on the wire: find its manifest, parse it, check its signature.

The one loader every reader uses (training, `segstream score`, the worker's file fallback,
the model topic), so a manifest is accepted or refused for the same reasons everywhere.
A models root holds one folder per version and a LATEST file naming the newest.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import SecretStr, ValidationError

from schemas.errors import ManifestError
from schemas.manifest import ModelManifest

__all__ = [
    "MANIFEST_FILE",
    "load_manifest",
    "model_directory",
    "parse_manifest",
    "resolve_manifest_path",
]

MANIFEST_FILE = "manifest.json"


def resolve_manifest_path(path: Path) -> Path:
    """The manifest.json meant by a manifest file, a model directory, or a models root."""
    if path.is_file():
        return path
    if (path / MANIFEST_FILE).is_file():
        return path / MANIFEST_FILE
    latest = path / "LATEST"
    if latest.is_file():
        candidate = path / latest.read_text().strip() / MANIFEST_FILE
        if candidate.is_file():
            return candidate
        raise ManifestError(f"{latest} names a model that has no {MANIFEST_FILE}: {candidate}")
    raise ManifestError(f"{path}: no model here (no {MANIFEST_FILE})")


def model_directory(path: Path) -> Path:
    """The model directory meant by a manifest file, a model directory, or a models root."""
    return resolve_manifest_path(path).parent


def parse_manifest(raw: bytes | str, signing_key: SecretStr | None, source: str) -> ModelManifest:
    """Validate manifest JSON; with a signing key, refuse unsigned or wrongly signed ones."""
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ManifestError(
                f"{source}: not a model manifest (not UTF-8 text at byte {exc.start})"
            ) from None
    try:
        manifest = ModelManifest.model_validate_json(raw)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"]) or "manifest"
        raise ManifestError(f"{source}: invalid manifest ({where}: {first['msg']})") from None
    if signing_key is not None:
        manifest.verify(signing_key.get_secret_value().encode())
    return manifest


def load_manifest(path: Path, signing_key: SecretStr | None = None) -> ModelManifest:
    """Load and check the manifest a path points to; with a key, only a manifest it signed."""
    manifest_path = resolve_manifest_path(path)
    try:
        raw = manifest_path.read_bytes()
    except OSError as exc:
        raise ManifestError(f"cannot read {manifest_path}: {exc.strerror}") from None
    manifest = parse_manifest(raw, None, str(manifest_path))
    if signing_key is not None:
        try:
            manifest.verify(signing_key.get_secret_value().encode())
        except ManifestError as exc:
            raise ManifestError(
                f"{manifest_path}: {exc} while SEGSTREAM_MODEL_SIGNING_KEY is set; sign it "
                f"with segstream sign {manifest_path.parent}"
            ) from None
    return manifest
