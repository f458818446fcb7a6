"""Delivery to the township centre over MQTT: topics, inbound message parsing, the publisher."""

from gateway.comms.messages import SnapshotLimits
from gateway.comms.mqtt import Backoff, MqttPublisher
from gateway.comms.topics import Topics

__all__ = ["Backoff", "MqttPublisher", "SnapshotLimits", "Topics"]
