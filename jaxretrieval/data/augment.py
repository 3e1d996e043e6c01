"""Image augmentation on device: pure jax, jit-able, one key per sample (vmapped), deterministic per key.

Images come in as ``uint8 [B, H, W, C]`` batches straight from the input pipeline and go out as
``float32 [B, H, W, C]`` in ``[0, 1]``. Each public function splits its key into one key per sample
(``jax.random.split(key, B)``), so the samples of a batch are augmented independently, and the same
key and batch always give the same views.

- :func:`hashing_train_view`: the standard hashing recipe: random crop after zero padding
  (torchvision ``RandomCrop(size, padding)``) and a horizontal flip with probability 0.5. The resize
  happens on the host (``config.data.image_size``) or with :func:`resize`; normalise with
  :func:`normalize` if the model wants it.
- :func:`spq_views`: SPQ's two views (Jang and Cho, ICCV 2021): ``RandomResizedCrop`` scale
  ``(0.08, 1)`` ratio ``(3/4, 4/3)`` back to the input size, flip 0.5, ``ColorJitter(0.4, 0.4, 0.4,
  0.1)`` with p 0.8 (brightness, contrast, saturation and hue in a random order, as torchvision),
  grayscale with p 0.2 and a 3x3 Gaussian blur, sigma in ``(0.1, 2)``, with p 0.5. Single-channel
  images skip saturation, hue and grayscale (as torchvision does).
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp

# ITU-R 601-2 luma, as torchvision's rgb_to_grayscale.
_LUMA = (0.2989, 0.587, 0.114)


def _check_batch(images: jax.Array, name: str = "images") -> None:
    if images.ndim != 4:
        raise ValueError(f"{name} must be [batch, height, width, channels], got shape {images.shape}")


def to_float(images: jax.Array) -> jax.Array:
    """``uint8`` images -> ``float32`` in ``[0, 1]`` (the evaluation transform).

    >>> to_float(jnp.array([0, 51, 255], jnp.uint8))
    Array([0. , 0.2, 1. ], dtype=float32)
    """
    if images.dtype != jnp.uint8:
        raise TypeError(f"images must be uint8, got {images.dtype}")
    return images.astype(jnp.float32) / 255.0


def normalize(images: jax.Array, mean, std) -> jax.Array:
    """``(images - mean) / std`` per channel (last axis); ``mean``/``std`` are ``[C]`` or scalars."""
    mean = jnp.asarray(mean, jnp.float32)
    std = jnp.asarray(std, jnp.float32)
    return (images - mean) / std


def resize(images: jax.Array, image_size: int) -> jax.Array:
    """Bilinear (antialiased) resize of a ``[B, H, W, C]`` batch to ``[B, image_size, image_size, C]``."""
    _check_batch(images)
    return jax.image.resize(images, (images.shape[0], image_size, image_size, images.shape[3]), "linear")


def _per_sample(view_fn, num_draws: int, key: jax.Array, images: jax.Array) -> jax.Array:
    """Applies ``view_fn(draws, image)`` to each image with its own ``num_draws`` uniforms in [0, 1).

    One ``uniform`` call per sample draws every random number a view needs: each PRNG call adds
    a threefry block to the compiled program, and a dozen of them made compiling take seconds.
    """
    _check_batch(images)
    sample_keys = jax.random.split(key, images.shape[0])
    draws = jax.vmap(lambda sample_key: jax.random.uniform(sample_key, (num_draws,)))(sample_keys)
    return jax.vmap(view_fn)(draws, to_float(images))


def _uniform(draw: jax.Array, low: float, high: float) -> jax.Array:
    return low + (high - low) * draw


def _integer(draw: jax.Array, num_values: jax.Array) -> jax.Array:
    """A uniform integer in ``[0, num_values)`` from a uniform draw in ``[0, 1)``."""
    return jnp.minimum(jnp.floor(draw * num_values).astype(jnp.int32), num_values - 1)


def _flip(draw: jax.Array, image: jax.Array, probability: float = 0.5) -> jax.Array:
    return jnp.where(draw < probability, image[:, ::-1], image)


def _padded_crop(draws: jax.Array, image: jax.Array, padding: int) -> jax.Array:
    """A random ``H x W`` window of the image zero-padded by ``padding`` (2 draws: top, left)."""
    height, width, channels = image.shape
    padded = jnp.pad(image, ((padding, padding), (padding, padding), (0, 0)))
    top = _integer(draws[0], 2 * padding + 1)
    left = _integer(draws[1], 2 * padding + 1)
    return jax.lax.dynamic_slice(padded, (top, left, 0), (height, width, channels))


def hashing_train_view(key: jax.Array, images: jax.Array, *, crop_padding: int = 4, flip: bool = True) -> jax.Array:
    """The standard hashing training view: zero-pad, random crop back to size, random horizontal flip.

    Args:
      key: a PRNG key; sample ``i`` draws from ``jax.random.split(key, B)[i]``.
      images: ``uint8 [B, H, W, C]``.
      crop_padding: zero pixels added on each side before cropping ``H x W`` (0 = no crop).
      flip: flip each image left-right with probability 0.5.

    Returns:
      ``float32 [B, H, W, C]`` in ``[0, 1]``.

    >>> images = jnp.arange(2 * 4 * 4 * 3, dtype=jnp.uint8).reshape(2, 4, 4, 3)
    >>> jax.jit(hashing_train_view)(jax.random.key(0), images).shape
    (2, 4, 4, 3)
    """

    def view(draws, image):
        if crop_padding:
            image = _padded_crop(draws[:2], image, crop_padding)
        return _flip(draws[2], image) if flip else image

    return _per_sample(view, 3, key, images)


_CROP_ATTEMPTS = 10
_CROP_DRAWS = 2 * _CROP_ATTEMPTS + 2


def _bilinear_weights(start: jax.Array, length: jax.Array, size: int) -> jax.Array:
    """``[size, size]`` matrix resampling the pixels ``[start, start + length)`` of an axis of ``size``
    pixels onto ``size`` output pixels (bilinear, pixel centres at ``i + 0.5``, edges clamped)."""
    centres = start + (jnp.arange(size) + 0.5) * (length / size) - 0.5
    # Clamp inside the box: crop first, then resize (torchvision), never blending in pixels beyond it.
    centres = jnp.clip(centres, start, start + length - 1.0)
    lower = jnp.floor(centres)
    fraction = centres - lower
    lower = lower.astype(jnp.int32)
    upper = jnp.minimum(lower + 1, size - 1)
    return (1.0 - fraction)[:, None] * jax.nn.one_hot(lower, size) + fraction[:, None] * jax.nn.one_hot(upper, size)


def _random_resized_crop(
    draws: jax.Array,
    image: jax.Array,
    *,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3.0 / 4.0, 4.0 / 3.0),
) -> jax.Array:
    """torchvision's RandomResizedCrop back to the input size (``_CROP_DRAWS`` draws).

    Ten tries of (area fraction, log aspect ratio); the first box that fits wins, else a central
    crop with the ratio clamped to ``ratio``. The box is resized bilinearly with two small resampling
    matrices (cheap to compile and to run on small images).
    """
    height, width, _ = image.shape
    area_draws, ratio_draws = draws[:_CROP_ATTEMPTS], draws[_CROP_ATTEMPTS : 2 * _CROP_ATTEMPTS]
    target_area = height * width * _uniform(area_draws, *scale)
    aspect = jnp.exp(_uniform(ratio_draws, math.log(ratio[0]), math.log(ratio[1])))
    crop_widths = jnp.round(jnp.sqrt(target_area * aspect)).astype(jnp.int32)
    crop_heights = jnp.round(jnp.sqrt(target_area / aspect)).astype(jnp.int32)
    fits = (crop_widths > 0) & (crop_heights > 0) & (crop_widths <= width) & (crop_heights <= height)
    first_fit = jnp.argmax(fits)
    # The fallback is static: it depends only on the image's shape.
    input_ratio = width / height
    if input_ratio < ratio[0]:
        fallback_width, fallback_height = width, int(round(width / ratio[0]))
    elif input_ratio > ratio[1]:
        fallback_width, fallback_height = int(round(height * ratio[1])), height
    else:
        fallback_width, fallback_height = width, height
    any_fit = fits.any()
    crop_width = jnp.where(any_fit, crop_widths[first_fit], fallback_width)
    crop_height = jnp.where(any_fit, crop_heights[first_fit], fallback_height)
    top = jnp.where(any_fit, _integer(draws[-2], height - crop_height + 1), (height - crop_height) // 2)
    left = jnp.where(any_fit, _integer(draws[-1], width - crop_width + 1), (width - crop_width) // 2)
    rows = _bilinear_weights(top.astype(jnp.float32), crop_height.astype(jnp.float32), height)
    columns = _bilinear_weights(left.astype(jnp.float32), crop_width.astype(jnp.float32), width)
    return jnp.einsum("oh,hwc,pw->opc", rows, image, columns)


def _grayscale(image: jax.Array) -> jax.Array:
    """``[H, W, 3]`` -> ``[H, W, 1]`` luma."""
    return image @ jnp.asarray(_LUMA, image.dtype)[:, None]


def _rgb_to_hsv(image: jax.Array) -> jax.Array:
    red, green, blue = image[..., 0], image[..., 1], image[..., 2]
    max_channel = image.max(-1)
    min_channel = image.min(-1)
    grey = max_channel == min_channel
    chroma = max_channel - min_channel
    saturation = chroma / jnp.where(grey, 1.0, max_channel)
    chroma_divisor = jnp.where(grey, 1.0, chroma)
    red_c = (max_channel - red) / chroma_divisor
    green_c = (max_channel - green) / chroma_divisor
    blue_c = (max_channel - blue) / chroma_divisor
    is_red = max_channel == red
    is_green = (max_channel == green) & ~is_red
    hue = jnp.where(is_red, blue_c - green_c, jnp.where(is_green, 2.0 + red_c - blue_c, 4.0 + green_c - red_c))
    hue = jnp.mod(hue / 6.0 + 1.0, 1.0)
    return jnp.stack([hue, saturation, max_channel], axis=-1)


def _hsv_to_rgb(image: jax.Array) -> jax.Array:
    """Elementwise (no gather): channel ``n`` in (5, 3, 1) is ``v - v s clip(min(k, 4 - k), 0, 1)``
    with ``k = (n + 6 h) mod 6``."""
    hue, saturation, value = image[..., 0:1], image[..., 1:2], image[..., 2:3]
    k = jnp.mod(jnp.asarray([5.0, 3.0, 1.0]) + hue * 6.0, 6.0)
    return value - value * saturation * jnp.clip(jnp.minimum(k, 4.0 - k), 0.0, 1.0)


_JITTER_DRAWS = 8


def _color_jitter(
    draws: jax.Array, image: jax.Array, *, brightness=0.4, contrast=0.4, saturation=0.4, hue=0.1
) -> jax.Array:
    """torchvision ColorJitter: the four adjustments in a random order, each with a random factor.

    Draws: 4 for the order (argsort), then brightness, contrast, saturation and hue factors.
    Brightness, contrast and saturation are blends ``clip(f * x + (1 - f) * other)`` with ``other`` =
    0, the mean grey level, or the grey image, so they run as one blend with a chosen ``other``.
    """
    order = jnp.argsort(draws[:4])  # 0 brightness, 1 contrast, 2 saturation, 3 hue
    factors = jnp.stack([
        _uniform(draws[4], max(0.0, 1 - brightness), 1 + brightness),
        _uniform(draws[5], max(0.0, 1 - contrast), 1 + contrast),
        _uniform(draws[6], max(0.0, 1 - saturation), 1 + saturation),
    ])
    hue_factor = _uniform(draws[7], -hue, hue)
    is_color = image.shape[-1] == 3

    def blend_step(x, adjustment):
        grey = _grayscale(x) if is_color else x
        factor = factors[jnp.minimum(adjustment, 2)]
        if not is_color:  # torchvision leaves the saturation of a single-channel image alone
            factor = jnp.where(adjustment == 2, 1.0, factor)
        other = jnp.where(adjustment == 0, 0.0, jnp.where(adjustment == 1, grey.mean(), grey))
        return jnp.clip(factor * x + (1.0 - factor) * other, 0.0, 1.0)

    def adjust_hue(x):
        if not is_color:  # torchvision leaves the hue of a single-channel image alone
            return x
        hsv = _rgb_to_hsv(x)
        return _hsv_to_rgb(hsv.at[..., 0].set(jnp.mod(hsv[..., 0] + hue_factor, 1.0)))

    # A loop, not unrolled Python: one copy of each adjustment in the compiled program, not four.
    def adjust(step, x):
        adjustment = order[step]
        return jnp.where(adjustment == 3, adjust_hue(x), blend_step(x, adjustment))

    return jax.lax.fori_loop(0, 4, adjust, image)


def _to_grayscale(image: jax.Array) -> jax.Array:
    """Grey in every channel (torchvision RandomGrayscale keeps the channel count)."""
    return jnp.broadcast_to(_grayscale(image), image.shape) if image.shape[-1] == 3 else image


def _gaussian_blur_3x3(sigma: jax.Array, image: jax.Array) -> jax.Array:
    """torchvision GaussianBlur(3, sigma): one sigma for both axes, reflect padding, separable."""
    weights = jnp.exp(-0.5 * (jnp.asarray([-1.0, 0.0, 1.0]) / sigma) ** 2)
    weights = weights / weights.sum()
    height, width, _ = image.shape
    padded = jnp.pad(image, ((1, 1), (0, 0), (0, 0)), mode="reflect")
    image = sum(weights[i] * padded[i : i + height] for i in range(3))
    padded = jnp.pad(image, ((0, 0), (1, 1), (0, 0)), mode="reflect")
    return sum(weights[i] * padded[:, i : i + width] for i in range(3))


# Per view: crop, flip, jitter (apply + its draws), grayscale apply, blur (apply + sigma).
_SPQ_DRAWS = _CROP_DRAWS + 1 + 1 + _JITTER_DRAWS + 1 + 2


def _spq_view(draws: jax.Array, image: jax.Array) -> jax.Array:
    crop_draws, draws = draws[:_CROP_DRAWS], draws[_CROP_DRAWS:]
    image = _random_resized_crop(crop_draws, image)
    image = _flip(draws[0], image)
    image = jnp.where(draws[1] < 0.8, _color_jitter(draws[2 : 2 + _JITTER_DRAWS], image), image)
    draws = draws[2 + _JITTER_DRAWS :]
    image = jnp.where(draws[0] < 0.2, _to_grayscale(image), image)
    image = jnp.where(draws[1] < 0.5, _gaussian_blur_3x3(_uniform(draws[2], 0.1, 2.0), image), image)
    return jnp.clip(image, 0.0, 1.0)


def spq_views(key: jax.Array, images: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Two independently augmented views of each image with SPQ's recipe (see the module docstring).

    Args:
      key: a PRNG key; sample ``i`` of view ``a`` draws from ``jax.random.split(key, 2 * B)[i]``, of
        view ``b`` from ``[B + i]``.
      images: ``uint8 [B, H, W, C]`` (C = 3, or 1 for grayscale data).

    Returns:
      ``(view_a, view_b)``, each ``float32 [B, H, W, C]`` in ``[0, 1]``.

    Use it under ``jax.jit`` (eagerly, its loops would compile on every call).
    """
    _check_batch(images)
    # Both views in one vmapped call over the batch twice: one copy of the view in the compiled program.
    views = _per_sample(_spq_view, _SPQ_DRAWS, key, jnp.concatenate([images, images]))
    return views[: images.shape[0]], views[images.shape[0] :]
