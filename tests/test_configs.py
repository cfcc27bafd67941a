import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import get_object
from omegaconf import OmegaConf

from digits_zoo import create_model, list_models
from tests.conftest import CONFIGS

GROUPS = ["model", "data", "augment", "trainer", "logger", "callbacks", "experiment", "debug"]
EVAL_ONLY = [("data", "mnist_c")]  # the robustness benchmark: a test set, nothing to train on
OPTIONS = [
    (group, path.stem)
    for group in GROUPS
    for path in sorted((CONFIGS / group).glob("*.yaml"))
    if (group, path.stem) not in EVAL_ONLY
]


def compose_train(*overrides):
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        return compose("train", overrides=["paths.output_dir=unused", *overrides])


def test_model_configs_and_registry_agree():
    names = {path.stem for path in (CONFIGS / "model").glob("*.yaml")}
    assert names == set(list_models())
    for name in names:
        cfg = OmegaConf.load(CONFIGS / "model" / f"{name}.yaml")
        assert cfg.name == name
        create_model(cfg.name, **cfg.kwargs)


@pytest.mark.parametrize("group, option", OPTIONS, ids=[f"{g}={o}" for g, o in OPTIONS])
def test_every_group_option_composes(group, option):
    cfg = compose_train(f"{group}={option}")
    OmegaConf.to_container(cfg, resolve=True)  # every interpolation resolves
    for node in (cfg.data, cfg.trainer, *(cfg.logger or {}).values(), *cfg.callbacks.values()):
        get_object(node._target_)  # every target imports


def test_loggers_combine():
    cfg = compose_train("logger=[csv,tensorboard]")
    assert set(cfg.logger) == {"csv", "tensorboard"}


def test_seed_parity_is_the_seeds_training():
    cfg = compose_train("experiment=seed_parity")
    assert (cfg.data.batch_size, cfg.data.val_size, cfg.trainer.max_epochs) == (32, 0, 5)
    assert (cfg.loss, cfg.optimizer.lr, cfg.optimizer.eps) == ("cross_entropy", 1e-3, 1e-7)
    assert not cfg.data.standardize
