"""torch.hub: `torch.hub.load(REPO_DIR, NAME, source="local", pretrained=True)` and `torch.hub.list`."""

import pytest
import torch

from digits_zoo import create_model, list_models, list_pretrained
from tests.conftest import ROOT


@pytest.mark.parametrize("name", list_pretrained())
def test_every_shipped_model_loads_through_torch_hub_with_its_weights(name):
    hub = torch.hub.load(str(ROOT), name, source="local", pretrained=True)
    shipped = create_model(name, pretrained=True)
    assert type(hub) is type(shipped)
    for (key, ours), theirs in zip(hub.state_dict().items(), shipped.state_dict().values(), strict=True):
        assert torch.equal(ours, theirs), key


def test_hub_passes_model_arguments_and_builds_untrained_models():
    fresh = torch.hub.load(str(ROOT), "vgg_bn", source="local", pretrained=True, num_classes=5)
    assert fresh.num_classes == 5 and fresh.get_classifier().out_features == 5
    untrained = torch.hub.load(str(ROOT), "lenet5", source="local")
    assert not torch.equal(
        untrained.state_dict()["head.weight"], create_model("lenet5", pretrained=True).state_dict()["head.weight"]
    )


def test_torch_hub_list_shows_every_registered_model_and_nothing_else(monkeypatch):
    # torch.hub.list reads GitHub repositories only; point its download at this checkout
    monkeypatch.setattr(torch.hub, "_get_cache_or_reload", lambda *args, **kwargs: str(ROOT))
    assert torch.hub.list("owner/digits_zoo") == list_models()
