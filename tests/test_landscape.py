"""Loss-landscape slices (Li et al. 2018): filter normalisation, the trained point, seeding, records kept
on re-runs, figures and the command line."""

from __future__ import annotations

import json
import os

import jax
import numpy as np
import optax
import pytest
from flax import nnx

from _analysis_workdirs import root, run_cli  # noqa: F401 (root is a fixture)
from resnet_jax.errors import ConfigError
from resnet_jax.analysis import landscape
from resnet_jax.report import landscape_plots
from resnet_jax.models import build_model

SMALL = landscape.LandscapeOptions(grid=3, line=5, num_examples=50)


def test_each_direction_filter_has_the_norm_of_its_weight_filter():
  model = build_model({"family": "cifar", "depth": 8, "variant": "residual", "shortcut": "B"}, num_classes=10,
                      in_channels=1, seed=0, platform="cpu")
  params = nnx.state(model, nnx.Param)
  direction = landscape.filter_normalized_direction(np.random.default_rng(0), params)
  checked = 0
  for (path, w), d in zip(jax.tree_util.tree_leaves_with_path(params), jax.tree.leaves(direction)):
    w, d = np.asarray(w), np.asarray(d)
    assert d.shape == w.shape and d.dtype == w.dtype
    if w.ndim <= 1:  # biases, BatchNorm scale and bias: not moved
      np.testing.assert_array_equal(d, 0, err_msg=jax.tree_util.keystr(path))
      continue
    filters_d, filters_w = d.reshape(-1, d.shape[-1]), w.reshape(-1, w.shape[-1])  # a column per output channel
    np.testing.assert_allclose(np.linalg.norm(filters_d, axis=0), np.linalg.norm(filters_w, axis=0), rtol=1e-5)
    assert not np.allclose(filters_d, filters_w)  # random, not w itself
    checked += 1
  assert checked == 7 + 2 + 1  # 7 3x3 convs, 2 option-B projections, the dense layer
  again = landscape.filter_normalized_direction(np.random.default_rng(0), params)
  for a, b in zip(jax.tree.leaves(direction), jax.tree.leaves(again)):
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("field, value, flag", [
    ("grid", 0, "--grid=0"), ("grid", 4, "--grid=4"), ("line", 1, "--line=1"), ("span", 0.0, "--span=0.0"),
    ("num_examples", 0, "--examples=0"), ("points_per_call", 0, "--points-per-call=0")])
def test_bad_options_name_the_option_and_allowed_values(field, value, flag):
  with pytest.raises(ConfigError, match=f"landscape {flag} is invalid: allowed values are"):
    landscape.LandscapeOptions(**{field: value})


def test_zero_coefficient_is_the_trained_models_loss_for_every_seed(root):
  from resnet_jax.data.augment import normalize
  from resnet_jax.analysis.trained import read_checkpoint, restore
  workdir = str(root / "residual-8")
  paths = landscape.run_landscape(workdir, SMALL, all_seeds=True)
  assert paths == [os.path.join(workdir, f"seed{s}", "analysis", "landscape.json") for s in (0, 1)]
  trained = restore(read_checkpoint(workdir))
  data = trained.inputs.data
  picked = np.sort(np.random.default_rng(SMALL.seed).permutation(trained.inputs.num_train)[:SMALL.num_examples])
  images, labels = normalize(data.train_images[picked], data.mean, data.std), data.train_labels[picked]
  losses = []
  for index, path in enumerate(paths):
    record = json.loads(open(path).read())
    logits = trained.model(index)(images, train=False)  # BatchNorm with the trained running statistics
    loss = float(optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean())
    error = float(np.mean(np.argmax(logits, -1) != labels))
    assert record["trained"]["loss"] == pytest.approx(loss, rel=1e-5)
    assert record["trained"]["error"] == pytest.approx(error, abs=1e-6)
    assert record["surface"]["loss"][1][1] == pytest.approx(loss, rel=1e-5)  # the middle of the 3x3 grid
    assert record["line"]["coefficients"] == [-1.0, -0.5, 0.0, 0.5, 1.0]
    assert record["num_examples"] == 50 and record["direction_seed"] == 0 and record["key"]["step"] == 8
    assert max(record["line"]["loss"]) > 2 * loss  # a step of the weights' own size leaves the minimum
    losses.append(loss)
  assert losses[0] != losses[1]  # two models


def test_same_seed_same_picture_and_reruns_keep_the_record(root):
  workdir = str(root / "plain-8")
  (path,) = landscape.run_landscape(workdir, SMALL)
  first = json.loads(open(path).read())
  stamp = os.path.getmtime(path)
  assert landscape.run_landscape(workdir, SMALL) == [path] and os.path.getmtime(path) == stamp
  os.remove(path)
  again = json.loads(open(landscape.run_landscape(workdir, SMALL)[0]).read())
  assert (again["line"], again["surface"]) == (first["line"], first["surface"])
  other = json.loads(open(landscape.run_landscape(workdir, landscape.LandscapeOptions(
      grid=3, line=5, num_examples=50, seed=1))[0]).read())
  assert other["key"]["options"]["seed"] == 1  # other directions and another subset of examples
  assert other["line"]["loss"] != first["line"]["loss"]


def test_study_figures_place_plain_and_residual_side_by_side(root, tmp_path):
  from resnet_jax.report.runs import load_runs
  for member in ("residual-8", "plain-8"):
    landscape.run_landscape(str(root / member), SMALL)
  study = load_runs(str(root))
  assert landscape_plots.plot_landscapes(study, str(tmp_path / "contours"), ("png",)) == [str(tmp_path / "contours.png")]
  assert landscape_plots.plot_landscape_slices(study, str(tmp_path / "slices"), ("png",)) == [
      str(tmp_path / "slices.png")]


def test_command_line_refuses_bad_input_in_one_line(root, tmp_path):
  for args, message in ((["--workdir", str(tmp_path)], "has no checkpoint"),
                        (["--workdir", str(root / "plain-8"), "--grid", "0"], "landscape --grid=0 is invalid"),
                        (["--workdir", str(root / "plain-8"), "--examples", "5000"], "--examples=5000 is invalid")):
    failed = run_cli("analyze", "landscape", *args)
    assert failed.returncode == 2 and message in failed.stderr
    assert failed.stderr.strip().count("\n") == 0, failed.stderr
