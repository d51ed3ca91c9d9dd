"""A distributed search that outlives its workers: heartbeats from the workers, a watch on the chief.

keras-tuner's chief hears from a worker only when the worker asks for a trial and when it ends one,
and it waits for every trial it handed out: a worker killed mid-trial and never started again left
the chief waiting forever. Here a worker running a trial asks the chief for that trial (keras-tuner's
read-only GetTrial call) every `HEARTBEAT_S` seconds, and the chief's `WorkerWatch`:
- fails the trial of a worker it has not heard from for `timeout` seconds (status FAILED, with a
  message naming the worker), so the search goes on with the other workers;
- stops the search when no worker has been heard from for `timeout` seconds and none is running a
  trial (the workers are gone, or never came): the chief then writes the results it has.
"""

import os
import threading
import time
from typing import Callable, Dict, List, Optional, Tuple

from sqznet_tf import reporting
from sqznet_tf._keras import keras_tuner

kt = keras_tuner()

HEARTBEAT_S = 5.0
MIN_TIMEOUT_S = 2 * HEARTBEAT_S
WATCH_ID = "sqznet-worker-watch"  # the tuner id the watch uses to stop the chief's server


class Heartbeat:
  """On a worker, while it runs `trial_id`: asks the chief's oracle for that trial every `every` s.

  A context manager around the trial. Errors (the chief gone) end the heartbeat quietly: the trial's
  own calls to the chief report them.
  """

  def __init__(self, oracle, trial_id: str, every: float = HEARTBEAT_S):
    self.oracle, self.trial_id, self.every = oracle, trial_id, every
    self._done = threading.Event()
    self._thread = threading.Thread(target=self._beat, name=f"heartbeat-{trial_id}", daemon=True)

  def _beat(self) -> None:
    while not self._done.wait(self.every):
      try:
        self.oracle.get_trial(self.trial_id)
      except Exception:  # pylint: disable=broad-except  (gRPC's errors: the chief is unreachable)
        return

  def __enter__(self):
    self._thread.start()
    return self

  def __exit__(self, *exc):
    self._done.set()
    return False


def _releasing_on_error(oracle, method):
  """`method` of the chief's oracle, releasing the oracle's lock when it raises. keras-tuner's
  `synchronized` does not (no try/finally): after one exception in the oracle (a worker's bad request,
  a resumed grid search), every later request from the server's thread waited for that lock forever
  and the chief hung. With this the request fails (its worker hears the error) and the chief goes on."""
  def call(*args, **kwargs):
    try:
      return method(*args, **kwargs)
    except Exception:
      _release_oracle_lock(oracle)
      raise
  return call


def _release_oracle_lock(oracle) -> None:
  try:
    from keras_tuner.src.engine import oracle as oracle_module  # pylint: disable=g-import-not-at-top
    threads, locks = oracle_module.THREADS, oracle_module.LOCKS
  except (ImportError, AttributeError):  # another keras-tuner: nothing known to release
    return
  if threads.get(oracle) == threading.current_thread().name:  # acquired by this call, never released
    threads[oracle] = None
    locks[oracle].release()


@kt.synchronized
def _fail_silent_workers(oracle, watch: "WorkerWatch", now: float) -> List[Tuple[str, str]]:
  """Under the oracle's lock: ends the trial of every worker silent for longer than the timeout."""
  lost = []
  for tuner_id, trial in list(oracle.ongoing_trials.items()):
    silent = now - watch.last_seen.get(tuner_id, watch.started)
    if silent <= watch.timeout:
      continue
    trial.status = kt.engine.trial.TrialStatus.FAILED
    trial.message = (f"worker {tuner_id} sent nothing for {silent:.0f} s (worker timeout {watch.timeout:g} s): "
                     "lost, its trial failed")
    watch.end_trial(trial)  # keras-tuner's own (not a worker's call): takes it off the ongoing trials
    oracle.tuner_ids.discard(tuner_id)
    watch.last_seen.pop(tuner_id, None)
    lost.append((tuner_id, trial.trial_id))
  return lost


@kt.synchronized
def _stopped_trial(oracle):
  """The answer to the watch's own request for a trial: keras-tuner's "search over", after forgetting
  every worker (their ids would keep the chief waiting for them)."""
  oracle.tuner_ids.clear()
  return kt.engine.trial.Trial(oracle.hyperparameters.copy(), trial_id="stopped",
                               status=kt.engine.trial.TrialStatus.STOPPED)


