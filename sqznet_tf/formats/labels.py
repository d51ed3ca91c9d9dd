"""Class labels: Caffe/ImageNet synset files (`nXXXXXXXX label, label` per line, line i = class i)."""

import dataclasses
import os
import re
from typing import Dict, List, Optional

from sqznet_tf.errors import SqznetError

WNID = re.compile(r"^n\d{8}$")
WNID_PREFIX = re.compile(r"^(n\d{8})(?:[_.-]|$)")


@dataclasses.dataclass
class Labels:
  """Class names in output order, with the WordNet ids when the file has them."""
  names: List[str]
  wnids: Optional[List[str]] = None
  source: str = ""

  def __len__(self):
    return len(self.names)

  def index_of_wnid(self) -> Dict[str, int]:
    if not self.wnids:
      raise SqznetError(f"label file {self.source!r} has no WordNet ids (lines 'nXXXXXXXX name')")
    return {w: i for i, w in enumerate(self.wnids)}

  def short(self, i: int) -> str:
    """First synonym of class i: 'tabby, tabby cat' -> 'tabby'."""
    return self.names[i].split(",")[0].strip()


def read_labels(path) -> Labels:
  """Reads a synset file (`nXXXXXXXX name, name`) or a plain list (one name per line)."""
  try:
    with open(path, encoding="utf-8") as f:
      lines = [l.rstrip("\n") for l in f]
  except OSError as e:
    raise SqznetError(f"cannot read label file {str(path)!r}: {e.strerror}") from None
  except UnicodeDecodeError:
    raise SqznetError(f"label file {str(path)!r} is not UTF-8 text") from None
  while lines and not lines[-1].strip():
    lines.pop()
  if not lines:
    raise SqznetError(f"label file {str(path)!r} is empty; expected one class per line")
  firsts = [l.split(" ", 1)[0] for l in lines]
  if all(WNID.match(w) for w in firsts):
    names = [l.split(" ", 1)[1].strip() if " " in l else l for l in lines]
    return Labels(names, firsts, os.fspath(path))
  if any(WNID.match(w) for w in firsts):
    bad = next(i for i, w in enumerate(firsts) if not WNID.match(w))
    raise SqznetError(f"label file {str(path)!r}, line {bad + 1}: {lines[bad][:60]!r} does not start with "
                      "a WordNet id like the other lines (expected 'nXXXXXXXX name')")
  return Labels([l.strip() for l in lines], None, os.fspath(path))


def wnid_of_filename(name: str) -> Optional[str]:
  """'n01440764_tench.JPEG' -> 'n01440764'; None when the name does not start with a WordNet id."""
  m = WNID_PREFIX.match(os.path.basename(name))
  return m.group(1) if m else None


def stored_labels(stored: str, classes: int) -> Optional[Labels]:
  """The class names weights metadata carries (`WeightsInfo.labels`: the names joined by ","),
  when they are names of exactly `classes` classes; else None (a description or a path)."""
  names = stored.split(",") if stored else []
  if len(names) == classes and all(n.strip() for n in names):
    return Labels([n.strip() for n in names], source="the weights' metadata")
  return None
