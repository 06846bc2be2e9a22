"""Weights in and out (resnet_jax.interop) against real PyTorch: torchvision and timm ResNets with random
weights and random BN statistics give the same logits once imported, and take back exported weights with
load_state_dict(strict=True). Also the torchvision eval preprocessing (data.eval_resize=torchvision)
against torchvision.transforms.

torch, torchvision and timm are test dependencies (pyproject's `test` extra): nothing here is skipped.
"""

from __future__ import annotations

import hashlib
import io
import json
import sys

# triton (imported by torchvision through torch._dynamo) loads an LLVM that crashes a process that already
# loaded TensorFlow's; it compiles GPU kernels only, so these CPU tests keep it out.
sys.modules.setdefault("triton", None)

import jax  # noqa: E402
import ml_collections  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import safetensors.torch  # noqa: E402
import timm  # noqa: E402
import torch  # noqa: E402
import torchvision  # noqa: E402
from flax import nnx  # noqa: E402
from PIL import Image  # noqa: E402

from resnet_jax import cli, interop  # noqa: E402
from resnet_jax.config import load_config, validate  # noqa: E402
from resnet_jax.errors import ConfigError, WeightsMismatch  # noqa: E402

from conftest import spec  # noqa: E402

MODEL = dict(family="imagenet", variant="residual", shortcut="B", bottleneck_version="v1.5", dtype="float32")
RELATIVE_TOLERANCE = 1e-4
# The imported model evaluated on the fake imagenet2012 of conftest (1000 classes, 40 train / 23 val JPEGs).
SMALL_IMAGENET = ["--config.data.batch_size=8", "--config.data.eval_batch_size=8", "--config.model.bn_group_size=8",
                  "--config.data.image_size=64", "--config.data.normalize=channel_mean_std",
                  "--config.data.eval_resize=torchvision", "--config.model.dtype=float32"]


def _torch_resnet(library: str, depth: int, seed: int = 0) -> torch.nn.Module:
  """A random ResNet in eval mode with random BN affine parameters and running statistics."""
  torch.manual_seed(seed)
  net = getattr(torchvision.models, f"resnet{depth}")(weights=None) if library == "torchvision" \
      else timm.create_model(f"resnet{depth}", pretrained=False)
  with torch.no_grad():
    for module in net.modules():
      if isinstance(module, torch.nn.BatchNorm2d):
        module.weight.uniform_(0.5, 1.5)
        module.bias.normal_(0.0, 0.2)
        module.running_mean.normal_(0.0, 0.2)
        module.running_var.uniform_(0.5, 2.0)
  return net.eval()


def _numpy_state_dict(net: torch.nn.Module) -> dict[str, np.ndarray]:
  return {name: tensor.numpy() for name, tensor in net.state_dict().items()}


def _torch_logits(net: torch.nn.Module, images_nhwc: np.ndarray) -> np.ndarray:
  # Without oneDNN: its per-shape kernel set-up made a ResNet-50 forward ~10x slower on 2 cores.
  with torch.no_grad(), torch.backends.mkldnn.flags(enabled=False):
    return net(torch.from_numpy(np.ascontiguousarray(images_nhwc.transpose(0, 3, 1, 2)))).numpy()


def _jax_logits(model: nnx.Module, images_nhwc: np.ndarray) -> np.ndarray:
  graphdef, state = nnx.split(model)
  return np.asarray(jax.jit(lambda s, x: nnx.merge(graphdef, s)(x, train=False))(state, images_nhwc))


def _relative_difference(a: np.ndarray, b: np.ndarray) -> float:
  return float(np.abs(a - b).max() / np.abs(b).max())


def _images(count: int = 2, size: int = 64) -> np.ndarray:
  return np.random.default_rng(1).normal(size=(count, size, size, 3)).astype(np.float32)


