"""Your own data: a tfds set written by a builder into a folder, a folder of PNGs and an .npz, all
made here from the same tiny arrays (24 train and 9 test 8x8 grey images, 3 classes), so the three
runs share their compiled programs. Each loads with the right shapes, labels and classes, trains
through the CLI, records where its data came from and refuses to resume on other data; every bad
input is one line, exit 2, before the work directory is written."""

from __future__ import annotations

import csv
import json
import os
import shutil

import numpy as np
import pytest
from PIL import Image

from resnet_jax import cli
from resnet_jax.data import registry
from resnet_jax.data.sources import load_dataset

from conftest import spec
from test_config import _one_line_error, no_model  # noqa: F401 (a fixture)
from test_data import data_config
from test_workdir import snapshot

pytestmark = pytest.mark.usefixtures("compile_cache")
CLASSES = ("cat", "dog", "emu")
TRAIN, TEST = 24, 9
STEPS = ["--config.train.num_steps=4", "--config.train.log_every_steps=2", "--config.train.eval_every_steps=2",
         "--config.train.checkpoint_every_steps=2", "--config.data.batch_size=8", "--config.data.eval_batch_size=8"]


def arrays(seed: int = 0) -> dict[str, np.ndarray]:
  rng = np.random.default_rng(seed)
  return dict(x_train=rng.integers(0, 256, (TRAIN, 8, 8), dtype=np.uint8), y_train=np.arange(TRAIN) % 3,
              x_test=rng.integers(0, 256, (TEST, 8, 8), dtype=np.uint8), y_test=np.arange(TEST) % 3)


def write_folder(root, data: dict, *, test: str = "test") -> str:
  for split, folder in (("train", "train"), ("test", test)):
    for i, (image, label) in enumerate(zip(data[f"x_{split}"], data[f"y_{split}"])):
      path = root / folder / CLASSES[label]
      path.mkdir(parents=True, exist_ok=True)
      Image.fromarray(image).save(path / f"{i:03d}.png")
  return str(root)


def write_tfds(data_dir, data: dict) -> str:
  """Prepare 'own_tiny' (picture: 8x8x1 PNG, kind: ClassLabel, note: Text) and 'own_photos' (photo: JPEGs of
  varying size, thumb: 8x8x1 PNG, label) into `data_dir` with builders tfds never registers: tfds reads them
  from the files, as it reads any set prepared elsewhere."""
  import tensorflow_datasets as tfds
  features = {
      "own_tiny": lambda: {"picture": tfds.features.Image(shape=(8, 8, 1)),
                           "kind": tfds.features.ClassLabel(names=CLASSES), "note": tfds.features.Text()},
      "own_photos": lambda: {"photo": tfds.features.Image(encoding_format="jpeg"),
                             "thumb": tfds.features.Image(shape=(8, 8, 1)),
                             "label": tfds.features.ClassLabel(names=CLASSES)}}

  def example(name, image, label, rng):
    if name == "own_tiny":
      return {"picture": image[..., None], "kind": int(label), "note": "x"}
    return {"photo": rng.integers(0, 256, (*rng.integers(20, 40, 2), 3), dtype=np.uint8), "thumb": image[..., None],
            "label": int(label)}

  with tfds.core.registered.skip_registration():
    for set_name in features:
      class OwnSet(tfds.core.GeneratorBasedBuilder):
        name = set_name
        VERSION = tfds.core.Version("1.0.0")
        code_path = None

        def _info(self):
          return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict(features[self.name]()))

        def _split_generators(self, dl_manager):
          return {split: self._generate_examples(split) for split in ("train", "test")}

        def _generate_examples(self, split):
          rng = np.random.default_rng(len(split))
          for i, (image, label) in enumerate(zip(data[f"x_{split}"], data[f"y_{split}"])):
            yield i, example(self.name, image, label, rng)

      OwnSet(data_dir=str(data_dir)).download_and_prepare()
  return str(data_dir)


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> dict[str, str]:
  """The three forms of arrays(0): data.name and extra overrides of each."""
  root = tmp_path_factory.mktemp("own")
  np.savez(root / "tiny.npz", **arrays())
  tfds_dir = write_tfds(root / "tfds", arrays())
  return {"npz": (f"npz:{root / 'tiny.npz'}", []), "folder": (f"folder:{write_folder(root / 'folder', arrays())}", []),
          "tfds": ("tfds:own_tiny", [f"--config.data.data_dir={tfds_dir}"]), "tfds_dir": tfds_dir, "root": root}


def train(workdir, name: str, *extra: str) -> int:
  return cli.main(["train", "--config", spec("configs/digits.py") + ":depth=8", "--workdir", str(workdir),
                   f"--config.data.name={name}", *STEPS, *extra])


# ----------------------------------------------------------------------------- loading

