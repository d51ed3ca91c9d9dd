"""The chief's watch over a distributed search's workers, on a real keras-tuner oracle and a fake clock
(the processes, a worker killed and never started again: tests/tools/test_tune.py)."""

import time

import pytest

from sqznet_tf._keras import keras_tuner
from sqznet_tf.search.watch import WATCH_ID, Heartbeat, WorkerWatch

kt = keras_tuner()


class Clock:
  def __init__(self):
    self.now = 1000.0

  def __call__(self):
    return self.now


def make_oracle(tmp_path):
  hp = kt.HyperParameters()
  hp.Choice("squeeze_ratio", [0.125, 0.25, 0.5])
  oracle = kt.oracles.RandomSearchOracle(objective=kt.Objective("val_accuracy", "max"), max_trials=3,
                                         hyperparameters=hp, seed=0, max_consecutive_failed_trials=10 ** 6)
  oracle._set_project_dir(str(tmp_path), "search")  # pylint: disable=protected-access  (as a tuner does)
  return oracle


def test_a_silent_worker_loses_its_trial_and_a_search_without_workers_stops(tmp_path):
  oracle, clock, stops = make_oracle(tmp_path), Clock(), []
  watch = WorkerWatch(oracle, timeout=30, clock=clock, stop_server=lambda: stops.append(clock.now))
  t0 = oracle.create_trial("tuner0")
  clock.now += 10
  t1 = oracle.create_trial("tuner1")
  assert watch.check() is None
  clock.now += 25  # tuner0 silent for 35 s, tuner1 for 25: only tuner0 is lost
  oracle.get_trial(t1.trial_id)  # tuner1's heartbeat
  assert watch.check() is None
  assert t0.status == "FAILED" and "worker tuner0 sent nothing for 35 s" in t0.message, t0.message
  assert list(oracle.ongoing_trials) == ["tuner1"] and "tuner0" not in oracle.tuner_ids
  assert watch.lost == [("tuner0", t0.trial_id)]
  # tuner1 ends its trial and asks for the next; the other workers go on.
  clock.now += 20
  t1.status = "COMPLETED"
  oracle.update_trial(t1.trial_id, {"val_accuracy": 0.5})
  oracle.end_trial(t1)
  assert oracle.trials[t1.trial_id].status == "COMPLETED" and not oracle.ongoing_trials
  t2 = oracle.create_trial("tuner1")
  clock.now += 29
  assert watch.check() is None and t2.status == "RUNNING"
  clock.now += 2  # now tuner1 is silent too: its trial fails, and no worker is left
  reason = watch.check()
  assert t2.status == "FAILED" and reason and reason.startswith("no worker sent anything for 31 s"), reason
  assert [t for _, t in watch.lost] == [t0.trial_id, t2.trial_id]
  # How the watch ends the chief's server: it asks for a trial itself and gets keras-tuner's
  # "search over", with every worker id forgotten (the server waits for those).
  oracle.tuner_ids.add("tuner9")
  answer = oracle.create_trial(WATCH_ID)
  assert answer.status == "STOPPED" and not oracle.tuner_ids
  assert not watch.search_done  # no worker was told that the search is over