@pytest.mark.parametrize("library, depth", [("torchvision", 18), ("torchvision", 50), ("timm", 18), ("timm", 50)])
def test_import_and_export_keep_the_logits(library, depth):
  net = _torch_resnet(library, depth)
  state_dict = _numpy_state_dict(net)
  model = interop.state_dict_to_model(state_dict, dict(MODEL, depth=depth), num_classes=1000)
  images = _images()
  expected = _torch_logits(net, images)
  difference = _relative_difference(_jax_logits(model, images), expected)
  print(f"{library} resnet{depth}: imported logits, max relative difference {difference:.2e}")
  assert difference < RELATIVE_TOLERANCE

  exported = interop.model_to_state_dict(model, num_batches_tracked=7)
  assert exported.keys() == state_dict.keys()
  fresh = _torch_resnet(library, depth, seed=1)
  fresh.load_state_dict({k: torch.from_numpy(v) for k, v in exported.items()}, strict=True)
  assert int(fresh.bn1.num_batches_tracked) == 7 and fresh.bn1.num_batches_tracked.dtype == torch.int64
  np.testing.assert_array_equal(_torch_logits(fresh, images), expected)  # float32 both ways: exact


def test_timm_resnets_use_torchvision_names_and_shapes():
  for depth in (18, 50):
    timm_shapes = {k: v.shape for k, v in timm.create_model(f"resnet{depth}").state_dict().items()}
    torchvision_shapes = {k: v.shape for k, v in getattr(torchvision.models, f"resnet{depth}")().state_dict().items()}
    assert timm_shapes == torchvision_shapes


@pytest.fixture(scope="module")
def resnet18_weights():
  return _numpy_state_dict(_torch_resnet("torchvision", 18))


@pytest.mark.parametrize("change, named", [
    ("shape", "tensor layer2.0.conv1.weight has shape (128, 64, 3, 2), expected (128, 64, 3, 3)"),
    ("missing", "missing tensor layer3.1.bn2.running_var"),
    ("extra", "extra tensor layer4.1.conv3.weight"),
    ("fc", "tensor fc.bias has shape (999,), expected (1000,)"),
])
def test_a_tensor_that_does_not_fit_is_one_error_naming_it(resnet18_weights, change, named):
  weights = dict(resnet18_weights)
  if change == "shape":
    weights["layer2.0.conv1.weight"] = weights["layer2.0.conv1.weight"][..., :2]
  elif change == "missing":
    del weights["layer3.1.bn2.running_var"]
  elif change == "extra":
    weights["layer4.1.conv3.weight"] = np.zeros((512, 512, 1, 1), np.float32)
  else:
    weights["fc.bias"] = weights["fc.bias"][:999]
  with pytest.raises(WeightsMismatch) as error:
    interop.state_dict_to_model(weights, dict(MODEL, depth=18), num_classes=1000)
  assert named in str(error.value) and "\n" not in str(error.value)
  assert isinstance(error.value, ConfigError)  # the command line reports it as one line, exit 2


def test_num_batches_tracked_may_be_absent(resnet18_weights):
  weights = {k: v for k, v in resnet18_weights.items() if not k.endswith("num_batches_tracked")}
  interop.state_dict_to_model(weights, dict(MODEL, depth=18), num_classes=1000)


def _imagenet_config(arg: str, *overrides: str, data_dir: str = "") -> ml_collections.ConfigDict:
  data = [f"--config.data.data_dir={data_dir}"] if data_dir else []
  return load_config(spec("configs/imagenet.py") + ":" + arg, [*SMALL_IMAGENET, *data, *overrides])


