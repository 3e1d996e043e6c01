"""On-device augmentation: shapes, ranges, determinism, per-sample keys, and what each transform does."""
import colorsys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxretrieval.data import augment

RNG = np.random.default_rng(0)
COLOR_BATCH = RNG.integers(0, 256, (6, 8, 8, 3), dtype=np.uint8)
hashing_view = jax.jit(augment.hashing_train_view)
spq_views = jax.jit(augment.spq_views)
# The private transforms take their uniform draws explicitly, so each effect can be set up exactly.
# Jitted once each (every test uses the same shapes): eager calls would re-compile their loops.
random_resized_crop = jax.jit(augment._random_resized_crop)
color_jitter = jax.jit(augment._color_jitter)
gaussian_blur = jax.jit(augment._gaussian_blur_3x3)


def test_to_float_and_normalize():
    images = jnp.asarray(np.array([[[[0, 255, 51]]]], np.uint8))
    np.testing.assert_allclose(augment.to_float(images), [[[[0.0, 1.0, 0.2]]]])
    np.testing.assert_allclose(augment.normalize(augment.to_float(images), [0.0, 0.5, 0.2], [1.0, 0.5, 0.1]), [[[[0.0, 1.0, 0.0]]]], atol=1e-6)
    with pytest.raises(TypeError, match="uint8"):
        augment.to_float(jnp.zeros((1, 2, 2, 3)))


def test_hashing_view_shape_range_and_determinism():
    key = jax.random.key(0)
    views = hashing_view(key, COLOR_BATCH)
    assert views.shape == COLOR_BATCH.shape and views.dtype == jnp.float32
    assert 0.0 <= float(views.min()) and float(views.max()) <= 1.0
    np.testing.assert_array_equal(hashing_view(key, COLOR_BATCH), views)
    assert not np.array_equal(hashing_view(jax.random.key(1), COLOR_BATCH), views)
    with pytest.raises(ValueError, match=r"\[batch, height, width, channels\]"):
        augment.hashing_train_view(key, COLOR_BATCH[0])


def test_flip_mirrors_left_right_below_its_probability():
    image = jnp.asarray(COLOR_BATCH[0] / 255.0, jnp.float32)
    np.testing.assert_array_equal(augment._flip(jnp.float32(0.49), image), image[:, ::-1])
    np.testing.assert_array_equal(augment._flip(jnp.float32(0.51), image), image)


def test_padded_crop_takes_the_window_the_draws_select():
    image = jnp.asarray(COLOR_BATCH[0] / 255.0, jnp.float32)
    padded = np.pad(np.asarray(image), ((2, 2), (2, 2), (0, 0)))
    for draws, (top, left) in [((0.0, 0.0), (0, 0)), ((0.99, 0.5), (4, 2)), ((0.3, 0.9), (1, 4))]:
        window = augment._padded_crop(jnp.asarray(draws, jnp.float32), image, 2)
        np.testing.assert_array_equal(window, padded[top : top + 8, left : left + 8])


def test_hashing_view_is_a_window_of_the_padded_image_or_its_mirror_per_sample():
    same_image = np.repeat(COLOR_BATCH[:1], 6, axis=0)
    views = np.asarray(hashing_view(jax.random.key(3), same_image))
    padded = np.pad(same_image[0] / 255.0, ((4, 4), (4, 4), (0, 0)))
    windows = [padded[top : top + 8, left : left + 8] for top in range(9) for left in range(9)]
    for view in views:
        assert any(np.allclose(view, window) or np.allclose(view[:, ::-1], window) for window in windows)
    assert len({view.tobytes() for view in views}) > 1  # one key per sample: the same image varies


@pytest.mark.parametrize("channels", [3, 1])
def test_spq_views_shapes_ranges_determinism_and_two_different_views(channels):
    images = COLOR_BATCH[..., :channels]
    key = jax.random.key(4)
    view_a, view_b = spq_views(key, images)
    for view in (view_a, view_b):
        assert view.shape == images.shape and view.dtype == jnp.float32
        assert 0.0 <= float(view.min()) and float(view.max()) <= 1.0
        assert np.isfinite(np.asarray(view)).all()
    again_a, again_b = spq_views(key, images)
    np.testing.assert_array_equal(again_a, view_a)
    np.testing.assert_array_equal(again_b, view_b)
    assert not np.allclose(view_a, view_b)
    assert not np.allclose(view_a, images / 255.0)


def _float_image(channels=3, size=8):
    return jnp.asarray(RNG.random((size, size, channels)), jnp.float32)


