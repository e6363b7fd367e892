"""ModelCatalog: every model of the repository a server serves, by name.

Each model folder (`<repository>/<name>/<version>/`) gets its own registry of loaded versions and
its own reloader, so one model's versions load, refuse and reload without touching another's.
A call names its model (`model_name`; OIP: the model in its path); an empty name means the
default model: `--model-name`, or the repository's only model. Model folders are found at
start-up; a model folder added later is served after a restart.

At start-up the default model must load (as a single model had to); another model that has no
version that loads is refused alone: logged, counted in cvae_model_refused_info, its health
NOT_SERVING, its calls UNAVAILABLE until a version of it loads.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path

from modelrepo import ModelRepository, check_name
from service.errors import ModelLoadError, ModelNotFound, NotReady, brief
from service.metrics import ServiceMetrics
from service.registry import ModelRegistry
from service.reload import ModelReloader
from service.runtime import ModelRuntime, RuntimeOptions

_LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServedModel:
    name: str
    registry: ModelRegistry
    reloader: ModelReloader


class ModelCatalog:
    """The served models; `load` fills it once, at start-up."""

    def __init__(
        self,
        root: Path,
        default_name: str,
        keep: int,
        options: RuntimeOptions,
        metrics: ServiceMetrics,
        load_timeout: float,
    ) -> None:
        self._root = root
        self._default_name = default_name
        self._keep = keep
        self._options = options
        self._metrics = metrics
        self._load_timeout = load_timeout
        self._models: dict[str, ServedModel] = {}
        self._default = default_name
        self._loaded = False  # every model has been tried (start-up is over)

    @property
    def default(self) -> str:
        """The model a call that names none gets."""
        return self._default

    @property
    def names(self) -> tuple[str, ...]:
        """Every served model's name, sorted (also those with no version loaded)."""
        return tuple(sorted(self._models))

    def loaded_names(self) -> tuple[str, ...]:
        """The models with at least one version loaded."""
        return tuple(name for name in self.names if self._models[name].registry.versions)

    def registry(self, name: str = "") -> ModelRegistry:
        """The registry of model `name` ("" the default); NOT_FOUND naming the served ones."""
        model = self._models.get(name or self._default)
        if model is None:
            if not self._loaded:
                raise NotReady("no model version is loaded yet; retry shortly")
            raise ModelNotFound(
                f"model_name: {brief(name)} is not served here; models: "
                + ", ".join(self.names or (self._default,))
                + f" (or empty for {self._default})"
            )
        return model.registry

    def resolve(self, name: str, version: str) -> ModelRuntime:
        """The runtime of model `name` ("" the default) at `version` ("" its newest)."""
        return self.registry(name).resolve(version)

    def newest(self, name: str = "") -> ModelRuntime | None:
        return self.registry(name).newest

    def check(self) -> None:
        """The repository lists, and the default model exists with a version folder
        (ModelLoadError otherwise)."""
        self._default = self._default_model(self._model_names())
        ModelRepository(self._root, self._default).newest()

    async def load(self) -> ModelRuntime:
        """Load every model's newest versions; the default model's runtime.

        ModelLoadError when the default model has no version that loads; other models that
        have none are refused alone (logged) and stay unserved.
        """
        names = self._model_names()
        self._default = self._default_model(names)
        # The default model first: its failure ends start-up before the others cost anything.
        default: ModelRuntime | None = None
        for name in sorted(names, key=lambda n: n != self._default):
            reloader = ModelReloader(
                ModelRepository(self._root, name),
                ModelRegistry(keep=self._keep),
                self._options,
                self._metrics,
                self._load_timeout,
            )
            self._models[name] = ServedModel(name, reloader.registry, reloader)
            required = name == self._default
            try:
                runtime = await reloader.load_initial(required=required)
            except ModelLoadError:
                del self._models[name]
                raise
            if runtime is None:
                _LOGGER.error("model %s is not served: none of its versions loads", name)
            elif required:
                default = runtime
        assert default is not None
        self._loaded = True
        return default

    def trigger(self) -> None:
        """Scan every model now (SIGHUP)."""
        for model in self._models.values():
            model.reloader.trigger()

    async def watch(self, interval: float) -> None:
        """Every model's reloader, until cancelled."""
        await asyncio.gather(*(m.reloader.watch(interval) for m in self._models.values()))

    def _model_names(self) -> list[str]:
        names = []
        for name in ModelRepository(self._root).model_names():
            try:
                names.append(check_name(name))
            except ModelLoadError as error:
                _LOGGER.warning("ignoring a folder of the model repository: %s", error)
        if not names:
            raise ModelLoadError(f"{self._root}: model repository holds no model folder")
        return names

    def _default_model(self, names: list[str]) -> str:
        if self._default_name:
            if self._default_name not in names:
                raise ModelLoadError(
                    f"{self._root / self._default_name}: model folder does not exist "
                    f"(--model-name; models here: {', '.join(names)})"
                )
            return self._default_name
        if len(names) > 1:
            raise ModelLoadError(
                f"{self._root}: several models ({', '.join(names)}); pass --model-name to say "
                "which one calls that name none get"
            )
        return names[0]
