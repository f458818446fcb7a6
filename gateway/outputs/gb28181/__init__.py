"""GB/T 28181 output: the gateway registers with the centre's video platform as a device (SIP
over UDP or TCP) and raises every new alert there as an alarm on the camera's channel.

Modules, pure first: `sip` (messages, framing), `digest` (REGISTER authentication), `manscdp`
(the XML bodies), `alarm_types` (alert -> alarm codes), `device` (the state machine); then
`transport`, the sockets and the thread (`Gb28181Transport`, a delivery `Transport`).
"""

from gateway.outputs.gb28181.transport import Gb28181Transport

__all__ = ["Gb28181Transport"]