class WorkerWatch:
  """On the chief: watches the workers of a distributed search through its oracle (see the module).

  `timeout`: seconds of silence after which a worker is lost (its trial fails) and, when no worker
  is heard from at all and none runs a trial, after which the search stops. Call `start()` before
  the chief serves the oracle and `close()` after; `check()` is one pass of the watch (its thread
  calls it every few seconds).
  """

  def __init__(self, oracle, timeout: float, clock: Callable[[], float] = time.monotonic,
               stop_server: Optional[Callable[[], None]] = None):
    if timeout < MIN_TIMEOUT_S:
      raise ValueError(f"timeout {timeout:g} s is shorter than {MIN_TIMEOUT_S:g} s (two heartbeats): a worker "
                       "alive and training would be taken for lost")
    self.oracle, self.timeout, self.clock = oracle, float(timeout), clock
    self.started = clock()
    self.last_seen: Dict[str, float] = {}  # tuner id -> when the chief last heard from it
    self.last_any = self.started
    self.lost: List[Tuple[str, str]] = []  # (tuner id, trial id) of each lost worker's trial
    self.stopped: Optional[str] = None  # why the watch stopped the search
    self.search_done = False  # a worker was told the search is over (keras-tuner's STOPPED)
    self._stop_server = stop_server or _ask_own_server_to_stop
    self._every = min(HEARTBEAT_S, self.timeout / 4)  # how often the thread checks
    self._closed = threading.Event()
    self._thread = threading.Thread(target=self._run, name="worker-watch", daemon=True)
    self._wrap()

  def _wrap(self) -> None:
    """Notes every call the workers make (they reach the oracle through the chief's gRPC server)."""
    oracle = self.oracle
    create, update, end, get = (_releasing_on_error(oracle, f) for f in (
        oracle.create_trial, oracle.update_trial, oracle.end_trial, oracle.get_trial))
    self.end_trial = end

    def create_trial(tuner_id):
      if tuner_id == WATCH_ID:
        return _stopped_trial(oracle)
      self._seen(tuner_id)
      trial = create(tuner_id)
      if trial.status == kt.engine.trial.TrialStatus.STOPPED:
        self.search_done = True
      return trial

    def update_trial(trial_id, metrics, step=0):
      self._seen_trial(trial_id)
      return update(trial_id, metrics, step=step)

    def end_trial(trial):
      self._seen_trial(trial.trial_id)
      return end(trial)

    def get_trial(trial_id):
      self._seen_trial(trial_id)
      return get(trial_id)

    oracle.create_trial, oracle.update_trial, oracle.end_trial, oracle.get_trial = (
        create_trial, update_trial, end_trial, get_trial)

  def _seen(self, tuner_id: str) -> None:
    self.last_any = self.last_seen[tuner_id] = self.clock()

  def _seen_trial(self, trial_id: str) -> None:
    self.last_any = self.clock()
    for tuner_id, trial in list(self.oracle.ongoing_trials.items()):
      if trial.trial_id == trial_id:
        self.last_seen[tuner_id] = self.last_any

  def check(self) -> Optional[str]:
    """Fails the trials of lost workers; returns why the search should stop, or None."""
    now = self.clock()
    self.lost += _fail_silent_workers(self.oracle, self, now)
    if not self.oracle.ongoing_trials and now - self.last_any > self.timeout:
      return f"no worker sent anything for {now - self.last_any:.0f} s (worker timeout {self.timeout:g} s)"
    return None

  def _run(self) -> None:
    while not self._closed.wait(self._every):
      try:
        reason = self.check()
      except Exception as e:  # pylint: disable=broad-except  (an error of keras-tuner's oracle: watch on)
        reporting.progress(f"worker watch: a check failed ({e}); watching on")
        continue
      if reason:
        self.stopped = reason
        try:
          self._stop_server()
        except Exception as e:  # pylint: disable=broad-except  (gRPC's errors)
          reporting.progress(f"worker watch: could not stop the search's server ({e}); it waits for its workers")
        return

  def start(self) -> "WorkerWatch":
    self._thread.start()
    return self

  def close(self) -> None:
    self._closed.set()


def _ask_own_server_to_stop() -> None:
  """keras-tuner's chief serves until a worker is told the search is over; the watch asks for a
  trial itself, as a worker would, and gets that answer (`_stopped_trial`)."""
  from keras_tuner.src.distribute import oracle_client  # pylint: disable=g-import-not-at-top
  client = oracle_client.OracleClient(None)  # the chief's address from KERASTUNER_ORACLE_IP / _PORT
  client.create_trial(WATCH_ID)


def chief_error(error: BaseException) -> Optional[str]:
  """On a worker: one line for a gRPC error from the chief (its oracle raised, or it is gone), or
  None for any other exception."""
  try:
    import grpc  # pylint: disable=g-import-not-at-top  (keras-tuner's distributed mode needs it)
  except ImportError:
    return None
  if not isinstance(error, grpc.RpcError) or not hasattr(error, "code"):
    return None
  details = (error.details() or "").strip().splitlines()
  where = f"{os.environ.get('KERASTUNER_ORACLE_IP')}:{os.environ.get('KERASTUNER_ORACLE_PORT')}"
  return f"the chief at {where} answered {error.code().name}: {details[-1][:300] if details else 'no details'}"
