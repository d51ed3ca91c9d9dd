"""Training throughput (images/s): real JPEG input through the tf.data pipeline vs synthetic input.

Run by hand; results go to BENCHMARKS.md with the machine, date and command. Not a test.

For each image size, trains SqueezeNet v1.1 (batch norm) with Keras `fit` on N images per epoch:
  synthetic   random images already in memory (no decode): the model's own ceiling;
  jpeg cold   the first epoch over N photos of the CIFAR-10 subset (JPEG files): every file is
              read, decoded and resized while the model trains on the same cores, and the
              shuffle buffer and in-memory cache are filled;
  jpeg warm   later epochs: decoded images come from the cache, crop + flip run every step.
Each figure is whole-epoch images/s (the first synthetic epoch, which pays for tracing, is not
counted; the cold JPEG epoch runs after the synthetic ones, so it pays for no tracing either).

  python bench/train_throughput.py --sizes=64,224 --images=10000,1280
"""

import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_list("sizes", ["64", "224"], "Image sizes (pixels).")
flags.DEFINE_list("images", ["10000", "1280"], "Images per epoch for each size (split evenly over the classes).")
flags.DEFINE_integer("batch_size", 32, "Batch size.")
flags.DEFINE_string("data", "../shared/data/cifar10_subset/train", "Class-folder JPEG tree.")
flags.DEFINE_string("model", "squeezenet_v1_1", "Registered model.")


def subset_tree(src, n, dst):
  """Symlinks n photos (evenly over the classes) of a class-folder tree into dst."""
  classes = sorted(os.listdir(src))
  per = n // len(classes)
  for c in classes:
    os.makedirs(os.path.join(dst, c))
    for f in sorted(os.listdir(os.path.join(src, c)))[:per]:
      os.symlink(os.path.abspath(os.path.join(src, c, f)), os.path.join(dst, c, f))
  return per * len(classes)


def main(argv):
  del argv
  import sqznet_tf  # pylint: disable=g-import-not-at-top
  from sqznet_tf._keras import keras  # pylint: disable=g-import-not-at-top
  from sqznet_tf.data.pipeline import DataSpec, make_datasets  # pylint: disable=g-import-not-at-top
  from sqznet_tf.training.callbacks import EpochSeconds  # pylint: disable=g-import-not-at-top
  if len(FLAGS.images) != len(FLAGS.sizes):
    raise app.UsageError("--images needs one count per --sizes entry")
  rows = []
  for size, images in zip((int(s) for s in FLAGS.sizes), (int(i) for i in FLAGS.images)):
    tmp = tempfile.mkdtemp(prefix="sqznet-bench-")
    n = subset_tree(FLAGS.data, images, os.path.join(tmp, "tree"))
    steps = n // FLAGS.batch_size
    model = sqznet_tf.get_model(FLAGS.model, batch_norm=True, classes=10, input_shape=(size, size, 3))
    model.compile(keras.optimizers.SGD(0.01, momentum=0.9), "categorical_crossentropy")
    synth = make_datasets(DataSpec("synthetic", image_size=size, synthetic_size=n), FLAGS.batch_size,
                          num_classes=10).train
    jpeg = make_datasets(DataSpec("folder", os.path.join(tmp, "tree"), val_split=0.0, image_size=size),
                         FLAGS.batch_size).train
    t = EpochSeconds()
    model.fit(synth.repeat(), epochs=3, steps_per_epoch=steps, verbose=0, callbacks=[t])
    synthetic = n / min(t.seconds[1:])
    t = EpochSeconds()
    model.fit(jpeg.repeat(), epochs=3, steps_per_epoch=steps, verbose=0, callbacks=[t])
    cold, warm = n / t.seconds[0], n / min(t.seconds[1:])
    rows.append((size, n, synthetic, cold, warm))
    print(f"{size:>4} px  synthetic {synthetic:7.1f}  jpeg cold {cold:7.1f}  jpeg warm {warm:7.1f} img/s", flush=True)
  print(f"\nbatch {FLAGS.batch_size}, {FLAGS.model} with batch norm\n")
  print("| image size | images/epoch | synthetic (img/s) | JPEG, first epoch (img/s) | JPEG, cached (img/s) | "
        "input cost, first epoch | input cost, cached |")
  print("|---|---|---|---|---|---|---|")
  for size, n, s, c, w in rows:
    print(f"| {size} | {n} | {s:.1f} | {c:.1f} | {w:.1f} | {100 * (1 - c / s):.1f}% | {100 * (1 - w / s):.1f}% |")


if __name__ == "__main__":
  app.run(main)
