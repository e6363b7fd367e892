"""From a training checkpoint to a published model version: ONNX graph, metadata, model.json."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from export.onnx_decoder import (
    INPUT_LABEL,
    INPUT_LATENT,
    OPSET,
    OUTPUT_IMAGE,
    check_graph,
    check_parity,
    export_decoder,
    opset_of,
)
from export.onnx_encoder import (
    ENCODER_FILE,
    INPUT_IMAGE,
    INPUT_NOISE,
    OUTPUT_LATENT,
    OUTPUT_LOG_DENSITY,
    OUTPUT_LOG_VARIANCE,
    OUTPUT_MEAN,
    POSTERIOR_FILE,
    check_encoder_parity,
    check_posterior_parity,
    export_encoder,
    export_posterior,
)
from export.onnx_encoder import INPUT_LABEL as ENCODER_INPUT_LABEL
from modelrepo import (
    DECODER,
    DECODER_FILE,
    ENCODER,
    POSTERIOR,
    GraphSpec,
    model_document,
    publish_version,
    utc_timestamp,
)
from training.checkpoint import load_checkpoint
from training.config import TrainConfig, config_to_dict
from training.data import file_sha256
from training.model import CVAE

_LOGGER = logging.getLogger(__name__)

# model.json keys left out of the ONNX metadata_props: a file cannot hold its own hash
_NOT_IN_METADATA = ("onnx_sha256",)


class MetricsError(ValueError):
    """A metrics file that cannot be read or that belongs to another checkpoint."""


def read_metrics(path: Path | None, checkpoint: Path) -> dict[str, Any]:
    """The evaluator's metrics.json; refused if it names a different checkpoint file hash."""
    if path is None:
        _LOGGER.warning("no --metrics given: model.json will carry no evaluation metrics")
        return {}
    try:
        metrics = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise MetricsError(f"cannot read metrics {path}: {error}") from error
    if not isinstance(metrics, dict):
        raise MetricsError(f"{path} does not hold a JSON object")
    recorded = metrics.get("checkpoint_sha256")
    if recorded is not None and recorded != file_sha256(checkpoint):
        raise MetricsError(
            f"{path} scores a checkpoint with sha256 {recorded}, not {checkpoint}; "
            "evaluate this checkpoint first"
        )
    # the training config is model.json's own top-level key; do not repeat it inside metrics
    return {key: value for key, value in metrics.items() if key != "training_config"}


def describe(
    model: CVAE,
    train_config: TrainConfig,
    *,
    name: str,
    version: int,
    opset: int,
    metrics: dict[str, Any],
    created_at: str,
    onnx_sha256: str = "",
    encoder_sha256: str | None = None,
    posterior_sha256: str | None = None,
) -> dict[str, Any]:
    """model.json of the exported decoder (the hash is added once the ONNX file is final) and,
    given their hashes, of the encoder and posterior graphs beside it."""
    config = model.config
    decoder = GraphSpec(
        role=DECODER,
        file=DECODER_FILE,
        sha256=onnx_sha256,
        inputs={"latent": INPUT_LATENT, "label": INPUT_LABEL},
        outputs={"image": OUTPUT_IMAGE},
    )
    encoder = None
    if encoder_sha256 is not None:
        encoder = GraphSpec(
            role=ENCODER,
            file=ENCODER_FILE,
            sha256=encoder_sha256,
            inputs={"image": INPUT_IMAGE, "label": ENCODER_INPUT_LABEL},
            outputs={"mean": OUTPUT_MEAN, "log_variance": OUTPUT_LOG_VARIANCE},
        )
    posterior = None
    if posterior_sha256 is not None:
        posterior = GraphSpec(
            role=POSTERIOR,
            file=POSTERIOR_FILE,
            sha256=posterior_sha256,
            inputs={"image": INPUT_IMAGE, "label": ENCODER_INPUT_LABEL, "noise": INPUT_NOISE},
            outputs={"latent": OUTPUT_LATENT, "log_density": OUTPUT_LOG_DENSITY},
        )
    return model_document(
        name=name,
        version=version,
        latent_dim=config.latent_dim,
        num_classes=config.num_classes,
        class_names=config.class_names,
        image_shape=config.image_shape,
        decoder=decoder,
        opset=opset,
        training_config=config_to_dict(train_config),
        metrics=metrics,
        created_at=created_at,
        encoder=encoder,
        posterior=posterior,
    )


def metadata_props(description: dict[str, Any]) -> dict[str, str]:
    """The description as ONNX metadata: strings as they are, everything else as JSON."""
    return {
        key: value if isinstance(value, str) else json.dumps(value, sort_keys=True)
        for key, value in description.items()
        if key not in _NOT_IN_METADATA
    }


def export_checkpoint(
    checkpoint: Path,
    repository: Path,
    *,
    name: str = "cvae-mnist",
    version: int | None = None,
    metrics_path: Path | None = None,
    opset: int = OPSET,
    with_encoder: bool = True,
) -> Path:
    """Export the checkpoint's served decoder (and, `with_encoder`, its encoder and, with a
    flow prior, its posterior sampler) as models/<name>/<version>/; returns that folder."""
    model, train_config, _extra = load_checkpoint(checkpoint)
    metrics = read_metrics(metrics_path, checkpoint)
    config = model.config
    latent_dim = config.latent_dim
    decoder = model.served_decoder()

    def write_files(folder: Path, chosen_version: int) -> dict[str, Any]:
        encoder_sha256 = posterior_sha256 = None
        rng = np.random.default_rng(0)
        images = rng.random((64, *config.image_shape), dtype=np.float32)
        labels = (np.arange(64) % config.num_classes).astype(np.int64)
        posterior = model.served_posterior() if with_encoder else None
        if posterior is not None:
            posterior_path = folder / POSTERIOR_FILE
            _LOGGER.info("exporting the posterior sampler to ONNX (opset %d)", opset)
            export_posterior(posterior, config.image_shape, latent_dim, posterior_path, opset=opset)
            noise = rng.standard_normal((64, latent_dim), dtype=np.float32)
            check_posterior_parity(posterior, posterior_path, images, labels, noise)
            posterior_sha256 = file_sha256(posterior_path)
        if with_encoder:
            encoder_path = folder / ENCODER_FILE
            _LOGGER.info("exporting the encoder to ONNX (opset %d)", opset)
            encoder = model.served_encoder()
            export_encoder(encoder, config.image_shape, latent_dim, encoder_path, opset=opset)
            check_encoder_parity(encoder, encoder_path, images, labels)
            encoder_sha256 = file_sha256(encoder_path)
        onnx_path = folder / DECODER_FILE
        _LOGGER.info("exporting the decoder to ONNX (opset %d)", opset)
        export_decoder(decoder, latent_dim, onnx_path, opset=opset)
        graph = onnx.load(str(onnx_path))
        description = describe(
            model,
            train_config,
            name=name,
            version=chosen_version,
            opset=opset_of(graph),
            metrics=metrics,
            created_at=utc_timestamp(),
            encoder_sha256=encoder_sha256,
            posterior_sha256=posterior_sha256,
        )
        del graph.metadata_props[:]
        for key, value in metadata_props(description).items():
            graph.metadata_props.add(key=key, value=value)
        check_graph(graph, latent_dim)
        onnx.save(graph, str(onnx_path))
        check_parity(decoder, onnx_path, latent_dim, config.num_classes)
        description["onnx_sha256"] = file_sha256(onnx_path)  # the key keeps its place
        return description

    return publish_version(repository, name, version, write_files)