@pytest.mark.parametrize("arg, overrides, named", [
    ("depth=18", (), "model.shortcut='A' does not fit torchvision ResNet weights: they need model.shortcut='B'"),
    ("depth=50", (), "model.bottleneck_version='v1' does not fit torchvision ResNet weights: they need "
                     "model.bottleneck_version='v1.5'"),
    ("depth=18,shortcut=B,variant=plain", (), "model.variant='plain'"),
    ("depth=18,shortcut=B", ("--config.model.width_multiplier=2",), "model.width_multiplier=2"),
    ("depth=18,shortcut=B", ("--config.data.normalize=channel_mean",), "data.normalize='channel_mean'"),
    ("depth=18,shortcut=C", (), "model.shortcut='C'"),
])
def test_a_config_the_weights_cannot_match_is_refused(tmp_path, arg, overrides, named):
  with pytest.raises(ConfigError, match="need") as error:
    interop.import_weights(str(tmp_path / "unread.safetensors"), _imagenet_config(arg, *overrides),
                           str(tmp_path / "run"))
  assert named in str(error.value)
  assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("change, named", [(dict(variant="plain"), "plain"), (dict(bottleneck_version="v1"), "v1"),
                                           (dict(shortcut="C"), "option A or C"), (dict(variant="preact"), "pre-act")])
def test_export_refuses_a_model_torchvision_would_compute_otherwise(change, named):
  """Weights that would load into torchvision (same names and shapes) but compute something else."""
  from resnet_jax.models import build_model
  model = nnx.eval_shape(lambda: build_model(dict(MODEL, depth=50, **change), num_classes=10, in_channels=3, seed=0,
                                             platform="cpu"))
  with pytest.raises(ConfigError, match=f"not torchvision's ResNet: block layer.* is .*{named}"):
    interop.model_to_state_dict(model)


def test_weights_of_another_depth_or_class_count_are_refused(tmp_path, resnet18_weights):
  path = str(tmp_path / "r18.safetensors")
  interop.write_safetensors(path, resnet18_weights)
  with pytest.raises(ConfigError, match=r"model.depth=34 does not fit the weights, a ResNet-18 .*set depth=18"):
    interop.import_weights(path, _imagenet_config("depth=34,shortcut=B"), str(tmp_path / "run"))
  with pytest.raises(ConfigError, match="fc has 1000 outputs but data.name='imagenette' has 10 classes"):
    interop.import_weights(path, _imagenet_config("depth=18,shortcut=B,dataset=imagenette"), str(tmp_path / "run"))
  assert not (tmp_path / "run").exists()


def test_pth_needs_torch_and_says_so(tmp_path, monkeypatch):
  path = tmp_path / "weights.pth"
  path.write_bytes(b"")
  monkeypatch.setitem(sys.modules, "torch", None)
  with pytest.raises(ConfigError, match="needs PyTorch") as error:
    interop.read_state_dict(str(path))
  assert "\n" not in str(error.value)


