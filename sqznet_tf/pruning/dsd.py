"""Dense -> Sparse -> Dense training (DSD; Han et al., arXiv:1607.04381).

Phase 1, dense: train normally (or start from pretrained weights / a checkpoint and skip it).
Phase 2, sparse: prune each layer to its target by magnitude at the first step and retrain with
  the masks fixed (tfmot ConstantSparsity from step 0 to step 1, then frozen).
Phase 3, re-dense: lift the masks; pruned weights restart from exactly zero, survivors keep their
  values; a fresh optimizer retrains the whole network at a lower learning rate.

Each phase is a `train()` run in its own folder (phase1_dense/, phase2_sparse/, phase3_dense/
under the DSD folder) with its own checkpoints, TensorBoard logs and summary. A finished phase
(its summary.json exists) is not run again; an interrupted one resumes where it stopped, so the
same command resumes a killed DSD run in the phase where it stopped. Only the last phase writes a
Keras SavedModel (saved_model/); every phase folder loads as a model form (its final weights).
"""

import dataclasses
import json
import os
from typing import List, Optional, Sequence

from sqznet_tf._keras import keras
from sqznet_tf.errors import SqznetError
from sqznet_tf.io import write_json_atomic
from sqznet_tf.models import build, get_config
from sqznet_tf.pruning import prune
from sqznet_tf.pruning.spec import check_sparsity
from sqznet_tf.training.config import TrainConfig
from sqznet_tf.training.train import train

PHASES = ("phase1_dense", "phase2_sparse", "phase3_dense")


@dataclasses.dataclass
class DSDConfig:
  """A DSD run: the shared training setup plus epochs, learning rates and targets per phase.

  Defaults follow the paper's recipe scaled to the run: the sparse phase at the dense learning
  rate, the re-dense phase at a tenth of it (the paper retrains SqueezeNet at 1e-4), 3x pruning
  (sparsity 0.67) of every layer but conv1.
  """
  base: TrainConfig
  dense_epochs: int = 2
  sparse_epochs: int = 2
  redense_epochs: int = 2
  dense_lr: Optional[float] = None
  sparse_lr: Optional[float] = None
  redense_lr: Optional[float] = None
  sparsity: prune.SparsitySpec = 0.67
  keep_dense: Sequence[str] = ("conv1",)
  model_dir: str = "runs/dsd"

  def __post_init__(self):
    for name in ("dense_epochs", "sparse_epochs", "redense_epochs"):
      v = getattr(self, name)
      if isinstance(v, bool) or not isinstance(v, int) or v < 0:
        raise SqznetError(f"{name}={v!r} is not accepted; expected an integer >= 0")
    if self.dense_epochs + self.sparse_epochs + self.redense_epochs == 0:
      raise SqznetError("every DSD phase has 0 epochs; give at least one phase epochs")
    if self.sparse_epochs == 0:
      raise SqznetError("sparse_epochs=0: DSD needs a sparse phase (use sqznet-train for dense training)")
    if self.dense_epochs == 0 and not self.base.init_weights:
      raise SqznetError("dense_epochs=0 needs init_weights (pretrained weights or a checkpoint) to prune")
    for name in ("dense_lr", "sparse_lr", "redense_lr"):
      v = getattr(self, name)
      if v is not None and not v > 0:
        raise SqznetError(f"{name}={v!r} is not accepted; expected a number > 0")
    if isinstance(self.sparsity, dict):
      for k, v in self.sparsity.items():
        check_sparsity(k, v)
    else:
      check_sparsity("all layers", self.sparsity)

  def phase_configs(self) -> List[Optional[TrainConfig]]:
    """The TrainConfig of each phase (None for a skipped dense phase)."""
    lr = self.base.learning_rate
    dense = dataclasses.replace(self.base, epochs=self.dense_epochs, learning_rate=self.dense_lr or lr,
                                model_dir=os.path.join(self.model_dir, PHASES[0]),
                                save_model=False) if self.dense_epochs else None
    after_dense = (os.path.join(self.model_dir, PHASES[0], "final.weights.h5") if self.dense_epochs
                   else self.base.init_weights)
    sparse = dataclasses.replace(self.base, epochs=self.sparse_epochs, learning_rate=self.sparse_lr or lr,
                                 init_weights=after_dense, model_dir=os.path.join(self.model_dir, PHASES[1]),
                                 save_model=self.base.save_model and not self.redense_epochs)
    redense = (dataclasses.replace(self.base, epochs=self.redense_epochs,
                                   learning_rate=self.redense_lr or lr / 10,
                                   init_weights=os.path.join(self.model_dir, PHASES[1], "final.weights.h5"),
                                   model_dir=os.path.join(self.model_dir, PHASES[2]))
               if self.redense_epochs else None)
    return [dense, sparse, redense]


