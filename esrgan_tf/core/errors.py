"""The error every model loader raises: a model spec that cannot be resolved or loaded.

It sits at the bottom so that checkpoint readers, exporters, engines and the resolver raise the
same type without importing one another; callers catch this one.
"""


class ModelError(Exception):
  """A model spec that cannot be resolved or loaded; the message names the spec and the cause."""
