"""GB/T 28181 output: the gateway registers with the centre's video platform as a device (SIP
over UDP or TCP), raises every new alert there as an alarm on a catalogue channel, and answers
the platform's queries, PTZ controls and subscriptions.

Modules, pure first: `sip` (messages, framing), `digest` (REGISTER authentication), `manscdp`
(the XML bodies), `alarm_types` (alert -> alarm codes), `ptzcmd` (the PTZCmd decoder),
`actions` (settings, counters and what the device asks the transport to do), `queries` (the
answers to queries and controls), `subscriptions` (SUBSCRIBE/NOTIFY), `serving` (the device's
server side) and `device` (the state machine); then the I/O: `camera_worker` (camera jobs off
the SIP thread) and `transport`, the sockets and the thread (`Gb28181Transport`, a delivery
`Transport`).
"""

from gateway.outputs.gb28181.transport import Gb28181Transport

__all__ = ["Gb28181Transport"]
