"""The playground's web app (Flask): one static page and three JSON endpoints on the client.

- GET  /            the page (static/index.html; plain HTML and JavaScript, no build step)
- GET  /api/info    the model: name, version, labels, whether it has an encoder
- POST /api/digit   {"image": PNG data URL} -> the digit as the model sees it, p(y|x) for every
                    label, the predicted label, and the digit restyled into every label
- POST /api/samples {"seed": int, "temperature": float, "per_label": int} -> fresh samples,
                    one row per label
"""

from __future__ import annotations

import math
from importlib import resources
from typing import Any

import numpy as np
from flask import Flask, Response, jsonify, request

from cvae.client import Client, GeneratorError
from cvae.playground.digits import from_data_url, mnist_like, to_data_url

_MAX_PER_LABEL = 10
_MAX_UPLOAD_BYTES = 4 << 20


def create_app(client: Client, model_version: str | None = None) -> Flask:
    app = Flask(__name__, static_folder=None)
    app.config["MAX_CONTENT_LENGTH"] = _MAX_UPLOAD_BYTES
    page = resources.files("cvae.playground").joinpath("static/index.html").read_bytes()

    @app.get("/")
    def index() -> Response:
        return Response(page, mimetype="text/html")

    @app.get("/api/info")
    def info() -> Any:
        described = client.model_info(model_version)
        return jsonify(
            name=described.name,
            version=described.version,
            class_names=list(described.class_names),
            has_encoder=described.has_encoder,
        )

    @app.post("/api/digit")
    def digit() -> Any:
        body = request.get_json(silent=True) or {}
        image = body.get("image")
        if not isinstance(image, str):
            return _bad('send {"image": a PNG data URL}')
        try:
            pixels = mnist_like(from_data_url(image))
        except ValueError as error:
            return _bad(f"image: {error}")
        scores = client.score(pixels[None], model_version=model_version, seed=0)
        predicted = int(scores.predicted_labels[0])
        classes = scores.log_likelihood.shape[1]
        restyled = client.restyle(pixels[None], [predicted], range(classes),
                                  model_version=model_version, omit_latents=True)  # fmt: skip
        return jsonify(
            digit=to_data_url(pixels),
            predicted_label=predicted,
            probabilities=[float(p) for p in scores.label_probabilities[0]],
            log_likelihood=[float(v) for v in scores.log_likelihood[0]],
            restyled=[to_data_url(im) for im in restyled.images],
            model_version=scores.model_version,
        )

    @app.post("/api/samples")
    def samples() -> Any:
        body = request.get_json(silent=True) or {}
        try:
            seed = int(body.get("seed", 0))
            temperature = float(body.get("temperature", 1.0))
            per_label = int(body.get("per_label", 8))
        except (TypeError, ValueError):
            return _bad("seed and per_label must be integers, temperature a number")
        if not (0 <= seed < 2**63 and math.isfinite(temperature) and 0 < temperature <= 10
                and 1 <= per_label <= _MAX_PER_LABEL):  # fmt: skip
            return _bad(
                f"seed in [0, 2^63), temperature in (0, 10], per_label in [1, {_MAX_PER_LABEL}]"
            )
        classes = len(client.model_info(model_version).class_names)
        labels = np.repeat(np.arange(classes), per_label)
        result = client.generate(labels, seed=seed, temperature=temperature,
                                 model_version=model_version, omit_latents=True)  # fmt: skip
        rows = [[to_data_url(result.images[label * per_label + column])
                 for column in range(per_label)] for label in range(classes)]  # fmt: skip
        return jsonify(rows=rows, seed=seed, temperature=temperature,
                       model_version=result.model_version)  # fmt: skip

    @app.errorhandler(GeneratorError)
    def service_error(error: GeneratorError) -> Any:
        response = jsonify(error=f"{error.code.name}: {error.details}")
        response.status_code = 502 if error.code.name == "UNAVAILABLE" else 400
        return response

    return app


def _bad(message: str) -> Any:
    response = jsonify(error=message)
    response.status_code = 400
    return response
