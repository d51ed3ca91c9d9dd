"""torchvision side of bench/vs_torchvision.py; runs in the optional PyTorch venv (make bench-torch-env).

Settings: torch.set_num_threads(--threads), channels_last memory format for models and inputs,
torch.inference_mode() for inference, model.train() + SGD (momentum 0.9) for training.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _protocol  # noqa: E402

NAMES = {"squeezenet_v1_0": "squeezenet1_0", "squeezenet_v1_1": "squeezenet1_1", "alexnet_owt": "alexnet"}


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--threads", type=int, default=os.cpu_count())
  args = parser.parse_args()
  import torch  # pylint: disable=g-import-not-at-top
  import torchvision  # pylint: disable=g-import-not-at-top
  torch.set_num_threads(args.threads)
  torch.manual_seed(0)
  cl = torch.channels_last

  def build(name, train):
    m = getattr(torchvision.models, NAMES[name])(weights=None, num_classes=1000)
    return m.to(memory_format=cl).train(train)

  def infer(model, batch, size, iters):
    m = build(model, False)
    x = torch.randn(batch, 3, size, size).contiguous(memory_format=cl)
    def call():
      with torch.inference_mode():
        m(x)
    return {"seconds": _protocol.timed(call, iters)}

  def train(model, batch, size, iters):
    m = build(model, True)
    opt = torch.optim.SGD(m.parameters(), lr=0.001, momentum=0.9)
    loss_fn = torch.nn.CrossEntropyLoss()
    x = torch.randn(batch, 3, size, size).contiguous(memory_format=cl)
    y = torch.randint(0, 1000, (batch,))
    def step():
      opt.zero_grad(set_to_none=True)
      loss = loss_fn(m(x), y)
      loss.backward()
      opt.step()
      loss.item()
    return {"seconds": _protocol.timed(step, iters)}

  def matmul(n, iters):
    a, b = torch.randn(n, n), torch.randn(n, n)
    return {"seconds": _protocol.timed(lambda: torch.mm(a, b), iters)}

  def versions():
    return {"torch": torch.__version__, "torchvision": torchvision.__version__, "threads": torch.get_num_threads()}

  _protocol.serve({"infer": infer, "train": train, "matmul": matmul, "versions": versions})


if __name__ == "__main__":
  main()
