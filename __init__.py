"""eqn: write Equilibrium Propagation models as energies or vector fields, compile them to Equinox
modules with derived local learning rules, and train them with any EP estimator.

    model = eqn.compile("models/hopfield_mlp.eqn")
    state = model.free(x)
    print(eqn.rules(model)["W1"].text())
"""

from .compiler import EqnModel, Program, Rule, compile, load, register_function, rules
from .dsl import EqnError, ErrorList, parse
from .runtime import Anderson, FixedStep, diagnose, estimate, load_dataset, train

__all__ = ["compile", "load", "rules", "register_function", "parse", "estimate", "train", "load_dataset",
           "diagnose", "FixedStep", "Anderson", "EqnModel", "Program", "Rule", "EqnError", "ErrorList"]
__version__ = "0.1.0"
