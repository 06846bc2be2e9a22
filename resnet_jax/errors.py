"""The errors a user can fix: the command line reports each as one line and exits with code 2."""


class ConfigError(ValueError):
  """A config field, argument or file has a value the run cannot use."""


class DatasetUnavailable(RuntimeError):
  """The dataset is not on this machine; the message says how to get it."""


class WeightsMismatch(ConfigError):
  """A weights file does not fit the model: a tensor missing, extra or of another shape."""
