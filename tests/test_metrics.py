"""Metrics files: TensorBoard events written without importing PyTorch."""

import subprocess
import sys


def test_metrics_do_not_import_torch_and_torch_still_imports_after(tmp_path):
  code = ("import sys; from resnet_jax.train.metrics import MetricsWriter; w = MetricsWriter(sys.argv[1]); "
          "w.write(1, {'loss': 0.5}); w.close(); print('torch' in sys.modules); import torch; print(torch.ones(1).sum().item())")
  out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, check=True).stdout
  assert out.split() == ["False", "1.0"] and (tmp_path / "tensorboard").is_dir()
