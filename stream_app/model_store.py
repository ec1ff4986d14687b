"""Find, load and check a model manifest before it may score anything."""

from __future__ import annotations

from pathlib import Path

from pydantic import SecretStr, ValidationError

from schemas import ManifestError, ModelManifest

__all__ = ["load_manifest", "parse_manifest", "resolve_manifest_path"]


def resolve_manifest_path(path: Path) -> Path:
    """Accept manifest.json, a model directory, or a models root holding a LATEST file."""
    if path.is_file():
        return path
    if (path / "manifest.json").is_file():
        return path / "manifest.json"
    latest = path / "LATEST"
    if latest.is_file():
        candidate = path / latest.read_text().strip() / "manifest.json"
        if candidate.is_file():
            return candidate
        raise ManifestError(f"{latest} names a model that has no manifest.json: {candidate}")
    raise ManifestError(f"no manifest at {path} (expected manifest.json or a LATEST file)")


def parse_manifest(raw: bytes | str, signing_key: SecretStr | None, source: str) -> ModelManifest:
    """Validate manifest JSON; with a signing key, refuse unsigned or wrongly signed ones."""
    try:
        manifest = ModelManifest.model_validate_json(raw)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"]) or "manifest"
        raise ManifestError(f"{source}: invalid manifest ({where}: {first['msg']})") from None
    if signing_key is not None:
        manifest.verify(signing_key.get_secret_value().encode())
    return manifest


def _verify_hint(manifest_path: Path, exc: ManifestError) -> ManifestError:
    """A refused signature of a file on disk, with the command that signs it."""
    return ManifestError(
        f"{manifest_path}: {exc} while SEGSTREAM_MODEL_SIGNING_KEY is set; sign it with "
        f"segstream sign {manifest_path.parent}"
    )


def load_manifest(path: Path, signing_key: SecretStr | None = None) -> ModelManifest:
    """Load and check the manifest a path points to."""
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
            raise _verify_hint(manifest_path, exc) from None
    return manifest
