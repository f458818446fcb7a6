"""The MQTT output: the one connection to the centre's broker.

It is an `AlertSink` like every output (alerts from its own outbox, QoS 1), and also the gateway's
presence and the centre's way back in: retained status and camera state, the centre's acks and
case progress, remote-look requests, and the page's acknowledgements sent to the centre.

    sink.py      MqttSink: the connection, its thread, delivery and presence
    topics.py    the topic tree, and which reply topics a remote request may name
    messages.py  inbound messages (ack, case progress, remote look) parsed and checked; replies
"""

from gateway.outputs.mqtt.messages import SnapshotLimits
from gateway.outputs.mqtt.sink import MqttSink
from gateway.outputs.mqtt.topics import Topics

__all__ = ["MqttSink", "SnapshotLimits", "Topics"]
