"""The trainer on a streamed (tf.data) dataset: fake imagenette files written by conftest."""

import jax
import numpy as np

from resnet_jax.cli import main
from resnet_jax.config import load_config
from resnet_jax.train.checkpoint import Checkpointer
from resnet_jax.train.loop import setup, train
from resnet_jax.train.metrics import read_metrics


def _config(data_dir, steps, *extra):
  return load_config("configs/imagenet.py:depth=18,dataset=imagenette", [
      f"--config.data.data_dir={data_dir}", "--config.data.image_size=32", "--config.data.batch_size=4",
      "--config.data.eval_batch_size=4", "--config.data.shuffle_buffer=8", "--config.data.scale_range=(36,48)",
      "--config.data.eval_crop_fraction=0.9", "--config.model.width_multiplier=0.125",
      "--config.model.bn_group_size=2", f"--config.train.num_steps={steps}", "--config.train.num_epochs=0",
      "--config.optimizer.schedule=constant", "--config.train.log_every_steps=2", "--config.train.eval_every_steps=2",
      "--config.train.eval_every_epochs=0", "--config.train.checkpoint_every_steps=2", *extra])


def _param_leaves(workdir, like) -> list[np.ndarray]:
  return [np.asarray(x) for x in jax.tree.leaves(Checkpointer(str(workdir)).restore(like).params)]


def test_streamed_training_resumes_exactly_and_counts_eval_once(fake_tfds_dir, tmp_path):
  straight, resumed = tmp_path / "straight", tmp_path / "resumed"
  train(_config(fake_tfds_dir, 4), str(straight))
  train(_config(fake_tfds_dir, 2), str(resumed))
  train(_config(fake_tfds_dir, 4), str(resumed))
  a, b = read_metrics(straight), read_metrics(resumed)
  assert [r["step"] for r in a] == [r["step"] for r in b] == [2, 4]
  for x, y in zip(a, b):
    assert {k: v for k, v in x.items() if k != "examples_per_second"} == \
        {k: v for k, v in y.items() if k != "examples_per_second"}
  assert all(r["eval_count"] == 10 for r in a)  # imagenette fake validation split: 10 examples
  like = setup(_config(fake_tfds_dir, 4)).state
  for p, q in zip(_param_leaves(straight, like), _param_leaves(resumed, like)):
    np.testing.assert_array_equal(p, q)


def test_ten_crop_eval_counts_every_example_once(fake_tfds_dir, tmp_path):
  workdir = tmp_path / "run"
  train(_config(fake_tfds_dir, 2, "--config.data.eval_crops=ten"), str(workdir))
  assert read_metrics(workdir)[-1]["eval_count"] == 10


def test_a_bad_streaming_field_is_one_clear_error(fake_tfds_dir, tmp_path, capsys):
  code = main(["train", "--config", "configs/imagenet.py:depth=18,dataset=imagenette", "--workdir",
               str(tmp_path / "w"), f"--config.data.data_dir={fake_tfds_dir}", "--config.data.train_crop=random"])
  err = capsys.readouterr().err.strip().splitlines()
  assert code == 2 and len(err) == 1 and "data.train_crop" in err[0] and "inception" in err[0]
  assert not (tmp_path / "w").exists()
