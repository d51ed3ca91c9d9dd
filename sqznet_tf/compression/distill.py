"""Codebook fine-tuning by distillation: train only the shared values, against a teacher, without labels.

After weight sharing (`sharing.share`) every kernel is `codebook[codes]`: a few shared values per
layer (2^bits - 1 beside the reserved zero) and one fixed code per weight. Deep Compression
trains those values with the sum of the gradients of the weights that share each one. Here the
loss needs no labels: the student (the weight-shared model) is trained to match the teacher (the
model before sharing) on unlabelled photos, by the Kullback-Leibler divergence of their
predictions at a temperature (Hinton et al., 2015). Every weight's code and every zero stay
fixed, so the result is written as a `.sqz` like any other shared model; with so few trained
numbers (26 layers x 64 values at 6 bits for SqueezeNet) a few hundred photos cannot be memorised.
With `reassign` the codes move as well (straight-through latent weights, each mapped to the
nearest shared value after every step); zeros stay zeros either way.

- `DistillConfig`: data, epochs, optimiser and what else trains (biases and batch-norm offsets).
- `distill(student, teacher, shared, cfg)`: the training loop (a compiled step: teacher and
  student forward passes, one gradient of the kernels, summed per code with
  `unsorted_segment_sum`, an Adam step on each layer's codebook in units of the layer's weight
  scale, kernels rewritten from the codebooks). Resumable: the codebooks, trained offsets and
  optimiser state are checkpointed after every epoch in `cfg.work_dir`; a run started again with
  the same settings continues from the last finished epoch.
- `load_images` / `augmented` / `centre_crops`: the unlabelled photos (any folder of images,
  labels ignored), decoded once and kept in memory at the preprocessing's resize size.
- `logits_model`: the model's output before its softmax (or log-probabilities when there is none
  to strip), what the divergence is taken on.
"""

import hashlib
import json
import os
import time
from typing import Callable, Dict, List, Optional

import numpy as np

from sqznet_tf._keras import keras, tf
from sqznet_tf.compression import sharing
from sqznet_tf.compression.config import DistillConfig
from sqznet_tf.data import pipeline, preprocessing
from sqznet_tf.errors import SqznetError
from sqznet_tf.io import write_json_atomic

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif")
STATE = "distill.json"
LOG = "distill_log.csv"


def image_files(folder: str, limit: Optional[int] = None) -> List[str]:
  """Every image under `folder` (recursively), sorted; raises SqznetError when there is none."""
  out = []
  for root, dirs, files in os.walk(folder):
    dirs[:] = sorted(d for d in dirs if not d.startswith("."))
    out.extend(os.path.join(root, f) for f in sorted(files)
               if f.lower().endswith(IMAGE_SUFFIXES) and not f.startswith("."))
  if not out:
    raise SqznetError(f"no images (.jpg, .jpeg, .png, .bmp, .gif) under {folder!r}")
  return out[:limit] if limit else out


def load_images(files: List[str], prep: preprocessing.Preprocessing, log: Callable[[str], None] = lambda s: None):
  """uint8 (n, R, R, 3) RGB: each photo resized as `prep` says (R = its resize size; a shorter-side
  resize is centre-cropped to R x R), decoded once. Unreadable files are skipped with a line in `log`."""
  size = int(prep.resize_size)
  out, skipped = [], 0
  for path in files:
    try:
      with open(path, "rb") as f:
        img = preprocessing.decode_image_tf(f.read())
    except (OSError, SqznetError) as e:
      skipped += 1
      log(f"skipped {path}: {e}")
      continue
    img = tf.cast(img, tf.float32)
    if prep.resize == "square":
      img = tf.image.resize(img, [size, size], method=prep.method, antialias=prep.antialias)
    else:
      h, w = int(img.shape[0]), int(img.shape[1])
      r = size / min(h, w)
      img = tf.image.resize(img, [max(size, round(h * r)), max(size, round(w * r))], method=prep.method,
                            antialias=prep.antialias)
      img = tf.image.resize_with_crop_or_pad(img, size, size)
    out.append(np.clip(np.round(img.numpy()), 0, 255).astype(np.uint8))
  if not out:
    raise SqznetError(f"none of the {len(files)} distillation photos could be read")
  return np.stack(out)


def _normalise(x, prep):
  return preprocessing.normalise(tf.cast(x, tf.float32), prep)