def test_the_thread_stops_the_server_once_and_a_finished_search_is_not_stopped(tmp_path):
  oracle, stops = make_oracle(tmp_path), []
  clock = Clock()
  watch = WorkerWatch(oracle, timeout=10, clock=clock, stop_server=lambda: stops.append(1))
  watch._every = 0.05  # pylint: disable=protected-access  (the thread's pace; 2.5 s at this timeout)
  clock.now += 11
  watch.start()
  deadline = time.time() + 30
  while not stops and time.time() < deadline:
    time.sleep(0.05)
  time.sleep(0.3)
  watch.close()
  assert stops == [1] and watch.stopped.startswith("no worker sent anything")
  # A stop request that fails (the server unreachable) ends the thread with a warning, not a traceback.
  def unreachable():
    raise ConnectionError("unreachable")
  failing = WorkerWatch(make_oracle(tmp_path / "c"), timeout=10, clock=clock, stop_server=unreachable)
  failing._every = 0.05  # pylint: disable=protected-access
  clock.now += 11
  failing.start()._thread.join(timeout=30)  # pylint: disable=protected-access
  assert failing.stopped and not failing._thread.is_alive()  # pylint: disable=protected-access
  # A worker told that the search is over marks it done.
  oracle2 = make_oracle(tmp_path / "b")
  watch2 = WorkerWatch(oracle2, timeout=30)
  oracle2.max_trials = 1
  trial = oracle2.create_trial("tuner0")
  trial.status = "COMPLETED"
  oracle2.update_trial(trial.trial_id, {"val_accuracy": 0.5})
  oracle2.end_trial(trial)
  assert not watch2.search_done
  assert oracle2.create_trial("tuner0").status == "STOPPED" and watch2.search_done
  with pytest.raises(ValueError, match="timeout 5 s is shorter than 10 s"):
    WorkerWatch(oracle2, timeout=5)


def test_a_worker_heartbeat_keeps_its_trial(tmp_path):
  oracle, clock = make_oracle(tmp_path), Clock()
  watch = WorkerWatch(oracle, timeout=30, clock=clock, stop_server=lambda: None)
  trial = oracle.create_trial("tuner0")
  clock.now += 100
  with Heartbeat(oracle, trial.trial_id, every=0.05):
    deadline = time.time() + 30
    while watch.last_seen["tuner0"] != clock.now and time.time() < deadline:
      time.sleep(0.02)
  assert watch.check() is None and trial.status == "RUNNING"
  # A heartbeat whose chief is gone ends quietly.
  class Gone:
    def get_trial(self, trial_id):
      raise ConnectionError(trial_id)
  beat = Heartbeat(Gone(), "00", every=0.01)
  with beat:
    beat._thread.join(timeout=10)  # pylint: disable=protected-access
    assert not beat._thread.is_alive()  # pylint: disable=protected-access


def test_an_error_in_the_oracle_does_not_leave_its_lock_held(tmp_path):
  """keras-tuner's lock is not released when an oracle method raises; the chief's next request (from
  another thread) would wait forever. With the watch on, the failed request releases it."""
  import threading  # pylint: disable=g-import-not-at-top
  oracle = make_oracle(tmp_path)
  WorkerWatch(oracle, timeout=30)
  populate = oracle.populate_space

  def broken(trial_id):
    raise RuntimeError(f"no values for trial {trial_id}")
  oracle.populate_space = broken
  errors, answers = [], []

  def ask(tuner_id):
    try:
      answers.append(oracle.create_trial(tuner_id).status)
    except RuntimeError as e:
      errors.append(str(e))
  first = threading.Thread(target=ask, args=("tuner0",), name="request-1")
  first.start()
  first.join(timeout=30)
  assert errors == ["no values for trial 0"], errors
  oracle.populate_space = populate
  second = threading.Thread(target=ask, args=("tuner1",), name="request-2", daemon=True)
  second.start()
  second.join(timeout=30)
  assert not second.is_alive() and answers == ["RUNNING"], answers


def test_a_worker_says_in_one_line_what_the_chief_answered(monkeypatch):
  import grpc  # pylint: disable=g-import-not-at-top
  from sqznet_tf.search.watch import chief_error  # pylint: disable=g-import-not-at-top

  class Answer(grpc.RpcError):
    def code(self):
      return grpc.StatusCode.UNKNOWN

    def details(self):
      return "Exception calling application: no values for trial 0"
  monkeypatch.setenv("KERASTUNER_ORACLE_IP", "127.0.0.1")
  monkeypatch.setenv("KERASTUNER_ORACLE_PORT", "8123")
  assert chief_error(Answer()) == ("the chief at 127.0.0.1:8123 answered UNKNOWN: Exception calling application: "
                                   "no values for trial 0")
  assert chief_error(ValueError("not from the chief")) is None
