from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Encoding(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ENCODING_UNSPECIFIED: _ClassVar[Encoding]
    FLOAT32: _ClassVar[Encoding]
    UINT8: _ClassVar[Encoding]
    PNG: _ClassVar[Encoding]
ENCODING_UNSPECIFIED: Encoding
FLOAT32: Encoding
UINT8: Encoding
PNG: Encoding

class Tensor(_message.Message):
    __slots__ = ("shape", "dtype", "data")
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    shape: _containers.RepeatedScalarFieldContainer[int]
    dtype: str
    data: bytes
    def __init__(self, shape: _Optional[_Iterable[int]] = ..., dtype: _Optional[str] = ..., data: _Optional[bytes] = ...) -> None: ...

class GenerateRequest(_message.Message):
    __slots__ = ("labels", "latents", "seed", "temperature", "encoding", "model_version", "chunk_size", "omit_latents", "model_name")
    LABELS_FIELD_NUMBER: _ClassVar[int]
    LATENTS_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    TEMPERATURE_FIELD_NUMBER: _ClassVar[int]
    ENCODING_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    CHUNK_SIZE_FIELD_NUMBER: _ClassVar[int]
    OMIT_LATENTS_FIELD_NUMBER: _ClassVar[int]
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    labels: _containers.RepeatedScalarFieldContainer[int]
    latents: Tensor
    seed: int
    temperature: float
    encoding: Encoding
    model_version: str
    chunk_size: int
    omit_latents: bool
    model_name: str
    def __init__(self, labels: _Optional[_Iterable[int]] = ..., latents: _Optional[_Union[Tensor, _Mapping]] = ..., seed: _Optional[int] = ..., temperature: _Optional[float] = ..., encoding: _Optional[_Union[Encoding, str]] = ..., model_version: _Optional[str] = ..., chunk_size: _Optional[int] = ..., omit_latents: _Optional[bool] = ..., model_name: _Optional[str] = ...) -> None: ...

class GenerateResponse(_message.Message):
    __slots__ = ("images", "png", "labels", "latents", "model_name", "model_version", "offset", "seed")
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    PNG_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    LATENTS_FIELD_NUMBER: _ClassVar[int]
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    images: Tensor
    png: _containers.RepeatedScalarFieldContainer[bytes]
    labels: _containers.RepeatedScalarFieldContainer[int]
    latents: Tensor
    model_name: str
    model_version: str
    offset: int
    seed: int
    def __init__(self, images: _Optional[_Union[Tensor, _Mapping]] = ..., png: _Optional[_Iterable[bytes]] = ..., labels: _Optional[_Iterable[int]] = ..., latents: _Optional[_Union[Tensor, _Mapping]] = ..., model_name: _Optional[str] = ..., model_version: _Optional[str] = ..., offset: _Optional[int] = ..., seed: _Optional[int] = ...) -> None: ...

class GetModelInfoRequest(_message.Message):
    __slots__ = ("model_version", "model_name")
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    model_version: str
    model_name: str
    def __init__(self, model_version: _Optional[str] = ..., model_name: _Optional[str] = ...) -> None: ...

class Metric(_message.Message):
    __slots__ = ("name", "value")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    name: str
    value: float
    def __init__(self, name: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...

class ModelInfo(_message.Message):
    __slots__ = ("name", "version", "num_classes", "latent_dim", "image_shape", "class_names", "max_images_per_request", "metrics", "available_versions", "max_images_per_stream", "has_encoder", "available_models", "default_model")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    NUM_CLASSES_FIELD_NUMBER: _ClassVar[int]
    LATENT_DIM_FIELD_NUMBER: _ClassVar[int]
    IMAGE_SHAPE_FIELD_NUMBER: _ClassVar[int]
    CLASS_NAMES_FIELD_NUMBER: _ClassVar[int]
    MAX_IMAGES_PER_REQUEST_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    AVAILABLE_VERSIONS_FIELD_NUMBER: _ClassVar[int]
    MAX_IMAGES_PER_STREAM_FIELD_NUMBER: _ClassVar[int]
    HAS_ENCODER_FIELD_NUMBER: _ClassVar[int]
    AVAILABLE_MODELS_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_MODEL_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: str
    num_classes: int
    latent_dim: int
    image_shape: _containers.RepeatedScalarFieldContainer[int]
    class_names: _containers.RepeatedScalarFieldContainer[str]
    max_images_per_request: int
    metrics: _containers.RepeatedCompositeFieldContainer[Metric]
    available_versions: _containers.RepeatedScalarFieldContainer[str]
    max_images_per_stream: int
    has_encoder: bool
    available_models: _containers.RepeatedScalarFieldContainer[str]
    default_model: str
    def __init__(self, name: _Optional[str] = ..., version: _Optional[str] = ..., num_classes: _Optional[int] = ..., latent_dim: _Optional[int] = ..., image_shape: _Optional[_Iterable[int]] = ..., class_names: _Optional[_Iterable[str]] = ..., max_images_per_request: _Optional[int] = ..., metrics: _Optional[_Iterable[_Union[Metric, _Mapping]]] = ..., available_versions: _Optional[_Iterable[str]] = ..., max_images_per_stream: _Optional[int] = ..., has_encoder: _Optional[bool] = ..., available_models: _Optional[_Iterable[str]] = ..., default_model: _Optional[str] = ...) -> None: ...

class EncodeRequest(_message.Message):
    __slots__ = ("images", "png", "labels", "model_version", "model_name")
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    PNG_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    images: Tensor
    png: _containers.RepeatedScalarFieldContainer[bytes]
    labels: _containers.RepeatedScalarFieldContainer[int]
    model_version: str
    model_name: str
    def __init__(self, images: _Optional[_Union[Tensor, _Mapping]] = ..., png: _Optional[_Iterable[bytes]] = ..., labels: _Optional[_Iterable[int]] = ..., model_version: _Optional[str] = ..., model_name: _Optional[str] = ...) -> None: ...

class EncodeResponse(_message.Message):
    __slots__ = ("mean", "log_variance", "labels", "model_name", "model_version")
    MEAN_FIELD_NUMBER: _ClassVar[int]
    LOG_VARIANCE_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    mean: Tensor
    log_variance: Tensor
    labels: _containers.RepeatedScalarFieldContainer[int]
    model_name: str
    model_version: str
    def __init__(self, mean: _Optional[_Union[Tensor, _Mapping]] = ..., log_variance: _Optional[_Union[Tensor, _Mapping]] = ..., labels: _Optional[_Iterable[int]] = ..., model_name: _Optional[str] = ..., model_version: _Optional[str] = ...) -> None: ...

class ReconstructRequest(_message.Message):
    __slots__ = ("images", "png", "labels", "model_version", "encoding", "omit_latents", "model_name")
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    PNG_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    ENCODING_FIELD_NUMBER: _ClassVar[int]
    OMIT_LATENTS_FIELD_NUMBER: _ClassVar[int]
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    images: Tensor
    png: _containers.RepeatedScalarFieldContainer[bytes]
    labels: _containers.RepeatedScalarFieldContainer[int]
    model_version: str
    encoding: Encoding
    omit_latents: bool
    model_name: str
    def __init__(self, images: _Optional[_Union[Tensor, _Mapping]] = ..., png: _Optional[_Iterable[bytes]] = ..., labels: _Optional[_Iterable[int]] = ..., model_version: _Optional[str] = ..., encoding: _Optional[_Union[Encoding, str]] = ..., omit_latents: _Optional[bool] = ..., model_name: _Optional[str] = ...) -> None: ...

class RestyleRequest(_message.Message):
    __slots__ = ("images", "png", "labels", "target_labels", "model_version", "encoding", "omit_latents", "model_name")
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    PNG_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    TARGET_LABELS_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    ENCODING_FIELD_NUMBER: _ClassVar[int]
    OMIT_LATENTS_FIELD_NUMBER: _ClassVar[int]
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    images: Tensor
    png: _containers.RepeatedScalarFieldContainer[bytes]
    labels: _containers.RepeatedScalarFieldContainer[int]
    target_labels: _containers.RepeatedScalarFieldContainer[int]
    model_version: str
    encoding: Encoding
    omit_latents: bool
    model_name: str
    def __init__(self, images: _Optional[_Union[Tensor, _Mapping]] = ..., png: _Optional[_Iterable[bytes]] = ..., labels: _Optional[_Iterable[int]] = ..., target_labels: _Optional[_Iterable[int]] = ..., model_version: _Optional[str] = ..., encoding: _Optional[_Union[Encoding, str]] = ..., omit_latents: _Optional[bool] = ..., model_name: _Optional[str] = ...) -> None: ...

class ScoreRequest(_message.Message):
    __slots__ = ("images", "png", "labels", "samples", "seed", "model_version", "model_name")
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    PNG_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    images: Tensor
    png: _containers.RepeatedScalarFieldContainer[bytes]
    labels: _containers.RepeatedScalarFieldContainer[int]
    samples: int
    seed: int
    model_version: str
    model_name: str
    def __init__(self, images: _Optional[_Union[Tensor, _Mapping]] = ..., png: _Optional[_Iterable[bytes]] = ..., labels: _Optional[_Iterable[int]] = ..., samples: _Optional[int] = ..., seed: _Optional[int] = ..., model_version: _Optional[str] = ..., model_name: _Optional[str] = ...) -> None: ...

class ScoreResponse(_message.Message):
    __slots__ = ("log_likelihood", "label_probabilities", "predicted_labels", "label_log_likelihood", "model_name", "model_version", "seed", "samples")
    LOG_LIKELIHOOD_FIELD_NUMBER: _ClassVar[int]
    LABEL_PROBABILITIES_FIELD_NUMBER: _ClassVar[int]
    PREDICTED_LABELS_FIELD_NUMBER: _ClassVar[int]
    LABEL_LOG_LIKELIHOOD_FIELD_NUMBER: _ClassVar[int]
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    log_likelihood: Tensor
    label_probabilities: Tensor
    predicted_labels: _containers.RepeatedScalarFieldContainer[int]
    label_log_likelihood: _containers.RepeatedScalarFieldContainer[float]
    model_name: str
    model_version: str
    seed: int
    samples: int
    def __init__(self, log_likelihood: _Optional[_Union[Tensor, _Mapping]] = ..., label_probabilities: _Optional[_Union[Tensor, _Mapping]] = ..., predicted_labels: _Optional[_Iterable[int]] = ..., label_log_likelihood: _Optional[_Iterable[float]] = ..., model_name: _Optional[str] = ..., model_version: _Optional[str] = ..., seed: _Optional[int] = ..., samples: _Optional[int] = ...) -> None: ...
