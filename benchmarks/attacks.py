"""Attack images/s: freqmaps' PGD, FMN, DeepFool, APGD-CE and Square (all L∞) versus foolbox 3 and torchattacks on
the same ResNet-20 and CIFAR-10 test images, same settings, same run, with the median perturbation norms side by side.

    python -m benchmarks.attacks [--device cpu|cuda] [--checkpoint ZOO_NAME|PATH] [--n-images 128] [--repeats 2]
                                 [--apgd-steps 100] [--square-queries 1000] [--only pgd,apgd,...] [--out PATH]

Settings (docs/method.md §2, foolbox's defaults, equal for every library): PGD ε = 8/255, 40 steps of 0.01/0.3·ε from a
random start; FMN 100 steps, step size 1 annealed to 0.01, γ 0.05 annealed to 0.001; DeepFool 50 steps, top-10
candidates, overshoot 0.02; APGD-CE (torchattacks.APGD, loss ce, one restart) --apgd-steps steps; Square
(torchattacks.Square, p_init 0.8, one restart) --square-queries queries, ε = 8/255 for both, so their robust
accuracy (share of images classified correctly after the attack, printed for each library) is the result to
match. foolbox gets the model as users hand it over (`fb.PyTorchModel(model.eval())`), so
its `loss.backward()` also computes the parameters' gradients, which freqmaps skips by freezing them for the
attack; torchattacks takes `torch.autograd.grad` of the input as freqmaps does. torchattacks has no FMN and
only an L2 DeepFool, so it is compared on PGD, APGD-CE and Square. A library that fails to import is skipped with a
printed note (the GPU machines may not have them). Every implementation of an attack runs once per round, in turn:
a warm-up round, whose outputs give the norms (`attack_report`, over the images the model classifies
correctly), then --repeats timed rounds; the best time counts. Ends with one line per target:
`<attack>: <speedup>x <library> (target >= T), median L∞ ratio R` (R = freqmaps' median over the library's).

`step cost` is freqmaps' time per step over the time of the model work one step needs on the same batch with
the parameters frozen and in the same memory layout (freqmaps' attacks hand the model channels-last input, which
the libraries do not; see freqmaps.attacks.base.Attack): one forward and one input-gradient backward (PGD, FMN),
one forward and candidates − 1 backwards (DeepFool). DeepFool drops fooled images, so its steps are counted in
full batches of images still attacked (on a GPU a small batch costs about as much as a full one, so DeepFool's
step cost there is high).
Writes benchmarks/results/attacks.json.
"""
from __future__ import annotations

import argparse
import math
import os
import time
from collections.abc import Callable

import torch
from torch import nn

from benchmarks.common import DEFAULT_MODEL, cifar10_root, cifar10_tensors, load_classifier, write_json
from freqmaps.attacks import APGD, FMN, PGD, Attack, DeepFool, Square, attack_report
from freqmaps.inputs import frozen_eval

EPS = 8 / 255
REFERENCE_STEPS = 5  # model steps per timed reference call
TARGETS = {"fmn": ("foolbox", 1.25), "deepfool": ("foolbox", 2.0), "pgd": ("torchattacks", 1.0),
           "apgd": ("torchattacks", 1.0), "square": ("torchattacks", 1.0)}