def augmented(images: np.ndarray, prep, batch_size: int, seed: int, augment: bool = True, mixup: bool = False):
  """A tf.data pass: shuffled random crops (crop size of `prep`) and flips, normalised; with
  `mixup`, each photo blended with another of its batch (weight uniform in [0, 1]): the teacher
  labels every blend, so each pass shows new inputs (function matching, Beyer et al. 2022)."""
  crop = int(prep.crop_size)
  ds = tf.data.Dataset.from_tensor_slices(images).shuffle(len(images), seed=seed, reshuffle_each_iteration=True)

  def aug(x):
    if augment:
      x = tf.image.random_crop(x, [crop, crop, 3])
      x = tf.image.random_flip_left_right(x)
    else:
      x = tf.image.resize_with_crop_or_pad(x, crop, crop)
    return _normalise(x, prep)
  ds = ds.map(aug, num_parallel_calls=tf.data.AUTOTUNE).batch(batch_size)
  if mixup:
    def mix(x):
      w = tf.random.uniform([tf.shape(x)[0], 1, 1, 1])
      return w * x + (1 - w) * tf.reverse(x, axis=[0])
    ds = ds.map(mix)
  return ds.with_options(pipeline.dataset_options(deterministic=True)).prefetch(2)


EVAL_BATCH = 32  # photos per forward pass of the epochs' check (centre crops)


def centre_crops(images: np.ndarray, prep, batch_size: int):
  crop = int(prep.crop_size)
  ds = tf.data.Dataset.from_tensor_slices(images)
  return ds.map(lambda x: _normalise(tf.image.resize_with_crop_or_pad(x, crop, crop), prep)).batch(batch_size)


def logits_model(model):
  """`model` without its final softmax: a model of the same inputs giving logits.

  A model whose last layer is a softmax activation gives that layer's input; otherwise the
  outputs are taken as they are (logits, or probabilities, whose logarithm the loss then uses:
  softmax(log p) = p).
  """
  last = model.layers[-1]
  act = getattr(last, "activation", None)
  if isinstance(last, keras.layers.Activation) and getattr(act, "__name__", "") == "softmax":
    return keras.Model(model.inputs, last.input), True
  if isinstance(last, keras.layers.Softmax):
    return keras.Model(model.inputs, last.input), True
  return model, getattr(act, "__name__", "") != "softmax"


def feature_model(model, names: List[str]):
  """A model of `model`'s inputs giving the outputs of the layers `names` (for feature matching)."""
  return keras.Model(model.inputs, [model.get_layer(n).output for n in names])


def feature_loss(teacher_features, student_features):
  """Mean over layers of the squared error of the features, each relative to the teacher's mean square."""
  losses = [tf.reduce_mean(tf.square(s - t)) / (tf.reduce_mean(tf.square(t)) + 1e-12)
            for t, s in zip(teacher_features, student_features)]
  return tf.add_n(losses) / len(losses)


def as_logits(out, is_logits: bool):
  return out if is_logits else tf.math.log(tf.maximum(out, 1e-12))


def divergence(teacher_logits, student_logits, temperature: float):
  """Mean KL(teacher || student) of the softened predictions, times T^2 (gradient scale of T = 1)."""
  t = tf.nn.softmax(teacher_logits / temperature)
  log_s = tf.nn.log_softmax(student_logits / temperature)
  log_t = tf.nn.log_softmax(teacher_logits / temperature)
  return tf.reduce_mean(tf.reduce_sum(t * (log_t - log_s), axis=-1)) * temperature ** 2


def divergence_fn(teacher, batches, temperature: float) -> Callable[[object], float]:
  """model -> mean divergence of its predictions from the teacher's on `batches` (the teacher's
  logits computed once)."""
  t_logits, t_is = logits_model(teacher)
  targets = [as_logits(t_logits(x, training=False), t_is) for x in batches]

  cache = {}

  def fn(model) -> float:
    if id(model) not in cache:
      cache[id(model)] = logits_model(model)
    s_logits, s_is = cache[id(model)]
    return float(np.mean([float(divergence(t, as_logits(s_logits(x, training=False), s_is), temperature))
                          for x, t in zip(batches, targets)]))
  return fn


