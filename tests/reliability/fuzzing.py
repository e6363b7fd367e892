"""Fuzz a running server with hypothesis: malformed requests and raw bytes; the rule for answers.

`run_campaign(server, structured, raw)` sends `structured` random GenerateRequest/GetModelInfo
messages (through the stubs) and `raw` random byte strings (through a generic channel with no
serializer), checks every answer as it comes, and returns a `FuzzTally` of what it saw. The rule
(`check_error`): an answer is OK, or a client-error code whose message begins with the request
field at fault; never INTERNAL, UNKNOWN or any other code. `make test` runs a small campaign
(tests/reliability/test_fuzz.py), `make soak` a big one (tests/soak/test_fuzz_soak.py).
"""

from __future__ import annotations

import re
import struct
from collections import Counter
from dataclasses import dataclass, field

import grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cvae.v1 import generator_pb2 as pb
from tests.service.serverproc import ServerProcess

CLIENT_ERRORS = frozenset(
    {
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
    }
)
FIELDS = (
    "request",
    "labels",
    "latents",
    "temperature",
    "encoding",
    "model_version",
    "model_name",
    "chunk_size",
)
# "labels[3]: ...", "latents.shape: ...", "request: not a valid ..." and so on.
_NAMES_A_FIELD = re.compile(rf"^({'|'.join(FIELDS)})(\[\d+\]|\.[a-z_]+)?: ")
_METHODS = ("Generate", "GenerateStream", "GetModelInfo")
_LATENT_DIM = 16  # of tests/service/modelrepo.DecoderSpec, the model these campaigns run on
_STREAM_CHUNKS_READ = 2  # a fuzzed stream may ask for millions of images: read two chunks, cancel


@dataclass
class FuzzTally:
    """What a campaign sent and what came back."""

    cases: Counter[str] = field(default_factory=Counter)  # by kind: structured, raw
    codes: Counter[str] = field(default_factory=Counter)  # by status code name
    fields: Counter[str] = field(default_factory=Counter)  # field named by each refusal
    failures: list[str] = field(default_factory=list)  # answers that broke the rule

    @property
    def total(self) -> int:
        return sum(self.cases.values())

    def as_dict(self) -> dict[str, object]:
        return {
            "cases": dict(self.cases),
            "total": self.total,
            "codes": dict(self.codes),
            "fields": dict(self.fields),
            "failures": list(self.failures),
        }


def check_error(code: grpc.StatusCode, details: str) -> str | None:
    """The field a refusal names, or None when the refusal breaks the rule."""
    if code not in CLIENT_ERRORS:
        return None
    match = _NAMES_A_FIELD.match(details or "")
    return match.group(1) if match else None


# --- structured requests -------------------------------------------------------------------

_label_values = st.one_of(
    st.integers(0, 9),
    st.sampled_from([-1, 10, 11, -(2**31), 2**31 - 1]),
    st.integers(-(2**31), 2**31 - 1),
)
_label_lists = st.one_of(
    st.lists(_label_values, max_size=12),  # empty, negative, huge, valid
    st.builds(lambda count, label: [label] * count,  # huge image counts
              st.sampled_from([1024, 1025, 4096, 100_000, 2_000_001]), st.integers(0, 9)),
)  # fmt: skip
_special_floats = st.sampled_from(
    [float("nan"), float("inf"), float("-inf"), -0.0, 1e-45, 3.4e38, -3.4e38]
)


def _float_bytes(values: list[float]) -> bytes:
    return struct.pack(f"<{len(values)}f", *values)


@st.composite
def _latents(draw: st.DrawFn, count: int) -> pb.Tensor:
    """Every wrong (and some right) shape, dtype, byte length and value of the latents tensor."""
    shape = draw(
        st.one_of(
            st.just([count, _LATENT_DIM]),
            st.lists(st.integers(-3, 2**40), max_size=4),
            st.just([1] * 10_000),  # echoed in full, this would not fit a status message
            st.sampled_from([[], [count], [_LATENT_DIM, count], [count, _LATENT_DIM, 1],
                             [count + 1, _LATENT_DIM], [count, _LATENT_DIM - 1], [-count, -16],
                             [2**62, 2**62]]),
        )
    )  # fmt: skip
    dtype = draw(st.sampled_from(["float32", "float32", "float64", "float16", "uint8", "int32",
                                  "", "f4", "<f4", "FLOAT32", "float32\0",
                                  "f" * 20_000]))  # fmt: skip
    right_size = count * _LATENT_DIM
    values = draw(
        st.lists(
            st.one_of(st.floats(width=32), _special_floats),
            min_size=right_size,
            max_size=right_size,
        )
        if right_size <= 64
        else st.just([0.5] * right_size)
    )
    data = draw(
        st.one_of(
            st.just(_float_bytes(values)),  # right length (values may be NaN/Inf)
            st.binary(max_size=300),  # any length
            st.sampled_from([b"", b"\0", _float_bytes(values)[:-1], _float_bytes(values) + b"\0"]),
        )
    )
    return pb.Tensor(shape=shape, dtype=dtype, data=data)


