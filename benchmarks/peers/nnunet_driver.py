"""Drive nnU-Net v2 through its public Python API, inside nnU-Net's own venv.

This file is run by that venv's interpreter (``setup_nnunet.sh`` prints it), never imported
by autojoint: it imports only ``nnunetv2``, ``torch`` and the torch-only
``benchmarks/conv_work.py`` beside it. Three subcommands:

``train``: builds nnU-Net's default trainer for one dataset / configuration / fold
(``get_trainer_from_args``), sets the number of epochs, training and validation iterations
per epoch (attributes of the trainer that nnU-Net reads when training starts), trains,
optionally runs nnU-Net's own final validation, and dumps nnU-Net's per-epoch log
(losses, pseudo Dice, timestamps) to JSON. The output folder keeps nnU-Net's default name
(``nnUNetTrainer__nnUNetPlans__CONF``) so that its predictor finds the model unchanged.

``predict``: ``nnUNetPredictor`` on a folder, with or without mirroring, probabilities
saved; prints and writes the wall time per case.

``work``: builds the network a plan describes (nnU-Net's own
``build_network_architecture``, on the meta device, so nothing is computed) and prints the
multiply-accumulates of one forward pass of a training batch at the plan's patch, counted
by the same hooks as autojoint's ``benchmarks/train_step.py``.

The thread count is set explicitly (nnU-Net's own CLI on a CPU takes every core), so both
tools run with the same number of torch threads.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable
from pathlib import Path


def _threads(n: int) -> None:
    import torch

    torch.set_num_threads(n)


def train(args: argparse.Namespace) -> None:
    import torch
    from nnunetv2.run.run_training import get_trainer_from_args, maybe_load_checkpoint

    _threads(args.threads)
    fold: int | str = args.fold if args.fold == "all" else int(args.fold)
    trainer = get_trainer_from_args(
        str(args.dataset),
        args.configuration,
        fold,
        "nnUNetTrainer",
        args.plans,
        device=torch.device("cpu"),
    )
    trainer.num_epochs = args.epochs
    trainer.num_iterations_per_epoch = args.iterations
    trainer.num_val_iterations_per_epoch = args.val_iterations
    trainer.save_every = args.save_every  # checkpoint_latest.pth: a killed run resumes
    maybe_load_checkpoint(trainer, args.resume, False)
    start = time.perf_counter()
    trainer.run_training()
    train_seconds = time.perf_counter() - start
    if args.final_validation:
        trainer.perform_actual_validation(False)
    log = trainer.logger.get_checkpoint()
    record = {
        "epochs": args.epochs,
        "iterations_per_epoch": args.iterations,
        "val_iterations_per_epoch": args.val_iterations,
        "threads": args.threads,
        "train_seconds": train_seconds,
        "output_folder": str(trainer.output_folder),
        "batch_size": int(trainer.batch_size),
        "patch_size": [int(p) for p in trainer.configuration_manager.patch_size],
        "log": _plain(log),
    }
    _write_json(args.log, record)


def predict(args: argparse.Namespace) -> None:
    import torch
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    _threads(args.threads)
    predictor = nnUNetPredictor(
        tile_step_size=0.5,
        use_gaussian=True,
        use_mirroring=not args.no_mirroring,
        perform_everything_on_device=False,
        device=torch.device("cpu"),
        allow_tqdm=False,
    )
    folds = tuple(f if f == "all" else int(f) for f in args.folds)
    predictor.initialize_from_trained_model_folder(
        str(args.model), use_folds=folds, checkpoint_name=args.checkpoint
    )
    args.output.mkdir(parents=True, exist_ok=True)
    files = sorted(p for p in args.input.iterdir() if p.name.endswith("_0000.nii.gz"))
    seconds = {}
    for path in files:
        case = path.name[: -len("_0000.nii.gz")]
        start = time.perf_counter()
        predictor.predict_from_files(
            [[str(path)]],
            [str(args.output / case)],
            save_probabilities=args.save_probabilities,
            overwrite=True,
            num_processes_preprocessing=1,
            num_processes_segmentation_export=1,
        )
        seconds[case] = time.perf_counter() - start
        print(f"[nnunet] {case}: {seconds[case]:.1f} s", flush=True)
    _write_json(
        args.output / "timing.json",
        {"seconds_per_case": seconds, "threads": args.threads, "mirroring": not args.no_mirroring},
    )


def _conv_macs() -> Callable[..., float]:
    """``conv_macs`` from ``benchmarks/conv_work.py``, loaded by path: this script runs
    under nnU-Net's interpreter, where the ``benchmarks`` package is not importable."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "conv_work.py"
    spec = importlib.util.spec_from_file_location("conv_work", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.conv_macs


def work(args: argparse.Namespace) -> None:
    import torch
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
    from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    plans = PlansManager(str(args.plans))
    config = plans.get_configuration(args.configuration)
    dataset = json.loads(args.dataset_json.read_text(encoding="utf-8"))
    channels = determine_num_input_channels(plans, config, dataset)
    outputs = plans.get_label_manager(dataset).num_segmentation_heads
    with torch.device("meta"):
        net = nnUNetTrainer.build_network_architecture(plans, config, channels, outputs, True)
    batch = torch.zeros(config.batch_size, channels, *config.patch_size, device="meta")
    gmac = _conv_macs()(net, batch) / 1e9
    print(
        f"nnU-Net {args.configuration}: patch {list(config.patch_size)}, batch "
        f"{config.batch_size}: forward convolution work per step {gmac:.1f} GMAC"
    )


def _plain(value):
    """nnU-Net's log (numpy scalars, nested lists) as JSON-ready Python numbers."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "item"):
        return value.item()
    return value


def _write_json(path: Path, data: dict) -> None:
    """Temp file, then rename: a killed run never leaves half a JSON behind."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1), encoding="utf-8")
    os.replace(tmp, path)


def build_parser() -> argparse.ArgumentParser:
    """The driver's command line (``common.Tools.nnunet_train`` / ``nnunet_predict`` build
    its commands; a test parses those with this parser)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train")
    t.add_argument("--dataset", required=True, help="dataset id or DatasetNNN_Name")
    t.add_argument("--configuration", required=True)
    t.add_argument("--fold", required=True)
    t.add_argument("--plans", default="nnUNetPlans", help="plans identifier")
    t.add_argument("--epochs", type=int, required=True)
    t.add_argument("--iterations", type=int, required=True)
    t.add_argument("--val-iterations", type=int, default=10)
    t.add_argument("--threads", type=int, default=1)
    t.add_argument("--save-every", type=int, default=1, help="epochs between checkpoints")
    t.add_argument("--resume", action="store_true", help="continue from checkpoint_latest")
    t.add_argument("--final-validation", action="store_true")
    t.add_argument("--log", type=Path, required=True)
    p = sub.add_parser("predict")
    p.add_argument("--model", type=Path, required=True, help="nnUNetTrainer__nnUNetPlans__CONF")
    p.add_argument("--folds", nargs="+", default=["all"])
    p.add_argument("--checkpoint", default="checkpoint_final.pth")
    p.add_argument("-i", "--input", type=Path, required=True)
    p.add_argument("-o", "--output", type=Path, required=True)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--no-mirroring", action="store_true")
    p.add_argument("--save-probabilities", action="store_true")
    w = sub.add_parser("work")
    w.add_argument("--plans", type=Path, required=True, help="an nnUNetPlans*.json")
    w.add_argument("--dataset-json", type=Path, required=True, help="the dataset.json beside it")
    w.add_argument("--configuration", default="3d_fullres")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    {"train": train, "predict": predict, "work": work}[args.command](args)


if __name__ == "__main__":
    main()