def fisher(teacher, names: List[str], images, log: Callable[[str], None] = lambda s: None) -> Dict[str, np.ndarray]:
  """Per weight of each layer in `names`: the sum over `images` (a batch array or a dataset of
  batches) of the squared gradient of the teacher's log-probability of its own top-1 class (the
  empirical Fisher information), one photo at a time. Weights whose change moves the prediction
  most get the largest values: what `sharing.share(importance=)` weighs its k-means with."""
  logits, is_logits = logits_model(teacher)
  kernels = [teacher.get_layer(n).kernel for n in names]
  sums = [np.zeros(k.shape, np.float64) for k in kernels]

  @tf.function
  def grads(x):
    with tf.GradientTape() as tape:
      lp = tf.nn.log_softmax(as_logits(logits(x, training=False), is_logits))
      top = tf.reduce_sum(tf.reduce_max(lp, axis=-1))
    return tape.gradient(top, kernels)
  n = 0
  for batch in images:
    for i in range(int(batch.shape[0])):
      for acc, g in zip(sums, grads(batch[i:i + 1])):
        acc += np.square(g.numpy().astype(np.float64))
      n += 1
  log(f"Fisher information of {len(names)} kernels from {n} photos")
  return dict(zip(names, sums))


def _offsets(model, names: List[str]) -> list:
  """Biases of the coded layers and batch-norm offsets (beta): what `train_offsets` trains."""
  out = []
  for layer in model.layers:
    if layer.name in names and getattr(layer, "bias", None) is not None:
      out.append(layer.bias)
    elif isinstance(layer, keras.layers.BatchNormalization) and layer.beta is not None:
      out.append(layer.beta)
  return out


def _codes_digest(shared: Dict[str, sharing.Shared]) -> str:
  h = hashlib.sha256()
  for name in sorted(shared):
    h.update(name.encode())
    h.update(np.ascontiguousarray(shared[name].codes).tobytes())
  return h.hexdigest()[:16]


class _Codebooks:
  """Each coded layer's shared values as a trainable variable (entry 0, the zero, stays out).

  With `latent_kernels` (the teacher's kernels by layer name) the codes move too: each non-zero
  weight keeps a latent value, in units of its layer's scale, that `reassign` maps to the code of
  the nearest shared value.
  """

  def __init__(self, model, shared: Dict[str, sharing.Shared], latent_kernels: Optional[Dict[str, np.ndarray]] = None):
    by_name = {l.name: l for l in model.layers}
    self.names = list(shared)
    self.kernels, self.books, self.codes, self.scales, self.sizes = [], [], [], [], []
    self.latents, self.masks = [], []
    for name in self.names:
      s = shared[name]
      kernel = by_name[name].kernel
      if tuple(kernel.shape) != s.codes.shape:
        raise SqznetError(f"layer {name}: codes {s.codes.shape} do not fit kernel {tuple(kernel.shape)}")
      nz = s.kernel[s.codes != 0]
      scale = float(np.sqrt(np.mean(nz.astype(np.float64) ** 2))) if nz.size else 1.0
      scale = scale or 1.0
      self.kernels.append(kernel)
      self.scales.append(scale)
      self.sizes.append(int(s.codebook.size))
      codes = s.codes.reshape(-1).astype(np.int32)
      self.books.append(tf.Variable(s.codebook[1:].astype(np.float32) / scale, name=f"{name}_codebook"))
      if latent_kernels is None:
        self.codes.append(tf.constant(codes))
        continue
      mask = codes != 0
      start = np.asarray(latent_kernels[name], np.float32).reshape(-1) / np.float32(scale)
      self.codes.append(tf.Variable(codes, trainable=False, name=f"{name}_codes"))
      self.masks.append(tf.constant(mask))
      self.latents.append(tf.Variable(np.where(mask, start, 0).astype(np.float32), name=f"{name}_latent"))

  def gradients(self, kernel_grads) -> list:
    """d loss / d (scaled shared value): the sum over the weights that share it."""
    out = []
    for g, codes, size, scale in zip(kernel_grads, self.codes, self.sizes, self.scales):
      summed = tf.math.unsorted_segment_sum(tf.reshape(g, [-1]), codes, size)
      out.append(summed[1:] * scale)
    return out

  def latent_gradients(self, kernel_grads) -> list:
    """Straight-through: each latent value takes its weight's gradient (pruned positions none)."""
    return [tf.where(mask, tf.reshape(g, [-1]) * scale, 0.0)
            for g, mask, scale in zip(kernel_grads, self.masks, self.scales)]

  def reassign(self) -> None:
    """Every non-zero weight takes the code of the shared value nearest to its latent value."""
    for latent, mask, book, codes in zip(self.latents, self.masks, self.books, self.codes):
      order = tf.argsort(book)
      ranked = tf.gather(book, order)
      nearest = tf.gather(order, tf.searchsorted((ranked[1:] + ranked[:-1]) / 2, latent))
      codes.assign(tf.where(mask, tf.cast(nearest, tf.int32) + 1, 0))

  def write_kernels(self) -> None:
    for kernel, book, codes, scale in zip(self.kernels, self.books, self.codes, self.scales):
      full = tf.concat([tf.zeros([1], tf.float32), book * scale], axis=0)
      kernel.assign(tf.reshape(tf.gather(full, codes), kernel.shape))

  def shared(self) -> Dict[str, sharing.Shared]:
    """The trained codebooks with the codes (unchanged unless reassigned). A value that became exactly 0.0 is nudged
    to the smallest positive float32, so no weight turns into a pruned one."""
    out = {}
    for name, book, codes, kernel, scale in zip(self.names, self.books, self.codes, self.kernels, self.scales):
      values = (book.numpy() * np.float32(scale)).astype(np.float32)
      values[values == 0] = np.float32(np.finfo(np.float32).tiny)
      out[name] = sharing.Shared(np.concatenate([np.zeros(1, np.float32), values]),
                                 codes.numpy().astype(np.uint8).reshape(tuple(kernel.shape)))
    return out