def test_convert_round_trip_through_the_command_line(tmp_path, capsys, fake_tfds_dir):
  """torch.save'd ResNet-18 -> work directory on the fake ImageNet -> `resnet-jax eval` and the restored
  model give torch's logits -> exported .safetensors -> torchvision load_state_dict(strict=True)."""
  net = _torch_resnet("torchvision", 18)
  pth, workdir, out = tmp_path / "r18.pth", tmp_path / "run", tmp_path / "back.safetensors"
  torch.save(net.state_dict(), pth)
  config_args = ["--config", spec("configs/imagenet.py") + ":depth=18,shortcut=B", *SMALL_IMAGENET,
                 f"--config.data.data_dir={fake_tfds_dir}"]
  assert cli.main(["convert", "--from", "torchvision", "--input", str(pth), *config_args,
                   "--workdir", str(workdir)]) == 0, capsys.readouterr().err
  record = json.loads(capsys.readouterr().out)
  assert record["sha256"] == hashlib.sha256(pth.read_bytes()).hexdigest() and record["format"] == "torch"
  assert json.loads((workdir / interop.IMPORTED_FILE).read_text()) == record
  assert (workdir / "config.json").exists() and (workdir / "environment.json").exists()

  # `resnet-jax eval` streams the fake validation split with torchvision preprocessing; torch on the
  # same uint8 crops, scaled by ImageNet's mean and std, gives the same loss.
  assert cli.main(["eval", "--workdir", str(workdir)]) == 0, capsys.readouterr().err
  result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
  from resnet_jax.data import augment, imagenet
  config = load_config(spec("configs/imagenet.py") + ":depth=18,shortcut=B",
                       [*SMALL_IMAGENET, f"--config.data.data_dir={fake_tfds_dir}"])
  batches = list(imagenet.eval_iterator(config.data, global_batch_size=8, process_index=0, process_count=1,
                                        image_size=64))
  mean, std = augment.normalization_stats(None, "channel_mean_std")
  images = np.concatenate([b["images"] for b in batches]).astype(np.float32) / 255.0
  images = (images - mean) / std
  labels, mask = (np.concatenate([b[k] for b in batches]) for k in ("labels", "mask"))
  logits = torch.from_numpy(_torch_logits(net, images.astype(np.float32)))
  losses = torch.nn.functional.cross_entropy(logits, torch.from_numpy(labels).long(), reduction="none").numpy()
  assert result["step"] == 0 and result["eval_count"] == 23
  np.testing.assert_allclose(result["eval_loss"], (losses * mask).sum() / mask.sum(), rtol=1e-4)

  model, step = interop.load_model(str(workdir))
  assert step == 0
  assert _relative_difference(_jax_logits(model, images[:2]), logits.numpy()[:2]) < RELATIVE_TOLERANCE

  assert cli.main(["convert", "--to", "torchvision", "--workdir", str(workdir), "--output", str(out)]) == 0
  assert json.loads(capsys.readouterr().out)["tensors"] == len(net.state_dict())
  fresh = torchvision.models.resnet18(weights=None).eval()
  fresh.load_state_dict(safetensors.torch.load_file(str(out)), strict=True)
  np.testing.assert_array_equal(_torch_logits(fresh, images[:2]), _torch_logits(net, images[:2]))

  # A second conversion into the run, or over the exported file, is refused and changes nothing.
  before = {p.name: p.stat().st_mtime_ns for p in workdir.iterdir()}
  assert cli.main(["convert", "--from", "torchvision", "--input", str(pth), *config_args,
                   "--workdir", str(workdir)]) == cli.EXIT_BAD_INPUT
  err = capsys.readouterr().err.strip()
  assert "already holds a run" in err and len(err.splitlines()) == 1
  assert {p.name: p.stat().st_mtime_ns for p in workdir.iterdir()} == before
  assert cli.main(["convert", "--to", "torchvision", "--workdir", str(workdir), "--output", str(out)]) == \
      cli.EXIT_BAD_INPUT
  assert "exists" in capsys.readouterr().err


def test_import_into_a_trained_run_is_refused(tmp_path, resnet18_weights):
  path = str(tmp_path / "r18.safetensors")
  interop.write_safetensors(path, resnet18_weights)
  workdir = tmp_path / "trained"
  workdir.mkdir()
  (workdir / "config.json").write_text("{}")
  with pytest.raises(ConfigError, match="already holds a run"):
    interop.import_weights(path, _imagenet_config("depth=18,shortcut=B"), str(workdir))
  assert sorted(p.name for p in workdir.iterdir()) == ["config.json"]


def test_safetensors_import_restores_into_the_analyses_reader(tmp_path, resnet18_weights):
  """An in-memory dataset's imported run is read by resnet_jax.analysis.trained as any trained run."""
  from resnet_jax.analysis import trained
  path = str(tmp_path / "r18.safetensors")
  interop.write_safetensors(path, resnet18_weights)
  config = load_config(spec("configs/imagenet.py") + ":depth=18,shortcut=B,dataset=synthetic",
                       [*SMALL_IMAGENET, "--config.data.num_classes=1000", "--config.data.num_train_examples=8"])
  interop.import_weights(path, config, str(tmp_path / "run"))
  restored = trained.restore(trained.read_checkpoint(str(tmp_path / "run")))
  images = _images()
  net = torchvision.models.resnet18(weights=None).eval()
  net.load_state_dict({k: torch.from_numpy(v) for k, v in resnet18_weights.items()}, strict=True)
  assert _relative_difference(_jax_logits(restored.model(0), images), _torch_logits(net, images)) < RELATIVE_TOLERANCE


