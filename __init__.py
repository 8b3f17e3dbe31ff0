"""eqn: write Equilibrium Propagation models as energies or vector fields, compile them to Equinox
modules with derived local learning rules, and train them with any EP estimator.

    model = eqn.compile("models/hopfield_mlp.eqn")
    state = model.free(x)
    print(eqn.rules(model)["W1"].text())

Names load on first use: `import eqn.dsl` imports no JAX, and `eqn check` no training stack.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._lazy import lazy_exports

_PUBLIC = {
    "parse": "dsl", "EqnError": "dsl", "ErrorList": "dsl",
    "load": "compiler", "register_function": "compiler", "Program": "compiler", "Rule": "compiler",
    "compile": "runtime", "rules": "runtime", "EqnModel": "runtime", "estimate": "runtime", "train": "runtime",
    "load_dataset": "runtime", "diagnose": "runtime", "FixedStep": "runtime", "Anderson": "runtime",
    "Solution": "runtime", "SOLVERS": "runtime",
}
__all__ = sorted(_PUBLIC)
__version__ = "0.1.0"


__getattr__, __dir__ = lazy_exports(__name__, _PUBLIC)

if TYPE_CHECKING:
    from .compiler import Program, Rule, load, register_function  # noqa: F401
    from .dsl import EqnError, ErrorList, parse  # noqa: F401
    from .runtime import (  # noqa: F401
        SOLVERS, Anderson, EqnModel, FixedStep, Solution, compile, diagnose, estimate, load_dataset, rules, train,
    )
