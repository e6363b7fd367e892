"""Encode, Reconstruct, Restyle and Score of cvae.v1.Generator: decode (image_codec), run
(encoding), encode the answer. Registered beside Generate by servicer.add_to_server; errors,
timing and per-method metrics go through the same `_Call` as Generate's.
"""

from __future__ import annotations

import asyncio

import grpc

from cvae.v1 import generator_pb2 as pb
from service import codec, image_codec
from service.catalog import ModelCatalog
from service.encoding import ImageEncoder, encoder_of
from service.generator import GeneratedImages, GenerationJob, PixelFormat
from service.metrics import ServiceMetrics
from service.servicer import InFlight, _Call, _deadline_of, _encode

_OFF_LOOP_ROWS = 64  # answers bigger than this are encoded off the event loop


class EncodingServicer:
    """The four RPCs that start from real images; they share the Generator's limits."""

    def __init__(
        self,
        catalog: ModelCatalog,
        encoder: ImageEncoder,
        metrics: ServiceMetrics,
        max_images_per_request: int,
        in_flight: InFlight,
    ) -> None:
        self._catalog = catalog
        self._encoder = encoder
        self._metrics = metrics
        self._max_images = max_images_per_request
        self.in_flight = in_flight

    async def Encode(
        self, data: bytes, context: grpc.aio.ServicerContext
    ) -> pb.EncodeResponse | None:
        async with _Call(self._metrics, self.in_flight, "Encode", context):
            deadline = _deadline_of(context)
            request = codec.parse(pb.EncodeRequest, data)
            runtime = self._catalog.resolve(request.model_name, request.model_version)
            encoder_of(runtime)
            job = image_codec.decode_encode(request, runtime.spec, self._max_images)
            assert job.labels is not None
            mean, log_variance = await self._encoder.encode(
                runtime, job.images, job.labels, deadline
            )
            return image_codec.encode_encoded(runtime.spec, mean, log_variance, job.labels)
        return None  # _Call has set the error status

    async def Reconstruct(
        self, data: bytes, context: grpc.aio.ServicerContext
    ) -> pb.GenerateResponse | None:
        async with _Call(self._metrics, self.in_flight, "Reconstruct", context):
            deadline = _deadline_of(context)
            request = codec.parse(pb.ReconstructRequest, data)
            runtime = self._catalog.resolve(request.model_name, request.model_version)
            encoder_of(runtime)
            job = image_codec.decode_reconstruct(request, runtime.spec, self._max_images)
            assert job.labels is not None
            result = await self._encoder.reconstruct(runtime, job.images, job.labels, deadline)
            return await self._answer(result, job.pixel_format, job.omit_latents)
        return None  # _Call has set the error status

    async def Restyle(
        self, data: bytes, context: grpc.aio.ServicerContext
    ) -> pb.GenerateResponse | None:
        async with _Call(self._metrics, self.in_flight, "Restyle", context):
            deadline = _deadline_of(context)
            request = codec.parse(pb.RestyleRequest, data)
            runtime = self._catalog.resolve(request.model_name, request.model_version)
            encoder_of(runtime)
            job = image_codec.decode_restyle(request, runtime.spec, self._max_images)
            assert job.labels is not None
            result = await self._encoder.restyle(
                runtime, job.images, job.labels, job.targets, deadline
            )
            return await self._answer(result, job.pixel_format, job.omit_latents)
        return None  # _Call has set the error status

    async def Score(
        self, data: bytes, context: grpc.aio.ServicerContext
    ) -> pb.ScoreResponse | None:
        async with _Call(self._metrics, self.in_flight, "Score", context):
            deadline = _deadline_of(context)
            request = codec.parse(pb.ScoreRequest, data)
            runtime = self._catalog.resolve(request.model_name, request.model_version)
            encoder_of(runtime)
            job = image_codec.decode_score(request, runtime.spec, self._max_images)
            scores = await self._encoder.score(runtime, job.images, job.samples, job.seed, deadline)
            answer = image_codec.encode_scores
            args = (runtime.spec, scores.log_likelihood, job.labels, scores.seed, scores.samples)
            if len(job.images) > _OFF_LOOP_ROWS:
                return await asyncio.get_running_loop().run_in_executor(None, answer, *args)
            return answer(*args)
        return None  # _Call has set the error status

    async def _answer(
        self, result: GeneratedImages, pixel_format: PixelFormat, omit_latents: bool
    ) -> pb.GenerateResponse:
        job = GenerationJob(
            labels=result.labels,
            latents=None,
            seed=None,
            temperature=1.0,
            pixel_format=pixel_format,
            chunk_size=len(result.labels),
            omit_latents=omit_latents,
        )
        response = await _encode(result, job)
        self._metrics.count_images(len(result.labels))
        return response


def handlers(servicer: EncodingServicer) -> dict[str, grpc.RpcMethodHandler]:
    """The method handlers, raw-bytes requests (parsed by the codec), for add_to_server."""
    unary = grpc.unary_unary_rpc_method_handler
    return {
        "Encode": unary(servicer.Encode, response_serializer=pb.EncodeResponse.SerializeToString),
        "Reconstruct": unary(
            servicer.Reconstruct, response_serializer=pb.GenerateResponse.SerializeToString
        ),
        "Restyle": unary(
            servicer.Restyle, response_serializer=pb.GenerateResponse.SerializeToString
        ),
        "Score": unary(servicer.Score, response_serializer=pb.ScoreResponse.SerializeToString),
    }