@st.composite
def generate_requests(draw: st.DrawFn) -> pb.GenerateRequest:
    labels = draw(_label_lists)
    request = pb.GenerateRequest(labels=labels)
    if draw(st.booleans()):
        request.latents.CopyFrom(draw(_latents(min(len(labels), 5000))))
    if draw(st.booleans()):
        request.seed = draw(st.integers(0, 2**64 - 1))
    request.temperature = draw(
        st.one_of(
            st.floats(0, 10, width=32),
            st.floats(width=32, allow_nan=True, allow_infinity=True),
            st.sampled_from([0.0, 10.0, 10.000001, -1e-38, 1e38, float("nan"), float("inf")]),
        )
    )
    encodings = st.sampled_from([0, 1, 2, 3, -1, 4, 2**31 - 1, -(2**31)])
    request.encoding = draw(encodings)  # type: ignore[assignment]  # unknown values too
    request.model_version = draw(
        st.one_of(
            st.sampled_from(["", "1", "2", "01", "-1", " 1", "1 ", "..", "../1", "\0", "latest"]),
            st.text(max_size=40),
            st.just("9" * 20_000),  # longer than HTTP/2's 16 KiB limit on a status message
        )
    )
    request.chunk_size = draw(st.sampled_from([0, 1, 7, 1024, 1025, 2**32 - 1]))
    request.omit_latents = draw(st.booleans())
    return request


_structured_cases = st.tuples(
    st.sampled_from(_METHODS),
    st.one_of(
        generate_requests(),
        st.builds(pb.GetModelInfoRequest, model_version=st.text(max_size=20)),
    ),
)

# --- raw bytes -----------------------------------------------------------------------------

_VALID = pb.GenerateRequest(labels=[1, 2, 3], seed=7, temperature=0.5).SerializeToString()


@st.composite
def _mutated(draw: st.DrawFn) -> bytes:
    """A valid request with bytes flipped, cut off, or junk inserted: near-valid garbage."""
    data = bytearray(_VALID)
    for _ in range(draw(st.integers(1, 4))):
        position = draw(st.integers(0, len(data)))
        action = draw(st.sampled_from(["flip", "cut", "insert"]))
        if action == "flip" and position < len(data):
            data[position] ^= draw(st.integers(1, 255))
        elif action == "cut":
            del data[position:]
        else:
            data[position:position] = draw(st.binary(min_size=1, max_size=8))
    return bytes(data)


_raw_bodies = st.one_of(
    st.binary(max_size=512),
    _mutated(),
    st.sampled_from([b"\xff" * 16, b"\x0a\xff\xff\xff\xff\x0f", b"\x08" * 100, b"\x80" * 64]),
)

# --- the campaign --------------------------------------------------------------------------


def _record_error(tally: FuzzTally, error: grpc.RpcError, case: str) -> None:
    code = error.code()
    tally.codes[code.name] += 1
    named = check_error(code, error.details() or "")
    if named is None:
        tally.failures.append(f"{code.name}: {error.details()!r} for {case}")
    else:
        tally.fields[named] += 1


def _call(channel: grpc.Channel, method: str, body: bytes) -> None:
    path = f"/cvae.v1.Generator/{method}"
    if method == "GenerateStream":
        stream = channel.unary_stream(path, None, None)(body, timeout=60)
        try:
            for count, _ in enumerate(stream, 1):
                if count >= _STREAM_CHUNKS_READ:
                    break
        finally:
            stream.cancel()
    else:
        channel.unary_unary(path, None, None)(body, timeout=60)


def _describe(message: pb.GenerateRequest | pb.GetModelInfoRequest) -> str:
    """A short account of a request: long label lists and tensor data summarised."""
    if isinstance(message, pb.GetModelInfoRequest):
        return f"GetModelInfoRequest(model_version={message.model_version!r})"
    labels = list(message.labels)
    shown = f"{labels[:4]}{'...' if len(labels) > 4 else ''} ({len(labels)} labels)"
    rest = pb.GenerateRequest()
    rest.CopyFrom(message)
    del rest.labels[:]
    if rest.HasField("latents"):
        rest.latents.data = rest.latents.data[:16]
    return f"labels={shown} {rest}".replace("\n", " ")[:400]


def run_campaign(server: ServerProcess, structured: int, raw: int) -> FuzzTally:
    """Send `structured` + `raw` hypothesis cases to `server`; every answer checked as it comes."""
    tally = FuzzTally()
    channel = server.channel()
    common = {"deadline": None, "database": None, "suppress_health_check": list(HealthCheck)}

    @settings(max_examples=max(structured, 1), **common)  # type: ignore[arg-type]
    @given(case=_structured_cases)
    def structured_case(case: tuple[str, pb.GenerateRequest | pb.GetModelInfoRequest]) -> None:
        method, request = case
        if isinstance(request, pb.GetModelInfoRequest):
            method = "GetModelInfo"
        tally.cases["structured"] += 1
        try:
            _call(channel, method, request.SerializeToString())
            tally.codes["OK"] += 1
        except grpc.RpcError as error:
            _record_error(tally, error, f"{method} {_describe(request)}")

    @settings(max_examples=max(raw, 1), **common)  # type: ignore[arg-type]
    @given(method=st.sampled_from(_METHODS), body=_raw_bodies)
    def raw_case(method: str, body: bytes) -> None:
        tally.cases["raw"] += 1
        try:
            _call(channel, method, body)
            tally.codes["OK"] += 1
        except grpc.RpcError as error:
            _record_error(tally, error, f"{method} raw {body[:80]!r}")

    if structured:
        structured_case()
    if raw:
        raw_case()
    return tally
