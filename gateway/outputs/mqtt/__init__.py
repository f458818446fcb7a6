"""The MQTT output: the one connection to the centre's broker.

It is an `AlertSink` like every output (alerts from its own outbox, QoS 1), and also the gateway's
presence and the centre's way back in: retained status and camera state, the centre's acks and
case progress, remote-look requests, and the page's acknowledgements sent to the centre.

    sink.py        MqttSink: the connection and its thread (paho I/O), delivery, presence
    window.py      the QoS 1 window: alerts in flight, refused ones, the walk through the outbox
    presence.py    the retained status (online/offline) and camera states
    inbound.py     what the centre's messages mean: acks and case steps to the ledger, remote look
    messages.py    inbound messages (ack, case progress, remote look) parsed and checked; replies
    connection.py  what the connection tells the operator (refusals, TLS problems, drops)
    topics.py      the topic tree, and which reply topics a remote request may name
"""

from gateway.config.outputs import MqttOutput
from gateway.delivery.sink import AlertSink
from gateway.outputs.mqtt.messages import SnapshotLimits
from gateway.outputs.mqtt.sink import MqttSink
from gateway.outputs.mqtt.topics import Topics
from gateway.outputs.registry import OutputContext, output

__all__ = ["MqttSink", "SnapshotLimits", "Topics", "build_mqtt"]


@output(MqttOutput)
def build_mqtt(settings: MqttOutput, context: OutputContext) -> AlertSink:
    """The MQTT output: alerts, presence and the centre's way back in (acks, cases, remote look)."""
    return MqttSink(settings, context.config.gateway.id, context.outbox, view=context.view, ledger=context.ledger)