@pytest.mark.parametrize("form", ["npz", "folder", "tfds"])
def test_each_form_loads_the_arrays_with_their_labels(made, form):
  name, overrides = made[form]
  data = data_config(name, data_dir=made["tfds_dir"] if form == "tfds" else None)
  dataset, source = load_dataset(data), arrays()
  assert dataset.num_classes == 3 and dataset.image_shape == (8, 8, 1)
  for split, part in (("train", dataset.train), ("test", dataset.eval)):
    assert part.images.dtype == np.uint8 and part.labels.dtype == np.int32
    # Every image with its label, in any order (a folder's training images come shuffled).
    expected = sorted((image.tobytes(), label) for image, label in zip(source[f"x_{split}"], source[f"y_{split}"]))
    assert sorted((image.tobytes(), label) for image, label in zip(part.images, part.labels)) == expected
  held = load_dataset(data_config(name, data_dir=data.data_dir, validation_size=6, eval_split="validation"))
  assert len(held.train) == TRAIN - 6 and len(held.eval) == 6
  np.testing.assert_array_equal(held.eval.images, dataset.train.images[-6:])
  if form == "folder":  # held out at random, not the last class
    assert len(set(held.eval.labels.tolist())) > 1
  record = registry.provenance(data)
  assert record["data_fingerprint"].startswith("sha256:") and len(record["data_fingerprint"]) == 71
  assert record["data_streamed"] is False


def test_a_folder_of_colour_images_is_rgb_and_resizes(tmp_path):
  data = arrays()
  colour = {**data, "x_train": np.repeat(data["x_train"][..., None], 3, -1)}
  colour["x_train"][0, 0, 0] = (255, 0, 0)  # one coloured pixel makes the set RGB
  root = write_folder(tmp_path / "c", {**colour, "x_test": np.repeat(data["x_test"][..., None], 3, -1)}, test="val")
  dataset = load_dataset(data_config(f"folder:{root}"))
  assert dataset.image_shape == (8, 8, 3) and len(dataset.eval) == TEST
  grey = dataset.eval.images
  np.testing.assert_array_equal(grey[..., 0], grey[..., 2])  # grey images broadcast over RGB
  resized = load_dataset(data_config(f"folder:{root}", resize_to=4))
  assert resized.image_shape == (4, 4, 3) and resized.num_classes == 3


def test_tfds_features_resizing_and_streaming_follow_the_config(made):
  from resnet_jax.data import imagenet, tfds_data
  tiny = data_config("tfds:own_tiny", data_dir=made["tfds_dir"], resize_to=4)
  assert load_dataset(tiny).image_shape == (4, 4, 1)
  photos = data_config("tfds:own_photos", data_dir=made["tfds_dir"], image_key="thumb")
  assert not registry.is_streamed(photos) and load_dataset(photos).image_shape == (8, 8, 1)
  tiny.in_memory_limit_gb = 1e-6  # 24 x 4 x 4 bytes fit; 1536 do not
  assert not registry.is_streamed(tiny)
  tiny.resize_to = 8
  with pytest.raises(Exception, match="decodes JPEG only"):
    registry.is_streamed(tiny)
  # Varying JPEG sizes stream through the ImageNet pipeline, the features read by their names.
  photos.image_key = "photo"
  assert registry.is_streamed(photos) and tfds_data.provenance(photos)["data_streamed"] is True
  batch = next(imagenet.train_iterator(photos, seed=0, start_step=0, global_batch_size=4, process_index=0,
                                       process_count=1, image_size=16))
  assert batch["images"].shape == (4, 16, 16, 3) and set(batch["labels"].tolist()) <= {0, 1, 2}
  batches = list(imagenet.eval_iterator(photos, global_batch_size=4, process_index=0, process_count=1, image_size=16))
  assert sum(b["mask"].sum() for b in batches) == TEST  # the 'test' split, every example once
  assert imagenet.num_classes("own_photos", made["tfds_dir"]) == 3


# ----------------------------------------------------------------------------- training, resuming

def _kept(workdir) -> dict:
  """The work directory's files, but the writer lock that every run takes and rewrites."""
  return {k: v for k, v in snapshot(workdir).items() if k != "lock"}


def _refused_on_other_data(capsys, workdir, code) -> str:
  return _one_line_error(capsys, code, [f"--workdir {workdir} holds another experiment", "derived.data_fingerprint",
                                        "sha256:", "nothing was changed"])


