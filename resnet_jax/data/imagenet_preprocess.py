"""Per-example ImageNet image ops on the tf.data side: JPEG crops, flips, colour augmentation.

This module imports TensorFlow; only `resnet_jax.data.imagenet` imports it, inside its
functions. Every random choice is stateless and keyed by a per-example `seed` (int64 [2]), so
an example's augmentation is a pure function of that seed and resume reproduces it exactly.
Crops are chosen in source-image pixels so that `decode_and_crop_jpeg` decodes only the
window that is kept and only that window is resized. All functions return uint8 images.
"""

from __future__ import annotations

import tensorflow as tf

# AlexNet PCA lighting (Krizhevsky et al. 2012) with fb.resnet.torch's ImageNet RGB
# eigenvalues and eigenvectors (columns), in [0, 1] pixel units.
PCA_EIGVAL = (0.2175, 0.0188, 0.0045)
PCA_EIGVEC = ((-0.5675, 0.7192, 0.4009),
              (-0.5808, -0.0045, -0.8140),
              (-0.5836, -0.6948, 0.4203))
LIGHTING_STD = 0.1
JITTER_STRENGTH = 0.4  # fb.resnet.torch ColorJitter(brightness, contrast, saturation)


def _resize(image: tf.Tensor, size: int) -> tf.Tensor:
  """Bilinear resize to size x size, float32 in [0, 255] (no antialiasing, as in Caffe)."""
  return tf.image.resize(image, [size, size], method="bilinear")


def _to_uint8(image: tf.Tensor) -> tf.Tensor:
  return tf.cast(tf.clip_by_value(tf.round(image), 0.0, 255.0), tf.uint8)


def _split(seed: tf.Tensor, num: int) -> list[tf.Tensor]:
  return tf.unstack(tf.random.experimental.stateless_split(seed, num))


def scale_crop(encoded: tf.Tensor, seed: tf.Tensor, image_size: int, scale_range: tuple[int, int]) -> tf.Tensor:
  """He et al. 2015 (3.4): shorter side resized to a random integer S in scale_range, random square crop.

  Equal to resize-then-crop up to rounding the source window (image_size / S of the source
  scale) to whole pixels. float32 [image_size, image_size, 3].
  """
  shape = tf.io.extract_jpeg_shape(encoded)
  height, width = shape[0], shape[1]
  scale_seed, y_seed, x_seed = _split(seed, 3)
  scale = tf.random.stateless_uniform([], scale_seed, scale_range[0], scale_range[1] + 1, tf.int32)
  shorter = tf.minimum(height, width)
  window = tf.cast(tf.round(image_size * tf.cast(shorter, tf.float32) / tf.cast(scale, tf.float32)), tf.int32)
  window = tf.clip_by_value(window, 1, shorter)
  top = tf.random.stateless_uniform([], y_seed, 0, height - window + 1, tf.int32)
  left = tf.random.stateless_uniform([], x_seed, 0, width - window + 1, tf.int32)
  crop = tf.io.decode_and_crop_jpeg(encoded, tf.stack([top, left, window, window]), channels=3)
  return _resize(crop, image_size)


def inception_crop(encoded: tf.Tensor, seed: tf.Tensor, image_size: int) -> tf.Tensor:
  """Random-resized crop (Szegedy et al. 2015): area fraction in [0.08, 1], aspect in [3/4, 4/3].

  After 10 failed draws the whole image is used. float32 [image_size, image_size, 3].
  """
  shape = tf.io.extract_jpeg_shape(encoded)
  begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
      shape, tf.constant([[[0.0, 0.0, 1.0, 1.0]]]), seed=seed, min_object_covered=0.0,
      aspect_ratio_range=(3 / 4, 4 / 3), area_range=(0.08, 1.0), max_attempts=10,
      use_image_if_no_bounding_boxes=True)
  window = tf.stack([begin[0], begin[1], size[0], size[1]])
  return _resize(tf.io.decode_and_crop_jpeg(encoded, window, channels=3), image_size)


