"""Turn a drawing or an upload into an MNIST-like digit, and images into PNG data URLs."""

from __future__ import annotations

import base64
import io

import numpy as np

_SIDE = 28
_BOX = 20  # MNIST digits fit a 20 x 20 box, centred by their centre of mass in 28 x 28


def from_data_url(data_url: str) -> bytes:
    """The bytes of a `data:image/...;base64,...` URL (or of plain base64)."""
    _, _, payload = data_url.partition(",")
    try:
        return base64.b64decode(payload or data_url, validate=True)
    except ValueError as error:
        raise ValueError(f"not base64 image data ({error})") from None


def to_data_url(image: np.ndarray) -> str:
    """A uint8 (H, W) image as a PNG data URL."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8), mode="L").save(buffer, "PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def mnist_like(data: bytes) -> np.ndarray:
    """uint8 (28, 28): the picture in grayscale, light strokes on dark (inverted if it is dark on
    light), cropped to its ink, scaled into a 20 x 20 box and centred by its centre of mass."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as opened:
            if opened.mode in ("RGBA", "LA") or "transparency" in opened.info:
                background = Image.new("RGBA", opened.size, (0, 0, 0, 255))
                picture = Image.alpha_composite(background, opened.convert("RGBA")).convert("L")
            else:
                picture = opened.convert("L")
    except (UnidentifiedImageError, OSError) as error:
        raise ValueError(f"not an image ({error})") from None
    pixels = np.asarray(picture, dtype=np.float32)
    if pixels.mean() > 127:  # dark ink on a light background: make it MNIST's way round
        pixels = 255 - pixels
    ink = np.argwhere(pixels > 30)
    if len(ink) == 0:
        return np.zeros((_SIDE, _SIDE), dtype=np.uint8)
    (top, left), (bottom, right) = ink.min(axis=0), ink.max(axis=0) + 1
    crop = Image.fromarray(pixels[top:bottom, left:right].astype(np.uint8), mode="L")
    scale = _BOX / max(crop.size)
    size = (max(1, round(crop.width * scale)), max(1, round(crop.height * scale)))
    small = np.asarray(crop.resize(size, Image.Resampling.LANCZOS), dtype=np.float32)
    canvas = np.zeros((_SIDE, _SIDE), dtype=np.float32)
    mass = small.sum()
    rows, cols = np.indices(small.shape)
    centre_r = (rows * small).sum() / mass if mass else small.shape[0] / 2
    centre_c = (cols * small).sum() / mass if mass else small.shape[1] / 2
    top = int(np.clip(round(_SIDE / 2 - centre_r), 0, _SIDE - small.shape[0]))
    left = int(np.clip(round(_SIDE / 2 - centre_c), 0, _SIDE - small.shape[1]))
    canvas[top : top + small.shape[0], left : left + small.shape[1]] = small
    return np.clip(canvas, 0, 255).astype(np.uint8)
