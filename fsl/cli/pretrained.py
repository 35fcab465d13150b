"""``fsl pretrained NAME --output DIR``: a pretrained network as a run folder."""

from __future__ import annotations

import argparse
import pathlib

from fsl.cli.args import names, non_negative_int


def _models() -> dict[str, str]:
    # fsl.pretrained.catalog imports no Keras: --help stays light.
    from fsl.pretrained.catalog import PRETRAINED

    return {name: entry.description for name, entry in PRETRAINED.items()}


def pretrained_arguments(p: argparse.ArgumentParser) -> None:
    models = _models()
    p.description = "Write a pretrained network as a run folder. Models: " + "; ".join(
        f"{name}: {text}" for name, text in models.items())
    p.add_argument("model", choices=sorted(models), help="the pretrained network")
    p.add_argument("--output", required=True, metavar="DIR",
                   help="the run folder to write, e.g. saved_models/dlib-resnet")
    p.add_argument("--data", default=None, metavar="DIR",
                   help="a face folder (one sub-folder per person): the threshold is chosen "
                   "on its training people and the network measured on --test-identities "
                   "held-out ones (default: none, the authors' threshold)")
    p.add_argument("--test-identities", type=non_negative_int, default=10,
                   help="people of --data held out to measure on (default 10; 0: all choose "
                   "the threshold)")
    p.add_argument("--identities", type=names, default=None, metavar="NAME,NAME,...|@FILE",
                   help="only these identity folders of --data take part")
    p.add_argument("--split-seed", type=non_negative_int, default=0, help="default 0")
    p.add_argument("--weights", default=None, metavar="FILE",
                   help="the weights file (default: the model's own package)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run folder")


def run_pretrained(args: argparse.Namespace) -> int:
    from fsl.training.pretrained import pretrained_run

    output = pathlib.Path(args.output)
    if args.data is not None and not pathlib.Path(args.data).is_dir():
        raise FileNotFoundError(f"face folder not found: {args.data}")
    metrics = pretrained_run(args.model, args.data, test_identities=args.test_identities,
                             identities=args.identities, split_seed=args.split_seed,
                             weights=args.weights, output_dir=output.parent,
                             run=output.name, overwrite=args.overwrite)
    print(f"run folder: {metrics['run_dir']}")
    return 0
