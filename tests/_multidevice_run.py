"""Helper for the multi-device tests: runs tasks on however many devices this process has.

JAX reads XLA_FLAGS=--xla_force_host_platform_device_count=N only at start-up, so the tests
start this file in a subprocess per device count:

  XLA_FLAGS=--xla_force_host_platform_device_count=8 python tests/_multidevice_run.py '<tasks json>'

It prints one line `RESULT <json>`: a list with one result per task. The same functions are
imported by the tests to compute the single-device reference in-process.

Tasks (dicts with a "kind"):
  train      {"config": spec, "overrides": [...], "steps": k}: k train steps on the config's
             data; per-step loss / error / grad_norm and the final BatchNorm running statistics.
  eval_count {"num_examples": n, "eval_batch_size": b}: a random n-example eval split, padded
             with step.pad_eval_split, evaluated over a mesh of every device; plus an unbatched
             single-call reference error of the same model.
  cli        {"argv": [...]}: resnet_jax.cli.main(argv), its exit code and stderr.
  lowered    {"config": spec, "overrides": [...], "platform": "cuda", "generic": bool}: the trainer's train and
             eval steps lowered for the platform (`generic`: with JAX's own layers and seeds vmapped, the
             program without any platform layer); their StableHLO operations and shardings.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _spec(spec: str) -> str:
  """configs/x.py[:args] relative to the repository, whatever the working directory."""
  path, sep, arg = spec.partition(":")
  return os.path.join(REPO, path) + sep + arg


def run_train(task: dict) -> dict:
  import jax
  import numpy as np

  from resnet_jax.config import load_config
  from resnet_jax.train.loop import setup

  exp = setup(load_config(_spec(task["config"]), task.get("overrides", [])))
  state, history, batches = exp.state, [], exp.inputs.train_batches(0)
  for _ in range(task["steps"]):
    state, metrics = exp.train_step(state, next(batches))
    history.append({k: float(np.asarray(v)) for k, v in jax.device_get(metrics).items()})
  batch_stats = [np.asarray(x, np.float64).ravel().tolist() for x in jax.tree.leaves(jax.device_get(state.batch_stats))]
  return dict(devices=jax.device_count(), history=history, batch_stats=batch_stats)


def run_eval_count(task: dict) -> dict:
  import jax
  import jax.numpy as jnp
  import numpy as np
  from flax import nnx

  from resnet_jax.config import load_config
  from resnet_jax.data.augment import normalization_stats, normalize
  from resnet_jax.train.loop import setup
  from resnet_jax.train.parallel import make_mesh, put_replicated
  from resnet_jax.train.step import BoundStep, DeviceData, StepSettings, evaluate, eval_step, pad_eval_split

  n, batch = task["num_examples"], task["eval_batch_size"]
  config = load_config(_spec("configs/synthetic.py:depth=8,image_size=8,batch=24,num_classes=10,dtype=float32"),
                       [f"--config.data.eval_batch_size={batch}"])
  exp = setup(config)  # the model; the eval split is built here
  rng = np.random.RandomState(1)
  images = rng.randint(0, 256, (n, 8, 8, 3)).astype(np.uint8)
  labels = rng.randint(0, 10, n).astype(np.int32)
  mean, std = normalization_stats(images, "pixel_mean")
  eval_images, eval_labels, eval_mask = pad_eval_split(images, labels, batch)
  mesh = make_mesh()
  data = put_replicated(DeviceData(images[:batch], labels[:batch], eval_images, eval_labels, eval_mask, mean, std),
                        mesh)
  bound = BoundStep(eval_step, StepSettings.of(exp.config, batch, mesh, exp.graphdef))
  batches = [(data, jnp.asarray(i)) for i in range(len(eval_mask) // batch)]
  result = {k: float(np.asarray(v).reshape(-1)[0]) for k, v in evaluate(bound, exp.state, batches).items()}
  # Reference: the same model on the whole split in one call, no padding, no mesh.
  state = jax.device_get(exp.state)
  model = nnx.merge(exp.graphdef, state.params, state.batch_stats)
  logits = np.asarray(model(normalize(images, mean, std), train=False))
  return dict(devices=jax.device_count(), padded=len(eval_mask), **result,
              reference_error=float(np.mean(logits.argmax(-1) != labels)))


def run_cli(task: dict) -> dict:
  from resnet_jax.cli import main
  stderr = io.StringIO()
  with contextlib.redirect_stderr(stderr):
    code = main(task["argv"])
  return dict(code=code, stderr=stderr.getvalue())


def run_lowered(task: dict) -> dict:
  import jax

  from resnet_jax import platforms
  from resnet_jax.config import load_config
  from resnet_jax.models.layers import Layers
  from resnet_jax.train.loop import setup

  overrides = list(task.get("overrides", []))
  if task.get("generic"):
    platforms.LAYERS = Layers()  # this process only: the trainer builds its models with platforms.LAYERS
    overrides.append("--config.train.seeds_together=vmap")
  exp = setup(load_config(_spec(task["config"]), overrides))
  lowering = dict(lowering_platforms=(task["platform"],))
  train = exp.train_step.trace(exp.state, next(exp.inputs.train_batches(0))).lower(**lowering)
  evaluate = exp.eval_step.trace(exp.state, *next(exp.inputs.eval_batches())).lower(**lowering)
  return dict(devices=jax.device_count(), train=_program(train), eval=_program(evaluate))


def _program(lowered) -> dict:
  """Operations by name, the convolutions' result element types, the batch's sharding constraints, how many
  arguments are replicated and how many sharded, and whether every leaf of the state (the first argument)
  is donated."""
  import collections
  import re

  import jax

  text = lowered.as_text()
  main = text[text.index("func.func public @main("):]
  signature = main[:main.index("{\n")]
  sharding = r"sdy\.sharding<@mesh, (\[[^\]]*\])>"
  shardings = re.findall(r"%arg\d+: tensor<[^>]*> \{[^%]*?sdy\.sharding = #" + sharding, signature)
  return dict(
      ops=dict(collections.Counter(re.findall(r"stablehlo\.(\w+)", text))),
      convolution_types=sorted(set(re.findall(r"stablehlo\.convolution\(.*-> tensor<[^>]*x(\w+)>", text))),
      batch_constraints=sorted({dims for dims in re.findall(r"sdy\.sharding_constraint %\w+ <@mesh, (\[[^\]]*\])>",
                                                            text) if "data" in dims}),
      replicated_arguments=sum(set(re.findall(r"\{[^}]*\}", dims)) <= {"{}"} for dims in shardings),
      sharded_arguments=sum(not set(re.findall(r"\{[^}]*\}", dims)) <= {"{}"} for dims in shardings),
      state_donated=all(info.donated for info in jax.tree.leaves(lowered.args_info[0][0])))


RUNNERS = {"train": run_train, "eval_count": run_eval_count, "cli": run_cli, "lowered": run_lowered}


def run_tasks(tasks: list[dict]) -> list[dict]:
  return [RUNNERS[task["kind"]](task) for task in tasks]


if __name__ == "__main__":
  results = run_tasks(json.loads(sys.argv[1]))
  print("RESULT " + json.dumps(results), flush=True)
