"""``edgekd run`` and ``edgekd config show``."""

from __future__ import annotations

import argparse
import json

from pipeline.cli import add_config_args, config_from_args, help_without_action


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="run the pipeline stages in order (cached, resumable)")
    add_config_args(p)
    p.add_argument(
        "--force", action="append", default=[], metavar="STAGE", help="rerun STAGE and everything downstream"
    )
    p.add_argument("--until", metavar="STAGE", help="stop after STAGE")
    p.set_defaults(func=_run)

    c = sub.add_parser("config", help="inspect configuration")
    help_without_action(c)
    csub = c.add_subparsers(dest="config_command", metavar="ACTION")
    show = csub.add_parser("show", help="print the resolved config (profile + overrides)")
    add_config_args(show)
    show.add_argument("--format", choices=["yaml", "json"], default="yaml")
    show.set_defaults(func=_show)
    profiles = csub.add_parser("profiles", help="list the shipped profiles")
    profiles.set_defaults(func=_profiles)



def _run(args: argparse.Namespace) -> int:
    from pipeline.orchestrate import run_pipeline

    cfg = config_from_args(args)
    return run_pipeline(cfg, force=args.force, until=args.until)


def _show(args: argparse.Namespace) -> int:
    import yaml

    cfg = config_from_args(args)
    data = cfg.as_dict()
    if args.format == "json":
        print(json.dumps(data, indent=2))
    else:
        print(yaml.safe_dump(data, sort_keys=False), end="")
    return 0


def _profiles(args: argparse.Namespace) -> int:
    from pipeline.cli import available_profiles

    for name in available_profiles():
        print(name)
    return 0