def test_random_resized_crop_full_box_is_identity_and_small_box_zooms():
    image = _float_image()
    # Area fraction 1 and aspect 1 on the first try: the whole image.
    whole = np.full(augment._CROP_DRAWS, 0.5, np.float32)
    whole[0] = 1.0
    np.testing.assert_allclose(random_resized_crop(jnp.asarray(whole), image), image, atol=1e-6)
    # Quadrants of constant colour; a 4x4 box in the top-left quadrant becomes all that colour.
    quadrants = np.zeros((8, 8, 3), np.float32)
    quadrants[:4, :4] = [0.9, 0.1, 0.3]
    small = np.full(augment._CROP_DRAWS, 0.5, np.float32)
    small[0] = (16 / 64 - 0.08) / 0.92  # area fraction 1/4: a 4x4 box
    small[-2:] = 0.0  # top-left corner
    zoomed = random_resized_crop(jnp.asarray(small), jnp.asarray(quadrants))
    np.testing.assert_allclose(zoomed, np.broadcast_to([0.9, 0.1, 0.3], (8, 8, 3)), atol=1e-6)


def test_grayscale_has_equal_channels_with_luma():
    image = _float_image()
    grey = np.asarray(augment._to_grayscale(image))
    np.testing.assert_allclose(grey[..., 0], grey[..., 1])
    np.testing.assert_allclose(grey[..., 0], grey[..., 2])
    np.testing.assert_allclose(grey[..., 0], np.asarray(image) @ np.array([0.2989, 0.587, 0.114]), rtol=1e-5)


def test_blur_smooths_keeps_constants_and_small_sigma_is_identity():
    checkerboard = jnp.asarray(np.repeat((np.indices((8, 8)).sum(0) % 2)[..., None], 3, axis=2).astype(np.float32))
    blurred = np.asarray(gaussian_blur(jnp.float32(2.0), checkerboard))
    assert blurred.std() < 0.5 * float(checkerboard.std())
    np.testing.assert_allclose(blurred.mean(), float(checkerboard.mean()), atol=0.05)
    constant = jnp.full((8, 8, 3), 0.3)
    np.testing.assert_allclose(gaussian_blur(jnp.float32(1.0), constant), constant, atol=1e-6)
    np.testing.assert_allclose(gaussian_blur(jnp.float32(0.1), checkerboard), checkerboard, atol=1e-6)


def _jitter_draws(brightness=0.5, contrast=0.5, saturation=0.5, hue=0.5):
    """Draws with the adjustment order brightness, contrast, saturation, hue; 0.5 = neutral factor."""
    return jnp.asarray([0.1, 0.2, 0.3, 0.4, brightness, contrast, saturation, hue], jnp.float32)


def test_color_jitter_neutral_factors_keep_the_image():
    image = _float_image() * 0.5
    np.testing.assert_allclose(color_jitter(_jitter_draws(), image), image, atol=1e-5)


def test_color_jitter_each_factor_changes_its_statistic():
    image = _float_image() * 0.6 + 0.2
    brighter = color_jitter(_jitter_draws(brightness=1.0), image)  # factor 1.4
    np.testing.assert_allclose(brighter, np.clip(np.asarray(image) * 1.4, 0, 1), atol=1e-5)
    flatter = color_jitter(_jitter_draws(contrast=0.0), image)  # factor 0.6
    assert float(flatter.std()) < 0.7 * float(image.std())
    grey = np.asarray(augment._to_grayscale(image))
    desaturated = color_jitter(_jitter_draws(saturation=0.0), image)  # factor 0.6
    assert np.abs(np.asarray(desaturated) - grey).mean() < 0.7 * np.abs(np.asarray(image) - grey).mean()


def test_color_jitter_hue_matches_colorsys():
    pixels = RNG.random((8, 8, 3)).astype(np.float32)
    shifted = np.asarray(color_jitter(_jitter_draws(hue=1.0), jnp.asarray(pixels)))  # hue + 0.1
    for pixel, result in zip(pixels.reshape(-1, 3), shifted.reshape(-1, 3)):
        h, s, v = colorsys.rgb_to_hsv(*pixel)
        np.testing.assert_allclose(result, colorsys.hsv_to_rgb((h + 0.1) % 1.0, s, v), atol=1e-5)


def test_color_jitter_order_matters_like_torchvision():
    image = _float_image() * 0.8 + 0.1
    draws = np.asarray(_jitter_draws(brightness=1.0, contrast=0.0))
    reordered = draws.copy()
    reordered[:2] = [0.2, 0.1]  # contrast before brightness
    first = color_jitter(jnp.asarray(draws), image)
    second = color_jitter(jnp.asarray(reordered), image)
    assert not np.allclose(first, second)
