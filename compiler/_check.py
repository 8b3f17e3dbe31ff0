"""AST → Program: the checker's passes over one `Context`, every error of a file collected in one
pass. Declarations (`_declarations.py`), constants (`_constants.py`), lowering (`_lower.py`),
forms and holomorphy (`_forms.py`), then derivations (`_derivations.py`)."""

from __future__ import annotations

from ..dsl import ast
from ..dsl.errors import ErrorList
from . import _forms as forms
from ._constants import evaluate_consts
from ._context import Context, Scope
from ._declarations import collect, declare_variables
from ._derivations import derive
from ._lower import check_function, let, tie
from ._program import Program


def check(module: ast.Module, *, consts: dict | None = None, holomorphic: bool = False) -> Program:
    """Check and derive a parsed model.

    Args:
        module: the parsed file (`eqn.dsl.parse`).
        consts: values that override the file's constants, by name.
        holomorphic: refuse non-holomorphic operations (as `model NAME holomorphic` does).

    Returns:
        The complete `Program`; its `warnings` hold what is legal but probably unintended.

    Raises:
        ErrorList: every error found, located in the file.
    """
    ctx = Context(module, dict(consts or {}), holomorphic)
    try:
        program = _run(ctx)
    finally:
        for error in ctx.errors + ctx.warnings:
            error.located(module.filename, module.source)
    if ctx.errors:
        raise ErrorList(ctx.errors)
    assert program is not None
    return program


def _run(ctx: Context) -> Program | None:
    collect(ctx)
    if ctx.decls.model is not None and ctx.decls.model.holomorphic:
        ctx.require_holomorphic = True
    evaluate_consts(ctx)
    declare_variables(ctx)
    forms.check_ties_and_pairs(ctx)
    form = forms.check_form(ctx)
    dynamics_scope = Scope("dynamics")
    energy = forms.check_energy(ctx, dynamics_scope) if form == "energy" else None
    written = forms.check_equations(ctx, form, dynamics_scope) if form in ("flow", "map") else {}
    explicit_beta = bool(dynamics_scope.uses_beta)
    coordinates = forms.check_coordinates(ctx, form)
    cost = forms.check_cost(ctx)
    prediction = forms.check_prediction(ctx)
    forms.warn_unpredicted_readout(ctx, cost, [energy] if energy is not None else list(written.values()), prediction)
    forms.warn_unused(ctx)
    for name in ctx.decls.lets:  # definitions nothing reads are checked too
        let(ctx, name)
    for name in ctx.decls.ties:
        if name in ctx.params:
            tie(ctx, name)
    for fn in ctx.decls.functions.values():
        check_function(ctx, fn)
    non_holomorphic = forms.classify_holomorphy(ctx)
    if ctx.errors:
        return None
    return derive(ctx, form, energy, written, cost, explicit_beta, non_holomorphic, coordinates, prediction)