def sparse_wrapper(spec, keep_dense):
  """model -> model with the DSD masks: set by magnitude at step 0, fixed from step 1 on."""
  def wrap(model):
    targets = prune.resolve_targets(model, spec, keep_dense)
    return prune.prune_model(model, targets, prune.ScheduleSpec("constant", begin_step=0, end_step=1, frequency=1))
  return wrap


def _phase_row(name: str, config: TrainConfig, summary: dict, model) -> dict:
  rep = prune.sparsity_report(model)
  nonzero = summary["params"] - rep["zeros"]
  return {"phase": name, "epochs": config.epochs, "learning_rate": config.learning_rate,
          "val_accuracy": summary.get("val_accuracy"), "val_top5": summary.get("val_top5"),
          "sparsity": rep["sparsity"], "params": summary["params"], "nonzero_params": nonzero,
          "size_fp32": 4 * summary["params"], "seconds": summary["seconds"]}


def run_dsd(cfg: DSDConfig, extra_callbacks=None, verbose_phase=None) -> List[dict]:
  """Runs (or resumes) the three phases; returns one summary row per phase that ran.

  Args:
    cfg: the DSD run.
    extra_callbacks: phase name -> (out_dir -> list of callbacks), for tests and tools.
    verbose_phase: called with the phase name before each phase starts.
  """
  # Check the sparsity map and keep_dense against the architecture before any training.
  base_overrides = dict(cfg.base.overrides)
  probe = build(get_config(cfg.base.model, **base_overrides), input_shape=(cfg.base.data.image_size,) * 2 + (3,),
                classes=2)
  prune.resolve_targets(probe, cfg.sparsity, cfg.keep_dense)
  del probe
  os.makedirs(cfg.model_dir, exist_ok=True)
  rows = []
  for name, config in zip(PHASES, cfg.phase_configs()):
    if config is None:
      continue
    summary_path = os.path.join(config.model_dir, "summary.json")
    extra = (extra_callbacks or {}).get(name)
    if os.path.exists(summary_path):
      with open(summary_path, encoding="utf-8") as f:
        summary = json.load(f)
      overrides = dict(config.overrides)
      if config.dropout is not None:
        overrides["dropout"] = config.dropout
      model = build(get_config(config.model, **overrides),
                    input_shape=(config.data.image_size,) * 2 + (3,), classes=summary.get("classes", 10))
      model.load_weights(os.path.join(config.model_dir, "final.weights.h5"))
      rows.append(dict(_phase_row(name, config, summary, model), resumed="done before"))
      continue
    if verbose_phase:
      verbose_phase(name)
    if name == PHASES[1]:
      def callbacks(out_dir, extra=extra):
        return prune.pruning_callbacks(os.path.join(out_dir, "logs", "pruning")) + (extra(out_dir) if extra else [])
      result = train(config, wrap=sparse_wrapper(cfg.sparsity, cfg.keep_dense), unwrap=prune.strip,
                     extra_callbacks=callbacks)
    else:
      result = train(config, extra_callbacks=extra)
    summary = result.to_dict()
    rows.append(_phase_row(name, config, summary, result.model))
    keras.backend.clear_session()
  write_json_atomic(os.path.join(cfg.model_dir, "dsd_summary.json"), rows)
  return rows
