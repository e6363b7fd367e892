"""ServiceSettings: flags beat CVAE_* variables beat defaults; bad values name flag and variable."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from service.settings import ServiceSettings, SettingsError, add_arguments, from_sources


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(list(argv))


def test_defaults_are_valid_and_match_the_documented_ports() -> None:
    settings = from_sources(_parse(), environ={})
    assert settings == ServiceSettings()
    assert (settings.port, settings.metrics_port) == (50051, 9464)
    assert settings.model_repository == Path("models")
    assert settings.batching is True


def test_every_field_has_a_flag_and_an_environment_variable() -> None:
    help_text = argparse.ArgumentParser()
    add_arguments(help_text)
    text = help_text.format_help()
    for flag in (
        "--model-repository", "--host", "--port", "--metrics-port", "--max-batch",
        "--max-delay-ms", "--queue-size", "--max-images-per-request", "--grace-period-s",
        "--intra-op-threads", "--reload-interval-s", "--log-format", "--tls-cert", "--tls-key",
        "--tls-client-ca", "--workers",
    ):  # fmt: skip
        assert flag in text
        assert "CVAE_" + flag[2:].upper().replace("-", "_") in text


def test_environment_fills_what_flags_leave_out() -> None:
    environ = {"CVAE_PORT": "6000", "CVAE_MAX_DELAY_MS": "0.5", "CVAE_BATCHING": "off"}
    settings = from_sources(_parse(), environ=environ)
    assert settings.port == 6000
    assert settings.max_delay_ms == 0.5
    assert settings.batching is False


def test_workers_default_to_one_process_and_come_from_the_environment() -> None:
    assert from_sources(_parse(), environ={}).workers == 1
    assert from_sources(_parse(), environ={"CVAE_WORKERS": "3"}).workers == 3
    assert from_sources(_parse("--workers", "2"), environ={"CVAE_WORKERS": "3"}).workers == 2


def test_flag_beats_environment() -> None:
    settings = from_sources(_parse("--port", "7000"), environ={"CVAE_PORT": "6000"})
    assert settings.port == 7000


@pytest.mark.parametrize(
    ("argv", "environ", "expected"),
    [
        (["--port", "-1"], {}, "--port (CVAE_PORT): -1 is outside [0, 65535]"),
        ([], {"CVAE_WORKERS": "0"}, "--workers (CVAE_WORKERS): 0 is outside [1, 64]"),
        (["--max-batch", "0"], {}, "--max-batch (CVAE_MAX_BATCH)"),
        ([], {"CVAE_MAX_DELAY_MS": "-1"}, "--max-delay-ms (CVAE_MAX_DELAY_MS): -1.0 is outside"),
        ([], {"CVAE_PORT": "fifty"}, "CVAE_PORT='fifty'"),
        (["--batching", "maybe"], {}, "--batching='maybe'"),
        (["--log-format", "xml"], {}, "--log-format (CVAE_LOG_FORMAT): 'xml' is not one of"),
        (["--grace-period-s", "nan"], {}, "--grace-period-s='nan': must be finite"),
        (["--tls-cert", "c.pem"], {}, "--tls-cert and --tls-key"),
        (["--tls-client-ca", "ca.pem"], {}, "--tls-client-ca (CVAE_TLS_CLIENT_CA) needs"),
        (["--queue-size", "10"], {}, "--queue-size (10) must be at least --max-images-per-request"),
    ],
)
def test_bad_values_are_refused_naming_flag_and_variable(
    argv: list[str], environ: dict[str, str], expected: str
) -> None:
    with pytest.raises(SettingsError) as raised:
        from_sources(_parse(*argv), environ=environ)
    assert expected in str(raised.value)


def test_tls_paths_become_paths() -> None:
    settings = from_sources(_parse("--tls-cert", "c.pem", "--tls-key", "k.pem"), environ={})
    assert settings.tls
    assert settings.tls_cert == Path("c.pem")


def test_choices_match_case_insensitively() -> None:
    assert from_sources(_parse("--log-level", "debug"), environ={}).log_level == "DEBUG"
    assert from_sources(_parse(), environ={"CVAE_LOG_FORMAT": "JSON"}).log_format == "json"


def test_overload_limits_become_grpc_server_options() -> None:
    from service.server import grpc_options

    settings = from_sources({}, environ={"CVAE_MAX_PENDING_RPCS": "32"})
    options = dict(grpc_options(settings))
    assert options["grpc.server.max_pending_requests"] == 32
    assert options["grpc.server.max_pending_requests_hard_limit"] == 64
    assert settings.concurrent_rpcs_limit == 4096 // 8
    assert "grpc.server.max_pending_requests" not in dict(
        grpc_options(from_sources({"max_pending_rpcs": 0}, environ={}))
    )
    assert from_sources({"max_concurrent_rpcs": -1}, environ={}).concurrent_rpcs_limit is None
    assert from_sources({"max_concurrent_rpcs": 7}, environ={}).concurrent_rpcs_limit == 7


def test_onnxruntime_threads_are_sized_from_the_cpu_budget() -> None:
    from service.options import runtime_options

    def threads(**values: object) -> int:
        environ = {f"CVAE_{key.upper()}": str(value) for key, value in values.items()}
        return runtime_options(from_sources({}, environ)).intra_op_threads

    assert threads(cpus=2) == 1  # two decoder slots of one thread
    assert threads(cpus=8) == 4
    assert threads(cpus=8, decoder_slots=1) == 8
    assert threads(cpus=8, workers=2) == 2
    assert threads(cpus=1) == 1  # at least one
    assert threads(cpus=8, intra_op_threads=3) == 3  # an explicit value wins


def test_the_health_port_is_off_by_default_and_must_not_reuse_another_port() -> None:
    assert ServiceSettings().health_port == 0
    assert from_sources({}, {"CVAE_HEALTH_PORT": "8081"}).health_port == 8081
    for clash in ({"CVAE_HEALTH_PORT": "50051"}, {"CVAE_HEALTH_PORT": "9464"}):
        with pytest.raises(SettingsError, match="must differ"):
            from_sources({}, clash)
    with pytest.raises(SettingsError, match="must differ"):
        from_sources({}, {"CVAE_PORT": "9464"})
    assert from_sources({}, {"CVAE_PORT": "0", "CVAE_METRICS_PORT": "0"}).port == 0


@pytest.mark.parametrize(
    ("old_flag", "old_variable", "field"),
    [
        ("--grace-period", "CVAE_GRACE_PERIOD", "grace_period_s"),
        ("--reload-interval", "CVAE_RELOAD_INTERVAL", "reload_interval_s"),
    ],
)
def test_renamed_settings_keep_their_old_flag_and_variable(
    old_flag: str, old_variable: str, field: str
) -> None:
    assert getattr(from_sources(_parse(old_flag, "7"), environ={}), field) == 7.0
    assert getattr(from_sources(_parse(), environ={old_variable: "8"}), field) == 8.0
    new_variable = old_variable + "_S"  # the new name wins over the old one
    both = {old_variable: "8", new_variable: "9"}
    assert getattr(from_sources(_parse(), environ=both), field) == 9.0


def test_components_take_their_options_from_the_settings_alone() -> None:
    """The derived options carry every batching knob by the settings' own name and value."""
    from service.options import batching_policy, request_limits

    settings = ServiceSettings(
        max_batch=64, max_delay_ms=3.0, decoder_slots=3, decoder_niceness=5, decoder_slice=8
    )
    policy = batching_policy(settings)
    for name in ("max_batch", "max_delay_ms", "batching", "queue_size", "decoder_slots"):
        assert getattr(policy, name) == getattr(settings, name), name
    assert (policy.decoder_niceness, policy.decoder_slice, policy.max_delay_s) == (5, 8, 0.003)
    limits = request_limits(settings)
    assert limits.max_images_per_request == settings.max_images_per_request
    assert limits.stream_chunk_size == settings.stream_chunk_size
