"""TF distribution strategies by name: default, mirrored, multi_worker_mirrored, tpu."""

import json
import os
from typing import Optional

from sqznet_tf._keras import tf
from sqznet_tf.errors import SqznetError
from sqznet_tf.training.config import STRATEGIES  # noqa: F401  (the names live with the config, TF-free)


def split_cpu(n: int) -> None:
  """Makes `n` logical CPU devices (to run MirroredStrategy on one machine without GPUs).

  Must run before TensorFlow initialises its devices (before the first op).
  """
  cpus = tf.config.list_physical_devices("CPU")
  try:
    tf.config.set_logical_device_configuration(cpus[0], [tf.config.LogicalDeviceConfiguration()] * n)
  except RuntimeError:
    if len(tf.config.list_logical_devices("CPU")) != n:
      raise SqznetError(f"cannot split the CPU into {n} devices: TensorFlow is already initialised "
                        "(set --cpu_devices before anything else runs)") from None


def make_strategy(name: str, tpu: Optional[str] = None, cpu_devices: Optional[int] = None):
  """Creates the strategy `name`.

  Args:
    name: default (one device), mirrored (all local GPUs, or `cpu_devices` logical CPUs),
      multi_worker_mirrored (reads TF_CONFIG), tpu (`tpu` is the resolver address or name).
    tpu: TPU address for name="tpu" ("" or "local" for a TPU VM).
    cpu_devices: split the CPU into this many logical devices first.
  """
  if name not in STRATEGIES:
    raise SqznetError(f"strategy {name!r} is not accepted; expected one of {', '.join(STRATEGIES)}")
  if cpu_devices:
    split_cpu(cpu_devices)
  if name == "default":
    return tf.distribute.get_strategy()
  if name == "mirrored":
    gpus = tf.config.list_logical_devices("GPU")
    if gpus:
      return tf.distribute.MirroredStrategy()
    cpus = [d.name for d in tf.config.list_logical_devices("CPU")]
    return tf.distribute.MirroredStrategy(devices=cpus)
  if name == "multi_worker_mirrored":
    if "TF_CONFIG" not in os.environ:
      raise SqznetError("strategy multi_worker_mirrored needs TF_CONFIG (cluster and task) in the environment")
    try:
      json.loads(os.environ["TF_CONFIG"])
    except ValueError:
      raise SqznetError("TF_CONFIG is not valid JSON") from None
    return tf.distribute.MultiWorkerMirroredStrategy()
  try:
    resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu="" if tpu in (None, "local") else tpu)
    tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
  except (ValueError, RuntimeError, tf.errors.NotFoundError) as e:
    raise SqznetError(f"no TPU found at {tpu or 'local'!r}: {str(e).splitlines()[0][:160]}") from None
  return tf.distribute.TPUStrategy(resolver)


def task_info():
  """(task_type, task_id) from TF_CONFIG; (None, None) outside a cluster."""
  try:
    cfg = json.loads(os.environ.get("TF_CONFIG", "{}"))
  except ValueError:
    return None, None
  task = cfg.get("task", {})
  return task.get("type"), task.get("index")


def is_chief() -> bool:
  """Whether this process writes the final outputs (worker 0 when there is no chief task)."""
  task_type, task_id = task_info()
  return task_type in (None, "chief") or (task_type == "worker" and task_id == 0)
