"""The gateway's configuration: YAML in, a validated `GatewayConfig` (or every problem) out.

    config = load_config("config/site.yaml")          # raises ConfigError(issues)
    config, issues = check_config("config/site.yaml")  # for `gateway check`
    print(summary(config, "config/site.yaml"))

Each `ConfigIssue` prints as `config/site.yaml:14: cameras[2].zones[0].polygon: need at least
3 points`. The models (`gateway.config.models`) document every key; `config/example.yaml` shows
them all.
"""

from gateway.config.errors import ConfigError, ConfigIssue
from gateway.config.loader import check_config, config_warnings, load_config, summary
from gateway.config.models import GatewayConfig

__all__ = ["ConfigError", "ConfigIssue", "GatewayConfig", "check_config", "config_warnings", "load_config",
           "summary"]