def compare(student, teacher, batches, temperature: float, student_is_logits: bool = True,
            teacher_is_logits: bool = True):
  """(mean divergence, share of photos whose top-1 classes agree) of two models on `batches`."""
  same = n = 0
  losses = []
  for x in batches:
    s = as_logits(student(x, training=False), student_is_logits)
    t = as_logits(teacher(x, training=False), teacher_is_logits)
    losses.append(float(divergence(t, s, temperature)) * int(x.shape[0]))
    same += int(np.sum(np.argmax(s.numpy(), axis=-1) == np.argmax(t.numpy(), axis=-1)))
    n += int(x.shape[0])
  return sum(losses) / max(n, 1), same / max(n, 1)


def distill(student, teacher, shared: Dict[str, sharing.Shared], cfg: DistillConfig,
            prep: preprocessing.Preprocessing, log: Callable[[str], None] = lambda s: None,
            images: Optional[np.ndarray] = None) -> Dict[str, sharing.Shared]:
  """Trains the codebooks of `student` (kernels = shared[name] already) to match `teacher`.

  Returns the trained `Shared` per layer (same codes); `student`'s kernels hold them. Resumes
  from `cfg.work_dir` when it holds a run of the same settings and codes; a run of other settings
  there is refused.
  """
  cfg.validate()
  os.makedirs(cfg.work_dir, exist_ok=True)
  settings = dict(cfg.settings(), codes=_codes_digest(shared), layers=sorted(shared))
  state_path = os.path.join(cfg.work_dir, STATE)
  done = 0
  if os.path.exists(state_path):
    with open(state_path) as f:
      state = json.load(f)
    if state.get("settings") != settings:
      diff = sorted(k for k in set(settings) | set(state.get("settings", {}))
                    if settings.get(k) != state.get("settings", {}).get(k))
      raise SqznetError(f"{cfg.work_dir} holds a distillation run with other settings ({', '.join(diff)}); "
                        "use another --work_dir or remove it")
    done = int(state.get("epochs_done", 0))

  teacher_kernels = None
  if cfg.reassign:
    by_name = {l.name: l for l in teacher.layers}
    teacher_kernels = {name: by_name[name].kernel.numpy() for name in shared}
  books = _Codebooks(student, shared, teacher_kernels)
  offsets = _offsets(student, books.names) if cfg.train_offsets else []
  # The schedule's length counts the files (unreadable ones too), so a finished run returns without decoding them.
  files = image_files(cfg.data, cfg.limit) if images is None else None
  steps = -(-len(files if images is None else images) // cfg.batch_size)

  def adam(rate):  # cosine decay of the rate over the whole run
    return keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(rate, max(1, steps * cfg.epochs)))
  opt = adam(cfg.learning_rate)
  # Offsets step in absolute units: the rate times the mean weight scale of the coded layers.
  offset_opt = adam(cfg.learning_rate * (float(np.mean(books.scales)) if books.scales else 1.0))
  parts = dict(books=books.books, offsets=offsets, optimizer=opt, offset_optimizer=offset_opt)
  if cfg.reassign:
    latent_opt = adam(cfg.reassign_rate or cfg.learning_rate)
    parts.update(latents=books.latents, codes=books.codes, latent_optimizer=latent_opt)
  # The slots made before `step`'s first trace, as training.optimizers.build_slots does for a
  # compiled model (here three optimizers over their own variables): one trace instead of two.
  opt.build(books.books)
  offset_opt.build(offsets)
  if cfg.reassign:
    latent_opt.build(books.latents)
  ckpt = tf.train.Checkpoint(**parts)
  manager = tf.train.CheckpointManager(ckpt, os.path.join(cfg.work_dir, "ckpt"), max_to_keep=1)
  if done and manager.latest_checkpoint:
    ckpt.restore(manager.latest_checkpoint).expect_partial()
    books.write_kernels()
    log(f"distillation: resuming after epoch {done} of {cfg.epochs} from {cfg.work_dir}")
  elif done:
    done = 0
  if done >= cfg.epochs:
    return books.shared()
  if images is None:  # decoded only when there is training left to do
    images = load_images(files, prep, log)

  s_logits, s_is_logits = logits_model(student)
  t_logits, t_is_logits = logits_model(teacher)
  matched = books.names if cfg.feature_weight else []
  if matched:
    s_features, t_features = feature_model(student, matched), feature_model(teacher, matched)
  feature_weight = float(cfg.feature_weight)
  temperature = float(cfg.temperature)

  crop = int(prep.crop_size)  # one trace for every batch, the short last one too

  @tf.function(input_signature=[tf.TensorSpec([None, crop, crop, 3], tf.float32)])
  def step(x):
    t = as_logits(t_logits(x, training=False), t_is_logits)
    if matched:
      tf_ = t_features(x, training=False)
    with tf.GradientTape() as tape:
      s = as_logits(s_logits(x, training=False), s_is_logits)
      loss = divergence(t, s, temperature)
      if matched:
        loss += feature_weight * feature_loss(tf_, s_features(x, training=False))
    grads = tape.gradient(loss, books.kernels + offsets)
    opt.apply_gradients(zip(books.gradients(grads[:len(books.kernels)]), books.books))
    if books.latents:
      latent_opt.apply_gradients(zip(books.latent_gradients(grads[:len(books.kernels)]), books.latents))
      books.reassign()
    if offsets:
      offset_opt.apply_gradients(zip(grads[len(books.kernels):], offsets))
    books.write_kernels()
    agree = tf.reduce_mean(tf.cast(tf.equal(tf.argmax(s, -1), tf.argmax(t, -1)), tf.float32))
    return loss, agree

  # The check of every epoch in batches of at least EVAL_BATCH, whatever the training batch: a small
  # one (2 photos) made it 25 calls of each model per epoch on 50 photos, most of the epoch's time.
  eval_batches = centre_crops(images, prep, max(cfg.batch_size, EVAL_BATCH))
  log_path = os.path.join(cfg.work_dir, LOG)
  check = lambda: compare(s_logits, t_logits, eval_batches, temperature, s_is_logits, t_is_logits)  # noqa: E731
  if not done:
    start_loss, start_agree = check()
    with open(log_path, "w") as f:
      f.write("epoch,train_loss,train_agreement,loss,agreement,seconds\n")
      f.write(f"0,,,{start_loss:.5f},{start_agree:.4f},0\n")
    log(f"distillation: {len(images)} photos, {sum(int(b.shape[0]) for b in books.books)} shared values"
        f"{f' and {sum(int(np.prod(o.shape)) for o in offsets)} offsets' if offsets else ''} trained"
        f"{', codes moving' if cfg.reassign else ''}; "
        f"divergence from the teacher {start_loss:.4f}, top-1 agreement {start_agree:.2%} (centre crops)")
  from sqznet_tf import reporting  # pylint: disable=g-import-not-at-top  (progress bar of the epochs)
  for epoch in range(done + 1, cfg.epochs + 1):
    start = time.time()
    bar = reporting.ProgressBar(steps, f"distill epoch {epoch}/{cfg.epochs}")
    losses, agrees = [], []
    for i, x in enumerate(augmented(images, prep, cfg.batch_size, cfg.seed * 1000 + epoch, cfg.augment, cfg.mixup)):
      loss, agree = step(x)
      losses.append(float(loss))
      agrees.append(float(agree))
      bar.update(i + 1, f"loss {np.mean(losses):.4f}")
    bar.close()
    loss, agree = check()
    seconds = time.time() - start
    manager.save()
    with open(log_path, "a") as f:
      f.write(f"{epoch},{np.mean(losses):.5f},{np.mean(agrees):.4f},{loss:.5f},{agree:.4f},{seconds:.1f}\n")
    write_json_atomic(state_path, {"settings": settings, "epochs_done": epoch, "epochs": cfg.epochs})
    log(f"distill epoch {epoch}/{cfg.epochs}: training loss {np.mean(losses):.4f}; centre crops: divergence "
        f"{loss:.4f}, top-1 agreement with the teacher {agree:.2%}; {seconds:.0f} s")
  return books.shared()
