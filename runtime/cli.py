"""The `eqn` command: check, inspect and (in later subcommands) train `.eqn` models."""

from __future__ import annotations

import argparse
import json
import math
import sys

from ._reporting import consts_from, load_or_report


def cmd_check(args) -> int:
    status = 0
    consts = consts_from(args.const)
    for path in args.files:
        program = load_or_report(path, consts, args.holomorphic)
        if program is None:
            status = 1
            continue
        if not args.quiet:
            holo = "holomorphic" if program.holomorphic else "not holomorphic"
            print(f"{path}: ok ({program.form}, {len(program.states)} states, "
                  f"{program.param_count()} parameters, {holo})")
    return status


def cmd_rules(args) -> int:
    program = load_or_report(args.file, consts_from(args.const))
    if program is None:
        return 1
    if args.json:
        from ..compiler import render
        print(json.dumps({name: {"rule": r.text(), "expression": render(r.expression),
                                 "cost_expression": None if r.cost_expression is None else render(r.cost_expression),
                                 "reads": list(r.reads), "post": list(r.post), "pre": list(r.pre),
                                 "other_params": list(r.other_params), "local": r.local}
                          for name, r in program.rules.items()}, indent=2, ensure_ascii=False))
        return 0
    print(f"# learning rules of {program.name} ({program.form}); "
          + ("dβ(u) is the response of state u to the nudge"
             + ("; dβ(s) = φ'(u)·dβ(u) for a coordinate s = φ(u)" if program.coordinates else "")
             if program.form != "energy"
             else "[·]^β is evaluated at the nudged, [·]^0 at the free equilibrium"))
    width = max((len(n) for n in program.rules), default=1)
    for name, rule in program.rules.items():
        text = rule.text().split(" ∝ ", 1)[1]
        print(f"{name:<{width}} :  Δ{name} ∝ {text}")
        print(f"{'':<{width}}    {rule.reads_text()}")
    return 0


def describe(program) -> dict:
    """The summary behind `eqn show --json`."""
    from ..compiler import render
    return {
        "name": program.name,
        "file": program.filename,
        "form": program.form,
        "inputs": {n: list(s) for n, s in program.inputs.items()},
        "target": {n: list(s) for n, s in program.targets.items()},
        "states": {n: list(s) for n, s in program.states.items()},
        "output": program.output,
        "params": {n: {"shape": list(spec.shape), "count": math.prod(spec.shape), "init": spec.init}
                   for n, spec in program.params.items()},
        "tied": sorted(program.ties),
        "pairs": [list(p) for p in program.pairs],
        "param_count": program.param_count(),
        "holomorphic": program.holomorphic,
        "non_holomorphic": [{"operation": n.operation, "line": n.span.line, "column": n.span.column}
                            for n in program.non_holomorphic],
        "explicit_beta": program.explicit_beta,
        "coordinates": {s: {"name": c.name, "value": render(c.value.args[0])} for s, c in program.coordinates.items()},
        "nudges": {s: render(node) for s, node in program.nudges.items()},
        "sweep_blocks": [list(block) for block in program.sweep_blocks],
        "diagonal_block": list(program.diagonal_block),
        "consts": program.consts,
    }


