"""Input from site MQTT brokers (IoT sensors). Delivery to the centre lives in gateway.delivery."""

from gateway.comms.sensor_input import SensorInput

__all__ = ["SensorInput"]