@pytest.mark.parametrize("form", ["npz", "folder", "tfds"])
def test_each_form_trains_and_refuses_to_resume_on_changed_data(made, form, tmp_path, capsys):
  name, overrides = made[form]
  workdir = tmp_path / "run"
  assert train(workdir, name, *overrides) == 0, capsys.readouterr().err
  capsys.readouterr()
  with open(workdir / "config.json") as f:
    derived = json.load(f)["derived"]
  assert derived["data_fingerprint"].startswith("sha256:") and derived["data_streamed"] is False
  assert form in ("tfds",) or derived["data_source"] == os.path.abspath(name.partition(":")[2])
  metrics = [json.loads(line) for line in open(workdir / "metrics.jsonl")]
  assert [r["step"] for r in metrics if "eval_error" in r] == [2, 4] and metrics[-1]["eval_count"] == TEST
  before = _kept(workdir)
  other = arrays(seed=1)
  if form == "npz":
    np.savez(made["root"] / "tiny.npz", **other)
  elif form == "folder":
    Image.fromarray(other["x_train"][0]).save(os.path.join(name[len("folder:"):], "train", "cat", "000.png"))
  else:  # the same set prepared elsewhere: a copy resumes (finished: nothing to do), other data does not
    copy = shutil.copytree(made["tfds_dir"], tmp_path / "copy")
    assert train(workdir, name, f"--config.data.data_dir={copy}") == 0
    assert "nothing to do" in capsys.readouterr().out
    overrides = [f"--config.data.data_dir={write_tfds(tmp_path / 'other', other)}"]
    capsys.readouterr()  # tfds's progress lines while preparing
  try:
    _refused_on_other_data(capsys, workdir, train(workdir, name, *overrides))
  finally:  # the module's other tests read the original data
    if form == "npz":
      np.savez(made["root"] / "tiny.npz", **arrays())
    elif form == "folder":
      Image.fromarray(arrays()["x_train"][0]).save(os.path.join(name[len("folder:"):], "train", "cat", "000.png"))
  assert _kept(workdir) == before


def test_a_tfds_set_not_held_in_memory_streams_through_the_imagenet_pipeline(made, tmp_path, capsys):
  from resnet_jax.analysis import trained
  workdir = tmp_path / "run"
  code = cli.main(["train", "--config", spec("configs/imagenet.py") + ":depth=18,dataset=tfds:own_photos", "--workdir",
                   str(workdir), f"--config.data.data_dir={made['tfds_dir']}", "--config.data.image_key=photo",
                   "--config.data.image_size=16", "--config.data.batch_size=4", "--config.data.eval_batch_size=4",
                   "--config.data.shuffle_buffer=8", "--config.data.scale_range=(18,24)",
                   "--config.model.width_multiplier=0.125", "--config.model.bn_group_size=2",
                   "--config.train.num_steps=2", "--config.train.num_epochs=0", "--config.optimizer.schedule=constant",
                   "--config.train.log_every_steps=2", "--config.train.eval_every_steps=2",
                   "--config.train.eval_every_epochs=0", "--config.train.checkpoint_every_steps=2"])
  assert code == 0, capsys.readouterr().err
  with open(workdir / "config.json") as f:
    config = json.load(f)
  assert config["derived"]["data_streamed"] is True and config["derived"]["data_eval_split"] == "test"
  assert config["derived"]["data_source"].startswith("tfds own_photos/1.0.0 in ")
  assert [json.loads(line) for line in open(workdir / "metrics.jsonl")][-1]["eval_count"] == TEST
  with pytest.raises(Exception, match="which is streamed: the analyses need a dataset held in memory"):
    trained.read_checkpoint(str(workdir))


def test_eval_analyses_and_the_report_read_an_own_data_run(made, tmp_path, capsys):
  from resnet_jax.analysis import trained
  from resnet_jax.report.index import make_report
  name, _ = made["npz"]
  workdir = tmp_path / "study" / "residual-8"
  assert train(workdir, name) == 0
  assert cli.main(["eval", "--workdir", str(workdir)]) == 0
  assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["eval_count"] == TEST
  models = trained.restore(trained.read_checkpoint(str(workdir)))  # what the landscape and lesion analyses load
  assert models.inputs.num_train == TRAIN and models.inputs.image_shape == (8, 8, 1)
  make_report(str(tmp_path / "study"), formats=("png",))
  assert "| residual | 8 | 74,547 | 1 | 4 |" in (tmp_path / "study" / "report" / "results.md").read_text()
  with open(tmp_path / "study" / "report" / "results.csv") as f:
    assert next(csv.DictReader(f))["eval_protocol"] == "single view"  # held in memory: the whole image once


# ----------------------------------------------------------------------------- bad input

def _npz(tmp_path, **changes) -> str:
  data = {k: v for k, v in {**arrays(), **changes}.items() if v is not None}
  np.savez(tmp_path / "bad.npz", **data)
  return f"npz:{tmp_path / 'bad.npz'}"


def _folder(tmp_path, change) -> str:
  root = tmp_path / "images"
  write_folder(root, arrays())
  change(root)
  return f"folder:{root}"