# --- Evaluation parity: data.eval_resize=torchvision against torchvision.transforms -------------------------


def _jpeg(height: int, width: int) -> bytes:
  """A smooth pattern plus noise (resizing it without antialias shows), as a JPEG."""
  rng = np.random.default_rng(height * width)
  y, x = np.mgrid[:height, :width]
  pattern = 127 + 60 * (np.sin(x / 7.0) * np.cos(y / 11.0))[..., None] + rng.normal(0, 25, (height, width, 3))
  buffer = io.BytesIO()
  Image.fromarray(pattern.clip(0, 255).astype(np.uint8)).save(buffer, format="JPEG", quality=90)
  return buffer.getvalue()


# 333x257: its 331x256 resize has an odd margin, whose centre offset torchvision rounds half to even.
@pytest.mark.parametrize("height, width", [(300, 400), (333, 257), (500, 301), (256, 256)])
def test_torchvision_eval_resize_matches_torchvision_transforms(height, width):
  import tensorflow as tf
  from torchvision import transforms
  from resnet_jax.data import imagenet_preprocess
  encoded = _jpeg(height, width)
  image = Image.open(io.BytesIO(encoded)).convert("RGB")
  pil_crop = np.asarray(transforms.Compose([transforms.Resize(256), transforms.CenterCrop(224)])(image), np.int32)
  as_tensor = torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1)
  tensor_crop = transforms.Compose([transforms.Resize(256, antialias=True), transforms.CenterCrop(224)])(as_tensor)
  tensor_crop = tensor_crop.permute(1, 2, 0).numpy().astype(np.int32)
  ours = imagenet_preprocess.center_crop(tf.constant(encoded), 224, 0.875, resize="torchvision").numpy()
  assert ours.shape == (224, 224, 3) and ours.dtype == np.uint8
  ours = ours.astype(np.int32)
  # PIL resizes in fixed point: a rounding step apart at most; torchvision's tensor path agrees almost everywhere.
  assert np.abs(ours - pil_crop).max() <= 1 and np.abs(ours - pil_crop).mean() < 0.25
  assert np.abs(ours - tensor_crop).max() <= 1 and np.abs(ours - tensor_crop).mean() < 0.01
  ten = imagenet_preprocess.ten_crop(tf.constant(encoded), 224, 0.875, resize="torchvision").numpy().astype(np.int32)
  top_left, top_right, bottom_left, bottom_right, center = (
      np.asarray(c, np.int32) for c in transforms.Compose([transforms.Resize(256), transforms.TenCrop(224)])(image)[:5])
  for view, reference in zip(ten[:5], (center, top_left, top_right, bottom_left, bottom_right)):
    assert np.abs(view - reference).max() <= 1
  np.testing.assert_array_equal(ten[5:], ten[:5, :, ::-1])
  if (height, width) != (256, 256):  # the paper's resize (no antialias) is visibly another image
    paper = imagenet_preprocess.center_crop(tf.constant(encoded), 224, 0.875).numpy().astype(np.int32)
    assert np.abs(paper - pil_crop).mean() > 1


def test_eval_resize_is_validated():
  config = load_config(spec("configs/imagenet.py"), ["--config.data.eval_resize=bicubic"])
  with pytest.raises(ConfigError, match="data.eval_resize='bicubic' is invalid: allowed values are paper, torchvision"):
    validate(config, num_devices=1)
  config = load_config(spec("configs/cifar10.py"), ["--config.data.eval_resize=pil"])
  with pytest.raises(ConfigError, match="data.eval_resize='pil'"):
    validate(config, num_devices=1)
