"""digits_zoo's Optuna sweeper, where Hydra looks for plugins: it instantiates only classes of the
`hydra_plugins` namespace package (configs/hydra/sweeper/optuna.yaml names this one). The sweeper
itself is digits_zoo.training.search.OptunaSweeper."""

from digits_zoo.training.search import OptunaSweeper as _OptunaSweeper


class OptunaSweeper(_OptunaSweeper):
    """digits_zoo.training.search.OptunaSweeper, under the name Hydra accepts for a plugin."""