def cmd_show(args) -> int:
    program = load_or_report(args.file, consts_from(args.const))
    if program is None:
        return 1
    info = describe(program)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    from ..compiler import render

    def shape(s):
        return "[" + ", ".join(map(str, s)) + "]"

    print(f"model {program.name}  ({program.filename})")
    print(f"  form         {program.form}" + ("  (β placed by the author)" if program.explicit_beta else ""))
    print("  inputs       " + ", ".join(f"{n}{shape(s)}" for n, s in program.inputs.items()))
    print("  target       " + ", ".join(f"{n}{shape(s)}" for n, s in program.targets.items()))
    print("  states       " + ", ".join(f"{n}{shape(s)}" + (" (output)" if n == program.output else "")
                                         for n, s in program.states.items()))
    print(f"  params       {program.param_count()} in all")
    width = max((len(n) for n in program.params), default=1)
    for n, spec in program.params.items():
        print(f"    {n:<{width}} {shape(spec.shape):<16} {math.prod(spec.shape):>10}  ~ {spec.init}")
    for tied, node in program.ties.items():
        print(f"    {tied:<{width}} tied = {render(node.args[0])}")
    if program.pairs:
        print("  pairs        " + ", ".join(f"{f} / {b}" for f, b in program.pairs))
    if program.holomorphic:
        print("  holomorphic  yes")
    else:
        print("  holomorphic  no: " + ", ".join(f"{n.operation} (line {n.span.line}:{n.span.column})"
                                                 for n in program.non_holomorphic))
    if program.coordinates:
        print("  coordinates  " + ", ".join(f"{c.name} = {render(c.value.args[0])}"
                                            for c in program.coordinates.values()))
    print("  sweep blocks " + " then ".join("{" + ", ".join(block) + "}" for block in program.sweep_blocks)
          + "  (the order of --sweep)")
    if program.diagonal_block:
        print("  diagonal     {" + ", ".join(program.diagonal_block)
              + "}  (Jacobian diagonal there: exact rbp eliminates it)")
    label = "derived flow" if program.form == "energy" else "free dynamics"
    print(f"  {label}:")
    for s, node in program.dynamics.items():
        lhs = f"{s} <-" if program.form == "map" else f"d{s}/dt ="
        print(f"    {lhs} {render(node)}")
    if program.nudges:
        print("  nudge added by the compiler:")
        for s, node in program.nudges.items():
            print(f"    {s if program.form == 'map' else f'd{s}/dt'} += {render(node)}")
    return 0


def cmd_models(args) -> int:
    from ..compiler import zoo

    models = zoo()
    width = max(map(len, models), default=1)
    for name, about in models.items():
        print(f"{name:<{width}}  {about}")
    return 0


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The `eqn` command's parser. The options of `train`, `diagnose` and `plot` (whose choices
    and defaults come from the estimator and solver registries) are built only when `command`
    is one of them or None, so that `eqn check` imports no training stack."""
    parser = argparse.ArgumentParser(prog="eqn", description="Compile, inspect and train Equilibrium "
                                     "Propagation models written in the .eqn language.")
    sub = parser.add_subparsers(dest="command", required=True)

    check = sub.add_parser("check", help="check .eqn files; exit 1 with located errors if any is wrong")
    check.add_argument("files", nargs="+")
    check.add_argument("--const", action="append", metavar="NAME=VALUE", help="override a constant")
    check.add_argument("--holomorphic", action="store_true", help="refuse non-holomorphic operations")
    check.add_argument("-q", "--quiet", action="store_true", help="print only errors and warnings")
    check.set_defaults(run=cmd_check)

    rules = sub.add_parser("rules", help="print the derived learning rule of every parameter")
    rules.add_argument("file")
    rules.add_argument("--const", action="append", metavar="NAME=VALUE")
    rules.add_argument("--json", action="store_true")
    rules.set_defaults(run=cmd_rules)

    show = sub.add_parser("show", help="form, inputs, states, parameters and holomorphy of a model")
    show.add_argument("file")
    show.add_argument("--const", action="append", metavar="NAME=VALUE")
    show.add_argument("--json", action="store_true")
    show.set_defaults(run=cmd_show)

    models = sub.add_parser("models", help="list the zoo: the models shipped with eqn, usable by name anywhere a "
                            "model file is taken")
    models.set_defaults(run=cmd_models)

    from . import _commands  # train, diagnose, plot: they load JAX and the data layer lazily
    _commands.register(sub, with_options=command is None or command in _commands.COMMANDS)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the `eqn` command on `argv` (default: the process's arguments); the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    args = build_parser(command).parse_args(argv)
    try:
        return args.run(args)
    except KeyboardInterrupt:
        print("eqn: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `eqn rules … | head`
        import os
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def run() -> None:
    """The `eqn` command: `main` with compiled programs cached on disk between runs."""
    from ._compile_cache import enable_compile_cache

    enable_compile_cache()
    sys.exit(main())


if __name__ == "__main__":
    run()
