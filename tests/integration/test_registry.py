"""The registry adapter against a real SQLite MLflow registry."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import MODEL, DemoHome
from rollout.demo.models import git_commit
from rollout.errors import RegistryError
from rollout.registry import DIGEST_TAG, MlflowRegistry, parse_ref, sha256_dir


def test_parse_ref_forms() -> None:
    assert parse_ref("3") == (None, "3")
    assert parse_ref("@challenger") == (None, "@challenger")
    assert parse_ref("models:/bc@prod") == ("bc", "@prod")
    assert parse_ref("models:/bc/7") == ("bc", "7")


def test_resolve_by_number_and_alias_reads_lineage(home: DemoHome) -> None:
    registry = MlflowRegistry(home.settings.registry_uri, home.settings.artifact_root)
    better = home.versions["better"]
    registry.set_alias(MODEL, "challenger", better)
    by_alias = registry.resolve(MODEL, "@challenger")
    by_number = registry.resolve(MODEL, better)
    assert by_alias.version == by_number.version == better
    assert "challenger" in by_alias.aliases
    assert by_alias.run_id and len(by_alias.run_id) == 32
    assert by_alias.git_commit == git_commit()
    assert by_alias.signature is not None
    assert "mean radius" in str(by_alias.signature["inputs"])


def test_digest_is_recorded_once_and_matches_the_directory(home: DemoHome, tmp_path: Path) -> None:
    registry = MlflowRegistry(home.settings.registry_uri, home.settings.artifact_root)
    version = home.versions["baseline"]
    recorded = registry.record_digest(MODEL, version)
    tag = registry.client.get_model_version(MODEL, version).tags[DIGEST_TAG]
    assert recorded == tag
    assert registry.verify_digest(MODEL, version) == recorded
    # Different versions are different artifacts.
    assert registry.record_digest(MODEL, home.versions["better"]) != recorded
    # The digest is sha256 over the files: changing one byte changes it.
    local = Path(
        registry.client.get_model_version_download_uri(MODEL, version).removeprefix("file://")
    )
    copy = tmp_path / "copy"
    shutil.copytree(local, copy)
    assert sha256_dir(copy) == recorded
    (copy / "MLmodel").write_text((copy / "MLmodel").read_text() + "\n# edited\n")
    assert sha256_dir(copy) != recorded


def test_tampered_digest_is_refused(home: DemoHome) -> None:
    registry = MlflowRegistry(home.settings.registry_uri, home.settings.artifact_root)
    version = home.versions["broken"]
    registry.client.set_model_version_tag(MODEL, version, DIGEST_TAG, "sha256:" + "0" * 64)
    with pytest.raises(RegistryError, match="changed since registration"):
        registry.verify_digest(MODEL, version)


def test_aliases_move(home: DemoHome) -> None:
    registry = MlflowRegistry(home.settings.registry_uri, home.settings.artifact_root)
    assert registry.alias_version(MODEL, "prod") is None
    registry.set_alias(MODEL, "prod", "1")
    registry.set_alias(MODEL, "prod", "2")
    assert registry.alias_version(MODEL, "prod") == "2"
    registry.delete_alias(MODEL, "prod")
    assert registry.alias_version(MODEL, "prod") is None


def test_unknown_versions_and_bad_refs_are_clear(home: DemoHome) -> None:
    registry = MlflowRegistry(home.settings.registry_uri, home.settings.artifact_root)
    with pytest.raises(RegistryError, match="not found"):
        registry.resolve(MODEL, "99")
    with pytest.raises(RegistryError, match="not found"):
        registry.resolve("no-such-model", "1")
    with pytest.raises(RegistryError, match="expected a number or '@alias'"):
        registry.resolve(MODEL, "latest")
    with pytest.raises(RegistryError, match="names model"):
        registry.resolve(MODEL, "models:/other@prod")


def test_loaded_model_predicts_like_the_trained_one(home: DemoHome) -> None:
    registry = MlflowRegistry(home.settings.registry_uri, home.settings.artifact_root)
    model = registry.load_model(MODEL, home.versions["better"])
    rows = home.data.serve_X.iloc[:20]
    predictions = np.asarray(model.predict(rows))
    assert predictions.shape == (20,)
    accuracy = float(np.mean(predictions == home.data.serve_y.iloc[:20].to_numpy()))
    assert accuracy >= 0.85