class CountingModel(nn.Module):
    """The model, counting the calls and images it sees with autograd on its input (the attack's steps)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.calls = self.images = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.requires_grad:
            self.calls += 1
            self.images += len(x)
        return self.model(x)


def model_steps(model: nn.Module, x: torch.Tensor, backwards: int, steps: int, channels_last: bool) -> None:
    """The model work of `steps` attack steps: each a forward pass and `backwards` input-gradient backward passes,
    on x in the memory layout the attack hands the model."""
    layout = torch.channels_last if channels_last else torch.contiguous_format
    with frozen_eval(model):
        for _ in range(steps):
            x_step = x.clone(memory_format=layout).requires_grad_()
            logits = model(x_step)
            for k in range(backwards):
                torch.autograd.grad(logits[:, k].sum(), x_step, retain_graph=k < backwards - 1)


def library_attacks(model: nn.Module, device: torch.device, apgd_steps: int,
                    square_queries: int) -> tuple[dict, dict[str, str]]:
    """The baselines that import here, {(attack, library): fn(x, y) -> x_adv}, and a note per missing library."""
    baselines, missing = {}, {}
    try:
        import foolbox as fb

        fmodel = fb.PyTorchModel(model, bounds=(0, 1), device=device)

        def run_foolbox(attack, eps):
            return lambda x, y: attack(fmodel, x, y, epsilons=eps)[1]

        baselines["pgd", "foolbox"] = run_foolbox(fb.attacks.LinfPGD(steps=40, random_start=True), EPS)
        baselines["fmn", "foolbox"] = run_foolbox(fb.attacks.LInfFMNAttack(steps=100), None)
        baselines["deepfool", "foolbox"] = run_foolbox(
            fb.attacks.LinfDeepFoolAttack(steps=50, candidates=10, overshoot=0.02), None)
    except ImportError as error:
        missing["foolbox"] = f"foolbox not available ({error}); its baselines are skipped"
    try:
        import torchattacks

        baselines["pgd", "torchattacks"] = torchattacks.PGD(
            model, eps=EPS, alpha=0.01 / 0.3 * EPS, steps=40, random_start=True)
        baselines["apgd", "torchattacks"] = torchattacks.APGD(model, norm="Linf", eps=EPS, steps=apgd_steps, loss="ce")
        baselines["square", "torchattacks"] = torchattacks.Square(model, norm="Linf", eps=EPS, n_queries=square_queries,
                                                                  p_init=0.8)
    except ImportError as error:
        missing["torchattacks"] = f"torchattacks not available ({error}); its baselines are skipped"
    return baselines, missing


def interleaved(calls: dict[str, Callable[[], object]], rounds: int, device: torch.device) -> tuple[dict, dict]:
    """Best wall time of each call over `rounds` rounds in which every call runs once in turn, after an untimed
    warm-up round whose outputs are returned. Taking turns keeps a load that comes and goes on shared cores from
    favouring one library; each call of a round starts from the same seed (the same PGD random start)."""
    outputs, times = {}, {name: [] for name in calls}
    for round_ in range(rounds + 1):
        for name, call in calls.items():
            torch.manual_seed(round_)
            start = time.perf_counter()
            output = call()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            if round_ == 0:
                outputs[name] = output
            else:
                times[name].append(time.perf_counter() - start)
    return {name: min(t) for name, t in times.items()}, outputs


def norms(model: nn.Module, x: torch.Tensor, x_adv: torch.Tensor, y: torch.Tensor) -> dict:
    report = attack_report(model, x, x_adv, y)
    return {"success_rate": report.success_rate, "robust_accuracy": 1 - report.success_rate,
            "median_linf": report.median_linf, "mean_linf": report.mean_linf}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--checkpoint", default=DEFAULT_MODEL, help="a zoo model name or a .ckpt path")
    parser.add_argument("--n-images", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=2, help="timed rounds after the warm-up round")
    parser.add_argument("--apgd-steps", type=int, default=100)
    parser.add_argument("--square-queries", type=int, default=1000)
    parser.add_argument("--only", default=None, help="comma-separated attacks to run (default: all)")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    if args.repeats < 1 or args.n_images < 1:
        parser.error("--repeats and --n-images must be at least 1")
    device = torch.device(args.device)

    model = load_classifier(args.checkpoint).to(device)
    x, y = cifar10_tensors(cifar10_root(), "test", args.n_images)
    x, y = x.to(device), y.to(device)
    with torch.no_grad():
        correct = model(x).argmax(1) == y
    print(f"{args.checkpoint}: {correct.float().mean().item():.3f} clean accuracy on {len(x)} test images; "
          f"device {device}, torch threads {torch.get_num_threads()}, load average {os.getloadavg()[0]:.2f}")

    counting = CountingModel(model)
    ours: dict[str, Attack] = {
        "pgd": PGD(eps=EPS, norm="linf", steps=40, random_start=True),
        "fmn": FMN(norm="linf", steps=100),
        "deepfool": DeepFool(norm="linf", steps=50, candidates=10, overshoot=0.02),
        "apgd": APGD(eps=EPS, norm="linf", steps=args.apgd_steps, loss="ce"),
        "square": Square(eps=EPS, norm="linf", queries=args.square_queries, p_init=0.8),
    }
    backwards = {"pgd": 1, "fmn": 1, "deepfool": ours["deepfool"].candidates - 1, "apgd": 1, "square": 0}
    if args.only is not None:
        unknown = set(args.only.split(",")) - set(ours)
        if unknown:
            parser.error(f"--only: unknown attacks {', '.join(sorted(unknown))}; choose from {', '.join(ours)}")
        ours = {name: attack for name, attack in ours.items() if name in args.only.split(",")}
    baselines, missing = library_attacks(model, device, args.apgd_steps, args.square_queries)
    for note in missing.values():
        print(note)

    results = {}
    for name, attack in ours.items():
        calls = {"freqmaps": lambda: attack(counting, x, y),
                 "model step": lambda: model_steps(model, x, backwards[name], REFERENCE_STEPS, attack.channels_last)}
        calls |= {library: lambda fn=fn: fn(x, y) for (attack_name, library), fn in baselines.items()
                  if attack_name == name}
        counting.calls = counting.images = 0
        seconds, outputs = interleaved(calls, args.repeats, device)
        model.zero_grad(set_to_none=True)  # foolbox's backward fills .grad
        iterations = counting.calls / (args.repeats + 1)
        steps = counting.images / (args.repeats + 1) / len(x)
        row = {"attack": repr(attack), "model_step_s": seconds["model step"] / REFERENCE_STEPS,
               "model_step_backwards": backwards[name]}
        for library in ("freqmaps", "foolbox", "torchattacks"):
            if library not in seconds:
                row[library] = {"skipped": missing.get(library, f"{library} has no L∞ {name}")}
                continue
            x_adv = outputs[library]
            row[library] = {"seconds": seconds[library], "images_per_s": len(x) / seconds[library],
                            **norms(model, x[correct], x_adv[correct], y[correct])}
        row["freqmaps"] |= {"iterations": iterations, "steps": steps,
                            "step_cost": seconds["freqmaps"] / steps / row["model_step_s"] if steps else math.nan}
        results[name] = row
        print(f"{name:8s} " + "   ".join(f"{library} {row[library]['images_per_s']:7.1f} img/s"
                                         for library in ("freqmaps", "foolbox", "torchattacks")
                                         if "seconds" in row[library]))
        print("         median L∞ " + "   ".join(
            f"{library} {row[library]['median_linf']:.5f} (success {row[library]['success_rate']:.3f}, robust "
            f"accuracy {row[library]['robust_accuracy']:.3f})"
            for library in ("freqmaps", "foolbox", "torchattacks") if "seconds" in row[library]))
        print(f"         step cost {row['freqmaps']['step_cost']:.3f} x one forward + {backwards[name]} "
              f"backward{'s' if backwards[name] > 1 else ''} ({iterations:.0f} iterations worth {steps:.1f} "
              f"full-batch steps; {row['model_step_s'] * 1e3:.1f} ms each)")

    summary = {}
    for name, (library, target) in TARGETS.items():
        if name not in results or "seconds" not in results[name][library]:
            continue
        ours_row, theirs = results[name]["freqmaps"], results[name][library]
        speedup = theirs["seconds"] / ours_row["seconds"]
        norm_ratio = ours_row["median_linf"] / theirs["median_linf"]
        summary[name] = {"versus": library, "speedup": speedup, "target": target, "median_norm_ratio": norm_ratio,
                         "robust_accuracy": ours_row["robust_accuracy"],
                         "library_robust_accuracy": theirs["robust_accuracy"]}
        if name in ("apgd", "square"):  # fixed-budget attacks: no weaker means no higher robust accuracy (one image)
            ok = speedup >= target and ours_row["robust_accuracy"] <= theirs["robust_accuracy"] + 1 / int(correct.sum())
            result = f"robust accuracy {ours_row['robust_accuracy']:.3f} vs {theirs['robust_accuracy']:.3f}"
        else:
            ok = speedup >= target and (name == "pgd" or norm_ratio <= 1 + 1e-4)  # no larger, up to rounding
            result = f"median L∞ ratio {norm_ratio:.3f}"
        print(f"{name}: {speedup:.2f}x {library} (target >= {target}), {result}{'' if ok else '  BELOW TARGET'}")
    write_json("attacks", {
        "checkpoint": str(args.checkpoint), "n_images": len(x), "clean_accuracy": correct.float().mean().item(),
        "device": str(device), "repeats": args.repeats, "results": results, "summary": summary,
        "skipped_libraries": missing, "load_average_after": os.getloadavg()[0],
    }, args.out)


if __name__ == "__main__":
    main()
