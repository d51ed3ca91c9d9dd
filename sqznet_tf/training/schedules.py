"""Learning-rate schedules (per optimizer step), serialisable like tfmot's and Keras' own.

- poly: Caffe's "poly" policy, lr = base_lr * (1 - step / total_steps) ^ power; the SqueezeNet
  solver uses power 1 (linear decay to 0 over 170,000 iterations).
- cosine: half-cosine decay to 0.
- constant.
Each can be preceded by a linear warm-up from 0 over `warmup_steps`.
"""

from sqznet_tf._keras import keras, tf
from sqznet_tf.errors import SqznetError
from sqznet_tf.training.config import SCHEDULES  # noqa: F401  (the names live with the config, TF-free)


class PolyDecay(keras.optimizers.schedules.LearningRateSchedule):
  """Caffe's "poly" learning-rate policy."""

  def __init__(self, base_lr: float, total_steps: int, power: float = 1.0):
    self.base_lr, self.total_steps, self.power = float(base_lr), int(total_steps), float(power)

  def __call__(self, step):
    frac = tf.minimum(tf.cast(step, tf.float32) / float(max(self.total_steps, 1)), 1.0)
    return self.base_lr * tf.pow(1.0 - frac, self.power)

  def get_config(self):
    return {"base_lr": self.base_lr, "total_steps": self.total_steps, "power": self.power}


class WarmUp(keras.optimizers.schedules.LearningRateSchedule):
  """Linear warm-up from 0 to the wrapped schedule's value over `warmup_steps`, then the schedule."""

  def __init__(self, schedule, warmup_steps: int):
    self.schedule, self.warmup_steps = schedule, int(warmup_steps)

  def __call__(self, step):
    step_f = tf.cast(step, tf.float32)
    after = self.schedule(tf.maximum(step_f - self.warmup_steps, 0.0))
    ramp = self.schedule(0.0) * step_f / float(max(self.warmup_steps, 1))
    return tf.where(step_f < self.warmup_steps, ramp, after)

  def get_config(self):
    return {"schedule": keras.optimizers.schedules.serialize(self.schedule), "warmup_steps": self.warmup_steps}

  @classmethod
  def from_config(cls, config):
    config = dict(config)
    config["schedule"] = keras.optimizers.schedules.deserialize(
        config["schedule"], custom_objects={"PolyDecay": PolyDecay})
    return cls(**config)


def make_schedule(name: str, base_lr: float, total_steps: int, warmup_steps: int = 0):
  """The schedule `name` over `total_steps` optimizer steps (warm-up included)."""
  if name not in SCHEDULES:
    raise SqznetError(f"lr_schedule={name!r} is not accepted; expected one of {', '.join(SCHEDULES)}")
  if not base_lr > 0:
    raise SqznetError(f"learning_rate={base_lr!r} is not accepted; expected a number > 0")
  decay_steps = max(total_steps - warmup_steps, 1)
  if name == "poly":
    s = PolyDecay(base_lr, decay_steps, 1.0)
  elif name == "cosine":
    s = keras.optimizers.schedules.CosineDecay(base_lr, decay_steps)
  else:
    s = PolyDecay(base_lr, decay_steps, 0.0)  # power 0: constant
  return WarmUp(s, warmup_steps) if warmup_steps > 0 else s


CUSTOM_OBJECTS = {"PolyDecay": PolyDecay, "WarmUp": WarmUp}