def _unreadable(root):
  (root / "test" / "dog" / "001.png").write_bytes(b"not a png")


BAD = {  # case: (data.name from tmp_path and the made data, extra overrides, words the line names)
    "unknown kind": (lambda p, m: "csv:x.csv", [], ["data.name='csv:x.csv'", "folder:PATH", "npz:PATH"]),
    "missing folder": (lambda p, m: f"folder:{p / 'nowhere'}", [], ["no such folder", "nowhere"]),
    "empty folder": (lambda p, m: f"folder:{p / 'empty'}", [], ["expected", "train/<class>", "it has no folders"]),
    "no test folder": (lambda p, m: _folder(p, lambda r: shutil.rmtree(r / "test")), [], ["test/<class>", "train/"]),
    "class missing from test": (lambda p, m: _folder(p, lambda r: shutil.rmtree(r / "test" / "emu")), [],
                                ["class 'emu' is in", "train but not in", "test"]),
    "empty class folder": (lambda p, m: _folder(p, lambda r: [f.unlink() for f in (r / "train" / "dog").iterdir()]),
                           [], ["train/dog holds no images"]),
    "mixed sizes": (lambda p, m: _folder(p, lambda r: Image.new("L", (10, 8)).save(r / "test" / "cat" / "000.png")),
                    [], ["is 8x8 but", "000.png is 10x8", "--config.data.resize_to"]),
    "unreadable image": (lambda p, m: _folder(p, _unreadable), [], ["cannot read", "test/dog/001.png"]),
    "missing npz": (lambda p, m: f"npz:{p / 'none.npz'}", [], ["no such file", "none.npz"]),
    "not an npz": (lambda p, m: (p / "x.npz").write_text("hello") and f"npz:{p / 'x.npz'}", [],
                   ["x.npz is not an .npz file"]),
    "missing npz keys": (lambda p, m: _npz(p, x_test=None, y_test=None), [],
                         ["bad.npz lacks x_test, y_test: expected arrays", "(it has x_train, y_train)"]),
    "object arrays": (lambda p, m: _npz(p, y_test=np.array([None] * TEST)), [], ["not a readable .npz", "pickle"]),
    "float images": (lambda p, m: _npz(p, x_train=np.zeros((TRAIN, 8, 8), np.float32)), [],
                     ["x_train is float32", "uint8"]),
    "channels first": (lambda p, m: _npz(p, x_train=np.zeros((TRAIN, 3, 8, 8), np.uint8)), [],
                       ["x_train has shape (24, 3, 8, 8)", "channels last"]),
    "negative label": (lambda p, m: _npz(p, y_train=np.arange(TRAIN) % 3 - 1), [],
                       ["y_train has a negative label (-1)"]),
    "test label out of range": (lambda p, m: _npz(p, y_test=np.arange(TEST) % 4), [],
                                ["y_test has label 3", "0..2"]),
    "labels not matching images": (lambda p, m: _npz(p, y_train=np.zeros(5, np.int64)), [], ["y_train has shape (5,)"]),
    "unknown tfds name": (lambda p, m: "tfds:no_such_set", ["data_dir"], ["has no data set 'no_such_set'"]),
    "tfds set not prepared": (lambda p, m: "tfds:mnist", ["empty_dir"], ["'tfds:mnist': mnist is not prepared in",
                                                                        "tfds build mnist"]),
    "two image features": (lambda p, m: "tfds:own_photos", ["data_dir"], ["2 Image features", "photo (Image)",
                                                                          "--config.data.image_key"]),
    "unknown tfds split": (lambda p, m: "tfds:own_tiny", ["data_dir", "--config.data.tfds_eval_split=valid"],
                           ["data.tfds_eval_split='valid' is not a split", "train, test"]),
    "streamed png": (lambda p, m: "tfds:own_tiny", ["data_dir", "--config.data.in_memory_limit_gb=0"],
                     ["would stream", "decodes JPEG only", "in_memory_limit_gb"]),
    "resize of arrays": (lambda p, m: m["npz"][0], ["--config.data.resize_to=4"], ["data.resize_to=4 applies to"]),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_data_is_one_line_and_writes_nothing(case, made, tmp_path, capsys, no_model):
  make, overrides, named = BAD[case]
  name = make(tmp_path, made)
  (tmp_path / "empty").mkdir()
  places = {"data_dir": made["tfds_dir"], "empty_dir": tmp_path / "empty"}
  overrides = [f"--config.data.data_dir={places[o]}" if o in places else o for o in overrides]
  workdir = tmp_path / "run"
  _one_line_error(capsys, train(workdir, name, *overrides), named)
  assert not workdir.exists() and not list((tmp_path / "empty").iterdir())  # nothing written, nothing downloaded
