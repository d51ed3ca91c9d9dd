"""sqznet-serve: serves an export root over HTTP with TF Serving's REST API, on KServe.

Serves the highest version of a model folder that sqznet-export wrote (savedmodels/<name>/), after
replaying its warm-up requests, and switches to a new version written into the folder while it
runs. TF Serving's REST calls, with the same bodies and answers:

  curl http://localhost:8501/v1/models/squeezenet                  status of the served version
  curl http://localhost:8501/v1/models/squeezenet/metadata         its signatures
  curl -d '{"instances": [...]}' http://localhost:8501/v1/models/squeezenet:predict
  curl -d '{"signature_name": "serving_bytes", "instances": [{"b64": "..."}]}' ...:predict
  curl http://localhost:8501/metrics                               Prometheus metrics

Errors come back as {"error": "..."} with status 400 (bad request), 404 (unknown model) or 413
(body over --max_request_bytes). SIGTERM or Ctrl-C stops it gracefully. Needs the [serve] extra
(KServe). Flag names follow tensorflow_model_server's where it has one.

Example:
  sqznet-serve --export_dir=savedmodels/squeezenet --rest_api_port=8501
"""

import os
import sys

if __name__ == "__main__" and __package__ in (None, ""):
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import flags  # noqa: E402

from sqznet_tf import flags as sq_flags  # noqa: E402

FLAGS = flags.FLAGS

flags.DEFINE_string("export_dir", None, "The model folder to serve (integer version folders, as sqznet-export "
                    "writes: savedmodels/<model>); TF Serving's --model_base_path.")
flags.mark_flag_as_required("export_dir")
flags.DEFINE_integer("version", None, "Serve this version only (default: the highest, and newer ones as they "
                     "appear).", lower_bound=1)
flags.DEFINE_string("model_name", None, "The name in the URLs (/v1/models/<name>); default: the folder's name.")
flags.DEFINE_integer("rest_api_port", 8501, "HTTP port (listens on all interfaces, as TF Serving).",
                     lower_bound=1, upper_bound=65535)
flags.DEFINE_float("file_system_poll_wait_seconds", 1.0, "How often the folder is looked at for new versions; "
                   "0: never.", lower_bound=0)
flags.DEFINE_bool("enable_batching", False, "Join concurrent requests into one session run.")
flags.DEFINE_integer("max_batch_size", 32, "Largest joined batch, in images.", lower_bound=1)
flags.DEFINE_integer("batch_timeout_micros", 1000, "Longest wait for a batch to fill, in microseconds.",
                     lower_bound=0)
flags.DEFINE_integer("max_request_bytes", 32 << 20, "Largest request body; larger ones get 413.", lower_bound=1024)
flags.DEFINE_integer("grace_period", 30, "Seconds running requests get to finish on SIGTERM.", lower_bound=0)
sq_flags.define_threads_flags()
flags.DEFINE_integer("threads", None, "Request threads running the model (default: cores + 4, at most 32).",
                     lower_bound=1)


def main(argv):
  del argv
  from sqznet_tf.export import server  # pylint: disable=g-import-not-at-top  (TensorFlow after flag parsing)
  cfg = server.ServeConfig(export_dir=FLAGS.export_dir, model_name=FLAGS.model_name, port=FLAGS.rest_api_port,
                           version=FLAGS.version, poll_seconds=FLAGS.file_system_poll_wait_seconds,
                           enable_batching=FLAGS.enable_batching, max_batch_size=FLAGS.max_batch_size,
                           batch_timeout_micros=FLAGS.batch_timeout_micros, max_request_bytes=FLAGS.max_request_bytes,
                           grace_period=FLAGS.grace_period, threads=FLAGS.threads)
  prog = os.path.basename(sys.argv[0])

  def log(line):
    sys.stderr.write(f"{prog}: {line}\n")
    sys.stderr.flush()

  server.serve(cfg, log)


def run():
  sq_flags.run_main(main)


if __name__ == "__main__":
  run()