def lighting(image: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
  """AlexNet PCA lighting: add eigvec @ (alpha * eigval), alpha ~ N(0, 0.1^2), to every pixel."""
  alpha = tf.random.stateless_normal([3], seed, stddev=LIGHTING_STD)
  rgb = tf.linalg.matvec(tf.constant(PCA_EIGVEC), alpha * tf.constant(PCA_EIGVAL))
  return image + 255.0 * rgb


def jitter(image: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
  """Brightness, contrast, saturation blends with factors in [0.6, 1.4] (fb.resnet.torch; fixed order)."""
  factors = tf.random.stateless_uniform([3], seed, 1 - JITTER_STRENGTH, 1 + JITTER_STRENGTH)
  image = image * factors[0]
  gray = tf.image.rgb_to_grayscale(image)
  image = image * factors[1] + tf.reduce_mean(gray) * (1 - factors[1])
  gray = tf.image.rgb_to_grayscale(image)
  return image * factors[2] + gray * (1 - factors[2])


def train_image(encoded: tf.Tensor, seed: tf.Tensor, *, crop: str, color: str, image_size: int,
                scale_range: tuple[int, int]) -> tf.Tensor:
  """A training view: crop ('scale' | 'inception'), random flip, colour ('none' | 'lighting' | 'jitter_lighting')."""
  crop_seed, flip_seed, jitter_seed, lighting_seed = _split(seed, 4)
  image = scale_crop(encoded, crop_seed, image_size, scale_range) if crop == "scale" \
      else inception_crop(encoded, crop_seed, image_size)
  image = tf.image.stateless_random_flip_left_right(image, flip_seed)
  if color == "jitter_lighting":
    image = jitter(image, jitter_seed)
  if color in ("lighting", "jitter_lighting"):
    image = lighting(image, lighting_seed)
  return _to_uint8(image)


def _decode_resized_antialiased(encoded: tf.Tensor, size: int) -> tf.Tensor:
  """torchvision's Resize(size) of a PIL-decoded JPEG: the accurate integer DCT, shorter side to `size`,
  longer to int(size * long / short), bilinear with antialias (as PIL). float32."""
  image = tf.io.decode_jpeg(encoded, channels=3, dct_method="INTEGER_ACCURATE")
  shape = tf.shape(image)[:2]
  return tf.image.resize(image, (size * shape) // tf.reduce_min(shape), method="bilinear", antialias=True)


def _center_offsets(shape: tf.Tensor, size: int) -> tf.Tensor:
  """torchvision's CenterCrop offsets: int(round((side - size) / 2)), halves to even as Python rounds."""
  return tf.cast(tf.round(tf.cast(shape - size, tf.float32) / 2), tf.int32)


def center_crop(encoded: tf.Tensor, image_size: int, crop_fraction: float, resize: str = "paper") -> tf.Tensor:
  """Shorter side resized to image_size / crop_fraction (256 for 224), centre square crop. uint8.

  'paper' decodes only the crop's window of the source and resizes it (bilinear, no antialias);
  'torchvision' resizes the whole image with antialias, then crops (its Resize(256) + CenterCrop(224)).
  """
  if resize == "torchvision":
    image = _decode_resized_antialiased(encoded, round(image_size / crop_fraction))
    top, left = tf.unstack(_center_offsets(tf.shape(image)[:2], image_size))
    return _to_uint8(tf.ensure_shape(image[top:top + image_size, left:left + image_size], [image_size, image_size, 3]))
  shape = tf.io.extract_jpeg_shape(encoded)
  height, width = shape[0], shape[1]
  window = tf.cast(tf.round(crop_fraction * tf.cast(tf.minimum(height, width), tf.float32)), tf.int32)
  window = tf.maximum(window, 1)
  offsets = [(height - window + 1) // 2, (width - window + 1) // 2]
  crop = tf.io.decode_and_crop_jpeg(encoded, tf.stack([*offsets, window, window]), channels=3)
  return _to_uint8(_resize(crop, image_size))


def ten_crop(encoded: tf.Tensor, image_size: int, crop_fraction: float, resize: str = "paper") -> tf.Tensor:
  """AlexNet/He et al. 10-crop: shorter side resized to image_size / crop_fraction, then the centre,
  top-left, top-right, bottom-left, bottom-right crops and the same five flipped. uint8 [10, s, s, 3].
  `resize` as in `center_crop` ('torchvision': the resize and centre of its Resize + TenCrop)."""
  resize_to = round(image_size / crop_fraction)
  if resize == "torchvision":
    image = _decode_resized_antialiased(encoded, resize_to)
    new_shape = tf.shape(image)[:2]
    middle = _center_offsets(new_shape, image_size)
  else:
    image = tf.io.decode_jpeg(encoded, channels=3)
    shape = tf.cast(tf.shape(image)[:2], tf.float32)
    new_shape = tf.cast(tf.round(shape * resize_to / tf.reduce_min(shape)), tf.int32)
    new_shape = tf.maximum(new_shape, image_size)
    image = tf.image.resize(image, new_shape, method="bilinear")
    middle = (new_shape - image_size) // 2
  bottom, right = new_shape[0] - image_size, new_shape[1] - image_size
  corners = [(middle[0], middle[1]), (0, 0), (0, right), (bottom, 0), (bottom, right)]
  crops = tf.stack([image[top:top + image_size, left:left + image_size] for top, left in corners])
  crops = tf.ensure_shape(crops, [5, image_size, image_size, 3])
  return _to_uint8(tf.concat([crops, crops[:, :, ::-1]], axis=0))
