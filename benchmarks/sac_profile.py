"""
Where the time of PMAC's SAC updates (:func:`sb3_pmac.fast_sac.train`) goes, at the sizes of ``sac_updates.py``
(256x256 actor and twin critics, batch 256, Hopper-like obs 11 / action 3, 20 updates per call):

* ``torch.profiler`` over ``--updates`` updates, the parts of an update marked with ``record_function`` (by wrapping
  the functions of ``sb3_pmac.fast_sac`` from here): self time of the matrix products (``mm``, ``addmm``, ``bmm``,
  ``baddbmm``) and of the other operations, and each part's time with the products it contains. The profiler adds
  its own cost to every operation, so the small operations look more expensive than they are;
* without the profiler: the time per update, and the same updates with the matrix products replaced by no-ops (the
  rest: what the path costs besides its products), alternating;
* ``--side-by-side N``: updates/s of N processes of 1 thread running at once against one process of N threads.

The machine should be idle (other processes change both the products' and the rest's times).

Usage: ``python benchmarks/sac_profile.py [--threads 1] [--updates 100]``, or ``... --side-by-side 2 [--seconds 30]``
"""

from __future__ import annotations

import argparse
import collections
import multiprocessing
import statistics
import time
import types
from typing import Any

import torch as th
import torch.nn.functional as F
from machine import cpu_model
from sac_updates import make_agent
from torch.profiler import ProfilerActivity, profile, record_function

from sb3_pmac import fast_sac
from sb3_pmac.fast_sac import kernels, mlp, networks, training, updates

PRODUCTS = ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm")
PARTS = {  # (owner, function name) -> label
    (training, "sample_batches"): "sample batches",
    (networks.ManualNets, "actor_outputs"): "actor forward",
    (networks.SquashedGaussian, "sample"): "squashed Gaussian",
    (networks.SquashedGaussian, "backward"): "squashed Gaussian backward",
    (networks.ManualNets, "actor_backward"): "actor backward (incl. Gaussian)",
    (mlp.ReluMLPs, "forward"): "MLP forward",
    (mlp.ReluMLPs, "backward"): "MLP backward",
    (updates._Updates, "_ent_coef"): "entropy coefficient",
    (kernels.AdamStep, "step"): "Adam",
    (updates._Updates, "_polyak"): "Polyak",
}


def agent(threads: int) -> Any:
    th.set_num_threads(threads)
    sizes = argparse.Namespace(obs_dim=11, action_dim=3, buffer_size=100_000, batch_size=256, hidden=256)
    return make_agent(sizes, "cpu")


def run(model: Any, calls: int) -> float:
    """:return: seconds per update"""
    start = time.perf_counter()
    for _ in range(calls):
        fast_sac.train(model, 20, 256)
    return (time.perf_counter() - start) / (20 * calls)


def marked(function: Any, label: str) -> Any:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with record_function(label):
            return function(*args, **kwargs)

    return wrapper


def profiled(model: Any, calls: int) -> None:
    originals = {key: getattr(*key) for key in PARTS}
    for (owner, name), label in PARTS.items():
        setattr(owner, name, marked(originals[owner, name], label))
    try:
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            run(model, calls)
    finally:
        for (owner, name), function in originals.items():
            setattr(owner, name, function)
    n_updates = 20 * calls
    events = prof.events()
    self_times: collections.Counter[str] = collections.Counter()
    for event in events:
        if event.name not in PARTS.values():
            self_times[event.name] += event.self_cpu_time_total
    products = sum(self_times[name] for name in PRODUCTS)
    total = sum(self_times.values())
    print(f"profiled: {total / n_updates / 1e3:.2f} ms/update of operations, products {products / n_updates / 1e3:.2f} ms")
    print("  operations by self time (ms/update, calls/update):")
    counts = collections.Counter(event.name for event in events)
    for name, micros in self_times.most_common(15):
        print(f"    {name:32s} {micros / n_updates / 1e3:7.3f}  {counts[name] / n_updates:5.1f}")

    def products_in(event: Any) -> float:
        own = event.self_cpu_time_total if event.name in PRODUCTS else 0.0
        return own + sum(products_in(child) for child in event.cpu_children)

    parts: dict[str, list[float]] = collections.defaultdict(lambda: [0.0, 0.0])
    for event in events:
        parent = event.cpu_parent
        while parent is not None and parent.name != event.name:
            parent = parent.cpu_parent
        if event.name in PARTS.values() and parent is None:  # outermost of its kind
            parts[event.name][0] += event.cpu_time_total
            parts[event.name][1] += products_in(event)
    print("  parts (ms/update: total, of which products):")
    for label, (part_total, part_products) in sorted(parts.items(), key=lambda item: -item[1][0]):
        print(f"    {label:32s} {part_total / n_updates / 1e3:7.3f}  {part_products / n_updates / 1e3:7.3f}")


