"""`nasforge run` settings; the pipeline end to end, killed in every stage and resumed, is in
test_reliability.py."""

import pytest

from nasforge.errors import ConfigError
from nasforge.pipeline import BUDGETS, PipelineConfig


def test_pipeline_config_errors():
    with pytest.raises(ConfigError, match="^budget: unknown budget 'huge' \\(allowed: small, medium, large\\)"):
        PipelineConfig(budget="huge")
    with pytest.raises(ConfigError, match="^space: the pipeline cannot scale space 'nb201'"):
        PipelineConfig(space="nb201")
    with pytest.raises(ConfigError, match="^phi_max: must be an integer from 0 to 8"):
        PipelineConfig(phi_max=-1)


def test_budgets_grow_and_explicit_settings_win():
    order = [BUDGETS[b] for b in ("small", "medium", "large")]
    for key in ("trials", "epochs", "family_epochs", "filters"):
        assert order[0][key] <= order[1][key] <= order[2][key]
    config = PipelineConfig(budget="small", trials=3)
    assert config.setting("trials") == 3 and config.setting("epochs") == BUDGETS["small"]["epochs"]
