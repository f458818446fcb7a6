"""Outputs: where alerts (and video) leave the gateway for the township centre.

Each output is one module (or package) that registers how it is built from its configuration
section (`gateway.outputs.registry.output`): a new output is its config section plus its module.

    registry.py   the configured outputs as sinks, each with its own outbox file
    mqtt/         the MQTT output: alerts, presence, camera state, acks, case progress, remote look
    webhook.py    the webhook output: one signed POST per alert message
    gb28181/      the GB/T 28181 output: the gateway as a device of the centre's video platform
"""

# Each output module registers its builder with the registry when imported.
from gateway.outputs import gb28181, mqtt, webhook  # noqa: E402, F401