class _NoProducts(types.ModuleType):
    """``torch`` with its matrix products replaced by no-ops (they return their ``out`` buffer)."""

    def __getattr__(self, name: str) -> Any:
        return getattr(th, name)

    @staticmethod
    def bmm(a: th.Tensor, b: th.Tensor, out: th.Tensor | None = None) -> th.Tensor:
        return out if out is not None else th.empty(a.shape[0], a.shape[1], b.shape[2])

    @staticmethod
    def baddbmm(bias: th.Tensor, a: th.Tensor, b: th.Tensor, out: th.Tensor) -> th.Tensor:
        return out

    @staticmethod
    def mm(a: th.Tensor, b: th.Tensor, out: th.Tensor | None = None) -> th.Tensor:
        return out if out is not None else th.empty(a.shape[0], b.shape[1])


def without_products(model: Any, calls: int) -> float:
    linear_outputs: dict[tuple[int, int], th.Tensor] = {}

    def linear(x: th.Tensor, weight: th.Tensor, bias: th.Tensor | None = None) -> th.Tensor:
        key = (x.shape[0], weight.shape[0])
        if key not in linear_outputs:
            linear_outputs[key] = F.linear(x, weight, bias)
        return linear_outputs[key]

    saved = mlp.th, networks.th, networks.F
    mlp.th = networks.th = _NoProducts("torch")  # type: ignore[assignment]
    networks.F = types.SimpleNamespace(linear=linear)  # type: ignore[assignment]
    try:
        return run(model, calls)
    finally:
        mlp.th, networks.th, networks.F = saved


def unprofiled(model: Any, calls: int, repeats: int = 5) -> None:
    full, rest = [], []
    for _ in range(repeats):
        full.append(run(model, calls))
        rest.append(without_products(model, calls))
    total, others = statistics.median(full) * 1e3, statistics.median(rest) * 1e3
    print(
        f"unprofiled (median of {repeats}): {total:.2f} ms/update ({1e3 / total:.1f} updates/s); without the products "
        f"{others:.2f} ms: products {total - others:.2f} ms, the rest {100 * others / (total - others):.0f}% of that"
    )


def _worker(threads: int, seconds: float, start: Any, results: Any) -> None:
    model = agent(threads)
    run(model, 2)
    start.wait()
    begin, updates_done = time.perf_counter(), 0
    while time.perf_counter() - begin < seconds:
        fast_sac.train(model, 20, 256)
        updates_done += 20
    results.put(updates_done / (time.perf_counter() - begin))


def side_by_side(n: int, seconds: float) -> None:
    context = multiprocessing.get_context("spawn")
    for processes, threads in ((1, n), (n, 1)):
        start, results = context.Barrier(processes), context.Queue()
        workers = [context.Process(target=_worker, args=(threads, seconds, start, results)) for _ in range(processes)]
        for worker in workers:
            worker.start()
        rates = [results.get() for _ in workers]
        for worker in workers:
            worker.join()
        each = ", ".join(f"{rate:.1f}" for rate in rates)
        print(f"{processes} process(es) x {threads} thread(s): {sum(rates):.1f} updates/s in all ({each})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=None, help="threads of the profiled run (default 1)")
    parser.add_argument("--updates", type=int, default=None, help="profiled updates (multiple of 20; default 100)")
    parser.add_argument("--side-by-side", type=int, default=0, help="N: N processes of 1 thread vs 1 of N threads")
    parser.add_argument("--seconds", type=float, default=30.0, help="duration of each side-by-side run")
    args = parser.parse_args()
    if args.side_by_side:
        if args.threads is not None or args.updates is not None:
            parser.error("--side-by-side runs only the side-by-side comparison: run --threads/--updates separately")
        print(f"torch {th.__version__}, CPU: {cpu_model()}")
        side_by_side(args.side_by_side, args.seconds)
        return
    args.threads = 1 if args.threads is None else args.threads
    args.updates = 100 if args.updates is None else args.updates
    print(f"torch {th.__version__}, CPU: {cpu_model()}, {args.threads} thread(s)")
    model = agent(args.threads)
    run(model, 3)  # warm-up
    calls = max(1, args.updates // 20)
    profiled(model, calls)
    unprofiled(model, calls)


if __name__ == "__main__":
    main()
